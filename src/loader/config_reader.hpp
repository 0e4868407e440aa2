#pragma once
// Typed, checked access to a config.json object.  Every getter takes the key's
// spellings (real checkpoints use several: BLOOM's n_embed and hidden_size);
// when two spellings are both present they must agree.  Errors name the file
// and the key.
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace runnel {

class ConfigReader {
 public:
  using Keys = std::initializer_list<const char*>;

  ConfigReader(const nlohmann::json& root, std::string source);

  const std::string& source() const { return source_; }
  // True when one of the spellings is present and not null.
  bool has(Keys keys) const;

  // Required: throws naming the file and the key when absent.
  int64_t get_int(Keys keys) const;
  double get_float(Keys keys) const;
  // Optional: `fallback` is the value transformers uses when the key is absent.
  int64_t get_int(Keys keys, int64_t fallback) const;
  double get_float(Keys keys, double fallback) const;
  bool get_bool(Keys keys, bool fallback) const;
  std::string get_string(Keys keys, const std::string& fallback) const;
  // A token id or a list of them (eos_token_id); empty when absent or null.
  std::vector<int32_t> get_ids(const char* key) const;

  // A nested object (rope_scaling), or nullptr when absent or null.
  const nlohmann::json* get_object(const char* key) const;
  // A reader for a nested object, whose errors name "source: key.subkey".
  ConfigReader nested(const nlohmann::json& obj, const char* key) const;

  [[noreturn]] void fail(std::string_view key, std::string_view what) const;

 private:
  // The value under the first present spelling (checking that all present
  // spellings agree), or nullptr; `used` gets the spelling found.
  const nlohmann::json* lookup(Keys keys, std::string* used) const;
  std::string key_name(std::string_view key) const;

  const nlohmann::json& root_;
  std::string source_;
  std::string path_;  // "rope_scaling." inside nested readers
};

std::string join_keys(ConfigReader::Keys keys);

}  // namespace runnel

// Argument handling shared by the examples: a model path, then either a text
// prompt (needs a tokenizer: one beside the model, embedded in a GGUF file, or
// --tokenizer PATH) or --ids 1,2,3 for models without one.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <runnel/error.hpp>
#include <runnel/model.hpp>
#include <runnel/tokenizer.hpp>

namespace example {

// "1,2,3" -> {1, 2, 3}
inline std::vector<int32_t> parse_ids(std::string_view s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string_view::npos) j = s.size();
    const std::string item(s.substr(i, j - i));
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 0 || v > INT32_MAX)
      throw runnel::Error("--ids: expected comma-separated token ids, got \"" + std::string(s) +
                          "\"");
    ids.push_back(int32_t(v));
    i = j + 1;
  }
  return ids;
}

// The prompt's token ids: `ids` when given, else the tokenizer's encoding of
// `text` (with BOS where the model wants it).
inline std::vector<int32_t> prompt_ids(const runnel::Model& model, const std::string& text,
                                       const std::string& ids) {
  if (!ids.empty()) return parse_ids(ids);
  const runnel::Tokenizer* tok = model.tokenizer();
  if (!tok)
    throw runnel::Error(model.path() +
                        ": the model has no tokenizer; pass --tokenizer PATH or --ids 1,2,3");
  std::vector<int32_t> out = tok->encode(text, /*add_special=*/true);
  if (out.empty() && tok->bos_id() >= 0) out.push_back(tok->bos_id());
  if (out.empty()) throw runnel::Error("the prompt \"" + text + "\" has no tokens");
  return out;
}

}  // namespace example

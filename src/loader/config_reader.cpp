#include "loader/config_reader.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>

#include "runnel/error.hpp"

namespace runnel {

using nlohmann::json;

std::string join_keys(ConfigReader::Keys keys) {
  std::string s;
  for (const char* k : keys) {
    if (!s.empty()) s += " or ";
    s += '"';
    s += k;
    s += '"';
  }
  return s;
}

ConfigReader::ConfigReader(const json& root, std::string source)
    : root_(root), source_(std::move(source)) {
  if (!root_.is_object()) throw Error(source_ + ": expected a JSON object");
}

std::string ConfigReader::key_name(std::string_view key) const { return path_ + std::string(key); }

void ConfigReader::fail(std::string_view key, std::string_view what) const {
  throw Error(source_ + ": " + key_name(key) + ": " + std::string(what));
}

const json* ConfigReader::lookup(Keys keys, std::string* used) const {
  const json* found = nullptr;
  std::string found_key;
  for (const char* k : keys) {
    auto it = root_.find(k);
    if (it == root_.end() || it->is_null()) continue;
    if (!found) {
      found = &*it;
      found_key = k;
    } else if (*found != *it) {
      fail(k, "disagrees with \"" + found_key + "\" (" + found->dump() + " vs " + it->dump() + ")");
    }
  }
  if (used) *used = found_key;
  return found;
}

bool ConfigReader::has(Keys keys) const { return lookup(keys, nullptr) != nullptr; }

namespace {

int64_t as_int(const ConfigReader& r, const json& v, const std::string& key) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > uint64_t(std::numeric_limits<int64_t>::max())) r.fail(key, "integer out of range");
      return int64_t(u);
    }
    return v.get<int64_t>();
  }
  // 2048.0 is accepted: some exporters write integers as floats.
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return int64_t(d);
  }
  r.fail(key, "expected an integer, got " + v.dump());
}

double as_float(const ConfigReader& r, const json& v, const std::string& key) {
  if (!v.is_number()) r.fail(key, "expected a number, got " + v.dump());
  const double d = v.get<double>();
  if (!std::isfinite(d)) r.fail(key, "expected a finite number");
  return d;
}

}  // namespace

int64_t ConfigReader::get_int(Keys keys) const {
  std::string used;
  const json* v = lookup(keys, &used);
  if (!v) throw Error(source_ + ": missing key " + path_ + join_keys(keys));
  return as_int(*this, *v, used);
}

double ConfigReader::get_float(Keys keys) const {
  std::string used;
  const json* v = lookup(keys, &used);
  if (!v) throw Error(source_ + ": missing key " + path_ + join_keys(keys));
  return as_float(*this, *v, used);
}

int64_t ConfigReader::get_int(Keys keys, int64_t fallback) const {
  std::string used;
  const json* v = lookup(keys, &used);
  return v ? as_int(*this, *v, used) : fallback;
}

double ConfigReader::get_float(Keys keys, double fallback) const {
  std::string used;
  const json* v = lookup(keys, &used);
  return v ? as_float(*this, *v, used) : fallback;
}

bool ConfigReader::get_bool(Keys keys, bool fallback) const {
  std::string used;
  const json* v = lookup(keys, &used);
  if (!v) return fallback;
  if (!v->is_boolean()) fail(used, "expected true or false, got " + v->dump());
  return v->get<bool>();
}

std::string ConfigReader::get_string(Keys keys, const std::string& fallback) const {
  std::string used;
  const json* v = lookup(keys, &used);
  if (!v) return fallback;
  if (!v->is_string()) fail(used, "expected a string, got " + v->dump());
  return v->get<std::string>();
}

std::vector<int32_t> ConfigReader::get_ids(const char* key) const {
  std::vector<int32_t> ids;
  const json* v = lookup({key}, nullptr);
  if (!v) return ids;
  auto one = [&](const json& x) {
    const int64_t id = as_int(*this, x, key);
    if (id < 0 || id > std::numeric_limits<int32_t>::max()) fail(key, "token id out of range");
    ids.push_back(int32_t(id));
  };
  if (v->is_array()) {
    if (v->size() > 1024) fail(key, "too many token ids");
    for (const json& x : *v) one(x);
  } else {
    one(*v);
  }
  return ids;
}

const json* ConfigReader::get_object(const char* key) const {
  const json* v = lookup({key}, nullptr);
  if (!v) return nullptr;
  if (!v->is_object()) fail(key, "expected an object, got " + v->dump());
  return v;
}

ConfigReader ConfigReader::nested(const json& obj, const char* key) const {
  ConfigReader r(obj, source_);
  r.path_ = path_ + key + ".";
  return r;
}

}  // namespace runnel

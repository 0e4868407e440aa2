// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}),
// then the data; offsets are relative to the end of the header.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include "loader/json_util.hpp"
#include "runnel/error.hpp"
#include "runnel/loader.hpp"

namespace runnel {

namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;  // the reference implementation's limit
constexpr uint64_t kMaxDimSize = uint64_t(1) << 40;

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

uint64_t as_u64(const json& v, bool* ok) {
  *ok = v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  return *ok ? v.get<uint64_t>() : 0;
}

}  // namespace

std::vector<TensorInfo> parse_safetensors_header(const uint8_t* data, size_t size,
                                                 const std::string& source) {
  if (size < 8)
    throw Error(source + ": " + std::to_string(size) +
                " bytes is too short for a safetensors file (it starts with an 8-byte header "
                "length)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > size - 8)
    throw Error(source + ": safetensors header length " + std::to_string(header_len) +
                " exceeds the file size (" + std::to_string(size) + " bytes): truncated file?");
  if (header_len > kMaxHeaderBytes)
    throw Error(source + ": safetensors header length " + std::to_string(header_len) +
                " is larger than the 100 MiB limit");
  const std::string_view text(reinterpret_cast<const char*>(data + 8), size_t(header_len));
  const std::string what = source + ": safetensors header";
  check_json_depth(text, 16, what);
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(what + ": invalid JSON: " + e.what());
  }
  if (!header.is_object()) throw Error(what + ": expected a JSON object");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = uint64_t(size) - data_start;
  std::vector<TensorInfo> out;
  out.reserve(header.size());
  for (auto item = header.begin(); item != header.end(); ++item) {
    const std::string& name = item.key();
    const json& entry = item.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) throw Error(what + ": __metadata__: expected an object");
      continue;
    }
    const std::string t = source + ": tensor " + quoted(name);
    if (name.empty() || name.size() > 1024) throw Error(t + ": bad tensor name length");
    if (!entry.is_object()) throw Error(t + ": expected an object with dtype, shape, data_offsets");
    auto field = [&](const char* key) -> const json& {
      auto it = entry.find(key);
      if (it == entry.end()) throw Error(t + ": missing \"" + key + "\"");
      return *it;
    };
    TensorInfo info;
    info.name = name;

    const json& dt = field("dtype");
    if (!dt.is_string()) throw Error(t + ": dtype: expected a string");
    const std::string dts = dt.get<std::string>();
    if (dts == "F32")
      info.dtype = DType::F32;
    else if (dts == "F16")
      info.dtype = DType::F16;
    else if (dts == "BF16")
      info.dtype = DType::BF16;
    else
      throw Error(t + ": dtype " + quoted(dts) + " is not supported (supported: F32, F16, BF16)");

    const json& shape = field("shape");
    if (!shape.is_array()) throw Error(t + ": shape: expected an array");
    if (shape.empty() || shape.size() > size_t(kMaxDims))
      throw Error(t + ": shape has " + std::to_string(shape.size()) +
                  " dimensions (supported: 1 to " + std::to_string(kMaxDims) + ")");
    uint64_t numel = 1;
    for (const json& d : shape) {
      bool ok = false;
      const uint64_t v = as_u64(d, &ok);
      if (!ok || v > kMaxDimSize) throw Error(t + ": shape: bad dimension " + d.dump());
      if (v != 0 && numel > (uint64_t(1) << 62) / v)
        throw Error(t + ": shape: element count overflows");
      numel *= v;
      info.shape.push_back(int64_t(v));
    }
    const uint64_t elem = uint64_t(traits(info.dtype).type_size);
    if (numel > (uint64_t(1) << 62) / elem) throw Error(t + ": shape: byte size overflows");
    const uint64_t nbytes = numel * elem;

    const json& offs = field("data_offsets");
    if (!offs.is_array() || offs.size() != 2)
      throw Error(t + ": data_offsets: expected [begin, end]");
    bool ok0 = false, ok1 = false;
    const uint64_t begin = as_u64(offs[0], &ok0), end = as_u64(offs[1], &ok1);
    if (!ok0 || !ok1) throw Error(t + ": data_offsets: expected non-negative integers");
    if (begin > end || end > data_size)
      throw Error(t + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  ") lie outside the data (" + std::to_string(data_size) +
                  " bytes after the header): truncated file?");
    if (end - begin != nbytes)
      throw Error(t + ": data_offsets span " + std::to_string(end - begin) + " bytes but " +
                  std::string(dts) + " shape " + shape.dump() + " needs " + std::to_string(nbytes));
    info.offset = data_start + begin;
    info.nbytes = nbytes;
    out.push_back(std::move(info));
  }
  // Each byte of data belongs to one tensor at most (as the GGUF reader checks).
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& info : out)
    if (info.nbytes > 0) by_offset.push_back(&info);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->offset != b->offset ? a->offset < b->offset : a->name < b->name;
  });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& a = *by_offset[i - 1];
    const TensorInfo& b = *by_offset[i];
    if (b.offset < a.offset + a.nbytes)
      throw Error(fmt::format(
          "{}: tensors {} (data_offsets [{}, {})) and {} (data_offsets [{}, {})) overlap", source,
          quoted(a.name), a.offset - data_start, a.offset + a.nbytes - data_start, quoted(b.name),
          b.offset - data_start, b.offset + b.nbytes - data_start));
  }
  return out;
}

void WeightStore::add(const std::string& name, const Tensor& t, const std::string& source,
                      const std::string& file_name) {
  auto [it, inserted] = entries_.try_emplace(name, Entry{t, source, file_name});
  if (!inserted)
    throw Error(source + ": tensor \"" + name + "\" is defined twice (also in " +
                it->second.source + ")");
}

const WeightStore::Entry* WeightStore::find(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

void load_safetensors(const std::string& path, WeightStore& store) {
  auto file = std::make_shared<MappedFile>(path);
  const auto* base = static_cast<const uint8_t*>(file->data());
  const std::vector<TensorInfo> infos = parse_safetensors_header(base, file->size(), path);
  store.keep_alive(file);
  for (const TensorInfo& info : infos) {
    const uint8_t* p = file->range(info.offset, info.nbytes, "tensor \"" + info.name + "\"");
    const size_t align = size_t(traits(info.dtype).type_size);
    void* ptr = const_cast<uint8_t*>(p);
    if (reinterpret_cast<uintptr_t>(p) % align != 0) {
      // The format pads the header so data is aligned; copy if a writer did not.
      auto copy = std::make_shared<HostBuffer>(size_t(info.nbytes));
      std::memcpy(copy->data(), p, size_t(info.nbytes));
      ptr = copy->data();
      store.keep_alive(copy);
    }
    store.add(info.name, Tensor::view(ptr, info.dtype, info.shape.data(), int(info.shape.size())),
              path);
  }
}

void load_safetensors_index(const std::string& index_path, WeightStore& store) {
  namespace fs = std::filesystem;
  const std::string text = read_text_file(index_path, size_t(64) << 20);
  check_json_depth(text, 16, index_path);
  json index;
  try {
    index = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(index_path + ": invalid JSON: " + e.what());
  }
  if (!index.is_object()) throw Error(index_path + ": expected a JSON object");
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object())
    throw Error(index_path + ": missing \"weight_map\" object");
  const fs::path dir = fs::path(index_path).parent_path();
  std::set<std::string> shards;
  for (const auto& [name, file] : wm->items()) {
    if (!file.is_string())
      throw Error(index_path + ": weight_map[\"" + name + "\"]: expected a file name");
    const std::string f = file.get<std::string>();
    const fs::path fp(f);
    bool bad = f.empty() || fp.is_absolute();
    for (const auto& part : fp)
      if (part == "..") bad = true;
    if (bad)
      throw Error(index_path + ": weight_map[\"" + name + "\"]: shard " + quoted(f) +
                  " must be a relative path inside the model folder");
    shards.insert(f);
  }
  if (shards.empty()) throw Error(index_path + ": weight_map is empty");
  for (const std::string& s : shards) load_safetensors((dir / s).string(), store);
  for (const auto& [name, file] : wm->items()) {
    const std::string expect = (dir / file.get<std::string>()).string();
    const WeightStore::Entry* e = store.find(name);
    if (!e)
      throw Error(index_path + ": tensor \"" + name +
                  "\" is listed in weight_map but missing from " + expect);
    if (e->source != expect)
      throw Error(index_path + ": tensor \"" + name + "\" is listed in " + expect +
                  " but found in " + e->source);
  }
}

}  // namespace runnel

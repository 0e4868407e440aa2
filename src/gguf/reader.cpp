// GGUF reader.  Layout (all little-endian):
//   u32 magic "GGUF", u32 version (2 or 3), u64 n_tensors, u64 n_kv,
//   n_kv x { string key, u32 type, value },
//   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset },
//   padding to general.alignment (default 32), then the tensor data.
// A string is a u64 length and that many bytes (no terminator); an array is a
// u32 element type, a u64 count and the elements.  Version 1 (u32 counts) is
// long obsolete and refused.
//
// Every length and count is checked against the bytes that remain before it
// is used to allocate or advance, with overflow checks, since crafted files
// have caused heap overflows in other readers.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "runnel/error.hpp"
#include "runnel/gguf.hpp"

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader assumes a little-endian host");

namespace runnel::gguf {

namespace {

constexpr uint64_t kMaxStringBytes = uint64_t(1) << 30;  // one key, name or metadata string
constexpr uint64_t kMaxNameBytes = 1024;                 // keys and tensor names
constexpr int kMaxArrayDepth = 8;
constexpr uint64_t kMaxAlignment = uint64_t(1) << 30;
constexpr int64_t kMaxDim = int64_t(1) << 40;

// Bytes of one element of a fixed-size type, 0 for string and array.
uint64_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::Bool:
      return 1;
    case ValueType::U16:
    case ValueType::I16:
      return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32:
      return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64:
      return 8;
    case ValueType::String:
    case ValueType::Array:
      return 0;
  }
  return 0;
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::F64); }

// Printable form of a name read from the file (which may hold any bytes).
std::string printable(std::string_view s) {
  std::string out;
  const size_t n = std::min<size_t>(s.size(), 80);
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == '"' || c == '\\' || c >= 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out += char(c);
  }
  if (s.size() > n) out += "...";
  return out;
}

}  // namespace

// Reads one file image front to back.
class Parser {
 public:
  Parser(File& f, const uint8_t* data, uint64_t size) : f_(f), p_(data), size_(size) {}

  void run();

 private:
  [[noreturn]] void fail(const std::string& what, uint64_t at) const { f_.fail(what, at); }
  uint64_t left() const { return size_ - pos_; }
  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      fail(fmt::format("{} needs {} bytes but the file ends after {} (truncated file?)", what, n,
                       left()),
           pos_);
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view read_string(const std::string& what, uint64_t max_len) {
    const uint64_t at = pos_;
    const uint64_t len = read<uint64_t>(what + ": string length");
    if (len > left())
      fail(fmt::format("{}: string length {} runs past the end of the file ({} bytes left)", what,
                       len, left()),
           at);
    if (len > max_len) fail(fmt::format("{}: string length {} exceeds {}", what, len, max_len), at);
    const std::string_view s(reinterpret_cast<const char*>(p_ + pos_), size_t(len));
    pos_ += len;
    return s;
  }
  Value read_value(ValueType type, const std::string& what, int depth);

  File& f_;
  const uint8_t* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

Value Parser::read_value(ValueType type, const std::string& what, int depth) {
  Value v;
  v.type = type;
  v.offset = pos_;
  switch (type) {
    case ValueType::U8:
      v.i = read<uint8_t>(what);
      break;
    case ValueType::I8:
      v.i = read<int8_t>(what);
      break;
    case ValueType::U16:
      v.i = read<uint16_t>(what);
      break;
    case ValueType::I16:
      v.i = read<int16_t>(what);
      break;
    case ValueType::U32:
      v.i = read<uint32_t>(what);
      break;
    case ValueType::I32:
      v.i = read<int32_t>(what);
      break;
    case ValueType::U64:
      v.i = static_cast<int64_t>(read<uint64_t>(what));
      break;
    case ValueType::I64:
      v.i = read<int64_t>(what);
      break;
    case ValueType::F32:
      v.f = read<float>(what);
      break;
    case ValueType::F64:
      v.f = read<double>(what);
      break;
    case ValueType::Bool: {
      const uint8_t b = read<uint8_t>(what);
      if (b > 1) fail(fmt::format("{}: bool value {} is not 0 or 1", what, b), v.offset);
      v.i = b;
      break;
    }
    case ValueType::String:
      v.str = read_string(what, kMaxStringBytes);
      break;
    case ValueType::Array: {
      if (depth >= kMaxArrayDepth)
        fail(fmt::format("{}: arrays nested deeper than {}", what, kMaxArrayDepth), v.offset);
      const uint32_t et = read<uint32_t>(what + ": array element type");
      if (!valid_type(et))
        fail(fmt::format("{}: unknown array element type {}", what, et), v.offset);
      v.elem = static_cast<ValueType>(et);
      const uint64_t count_at = pos_;
      v.count = read<uint64_t>(what + ": array length");
      const uint64_t es = scalar_size(v.elem);
      // The smallest encoding of one element bounds the count by what is left.
      const uint64_t min_elem = es ? es : v.elem == ValueType::String ? 8 : 12;
      if (v.count > left() / min_elem)
        fail(
            fmt::format("{}: array of {} {} elements runs past the end of the file ({} bytes left)",
                        what, v.count, value_type_name(v.elem), left()),
            count_at);
      if (es) {
        v.data = p_ + pos_;
        pos_ += v.count * es;
        if (v.elem == ValueType::Bool)
          for (uint64_t k = 0; k < v.count; ++k)
            if (v.data[k] > 1)
              fail(fmt::format("{}[{}]: bool value {} is not 0 or 1", what, k, v.data[k]),
                   count_at + 8 + k);
      } else if (v.elem == ValueType::String) {
        v.strings.reserve(size_t(v.count));
        for (uint64_t k = 0; k < v.count; ++k)
          v.strings.push_back(read_string(fmt::format("{}[{}]", what, k), kMaxStringBytes));
      } else {
        v.items.reserve(size_t(v.count));
        for (uint64_t k = 0; k < v.count; ++k)
          v.items.push_back(
              read_value(ValueType::Array, fmt::format("{}[{}]", what, k), depth + 1));
      }
      break;
    }
  }
  return v;
}

void Parser::run() {
  const std::string& src = f_.source_;
  (void)src;
  const uint32_t magic = read<uint32_t>("GGUF header: magic");
  if (magic != kMagic) fail("not a GGUF file (the magic is not \"GGUF\")", 0);
  const uint32_t version = read<uint32_t>("GGUF header: version");
  if (version == 1) fail("GGUF version 1 is obsolete and not supported (supported: 2, 3)", 4);
  if (version != 2 && version != 3) {
    if (__builtin_bswap32(version) == 2 || __builtin_bswap32(version) == 3)
      fail("big-endian GGUF files are not supported", 4);
    fail(fmt::format("unsupported GGUF version {} (supported: 2, 3)", version), 4);
  }
  f_.version_ = version;
  const uint64_t n_tensors = read<uint64_t>("GGUF header: tensor count");
  const uint64_t n_kv = read<uint64_t>("GGUF header: metadata count");
  // A key/value pair takes at least 8 (key length) + 1 (key) + 4 (type) + 1
  // bytes; a tensor info at least 8 + 1 + 4 + 8 + 4 + 8.
  if (n_kv > left() / 14)
    fail(fmt::format("GGUF header: metadata count {} is impossible for the {} bytes that follow",
                     n_kv, left()),
         16);
  if (n_tensors > left() / 33)
    fail(fmt::format("GGUF header: tensor count {} is impossible for the {} bytes that follow",
                     n_tensors, left()),
         8);

  for (uint64_t k = 0; k < n_kv; ++k) {
    const uint64_t at = pos_;
    const std::string_view key =
        read_string(fmt::format("metadata entry {}: key", k), kMaxNameBytes);
    if (key.empty()) fail(fmt::format("metadata entry {}: empty key", k), at);
    const std::string what = "metadata key \"" + printable(key) + "\"";
    if (f_.kv_.count(key)) fail(what + ": duplicate key", at);
    const uint64_t type_at = pos_;
    const uint32_t type = read<uint32_t>(what + ": type");
    if (!valid_type(type)) fail(fmt::format("{}: unknown value type {}", what, type), type_at);
    f_.kv_.emplace(std::string(key), read_value(static_cast<ValueType>(type), what, 0));
  }

  if (const Value* a = f_.find("general.alignment")) {
    const bool is_uint = a->type == ValueType::U8 || a->type == ValueType::U16 ||
                         a->type == ValueType::U32 || a->type == ValueType::U64;
    if (!is_uint)
      fail(fmt::format("metadata key \"general.alignment\": expected an unsigned integer, got {}",
                       value_type_name(a->type)),
           a->offset);
    const uint64_t al = static_cast<uint64_t>(a->i);
    if (al == 0 || (al & (al - 1)) != 0 || al > kMaxAlignment)
      fail(fmt::format("metadata key \"general.alignment\": {} is not a power of two in [1, 2^30]",
                       al),
           a->offset);
    f_.alignment_ = al;
  }

  f_.tensors_.reserve(size_t(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo t;
    t.info_offset = pos_;
    const std::string_view name =
        read_string(fmt::format("tensor info {}: name", k), kMaxNameBytes);
    if (name.empty()) fail(fmt::format("tensor info {}: empty name", k), t.info_offset);
    t.name = std::string(name);
    const std::string what = "tensor \"" + printable(name) + "\"";
    if (f_.tensor_index_.count(t.name)) fail(what + ": duplicate tensor name", t.info_offset);
    const uint64_t dims_at = pos_;
    const uint32_t n_dims = read<uint32_t>(what + ": n_dims");
    if (n_dims < 1 || n_dims > uint32_t(kMaxDims))
      fail(fmt::format("{}: n_dims = {} (supported: 1 to {})", what, n_dims, kMaxDims), dims_at);
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t at = pos_;
      const uint64_t ne = read<uint64_t>(what + ": dimension");
      if (ne < 1 || ne > uint64_t(kMaxDim))
        fail(fmt::format("{}: dimension {} = {} is out of range [1, 2^40]", what, d,
                         static_cast<int64_t>(ne)),
             at);
      t.ne.push_back(int64_t(ne));
    }
    const uint64_t type_at = pos_;
    t.type_id = read<uint32_t>(what + ": type");
    t.type = ggml_type_info(t.type_id);
    if (!t.type) fail(fmt::format("{}: unknown ggml type {}", what, t.type_id), type_at);
    const uint64_t off_at = pos_;
    t.offset = read<uint64_t>(what + ": offset");
    if (t.offset % f_.alignment_ != 0)
      fail(fmt::format("{}: data offset {} is not a multiple of the alignment {}", what, t.offset,
                       f_.alignment_),
           off_at);
    // Byte size: ne[0] holds whole blocks; every product is overflow-checked.
    if (t.ne[0] % t.type->block_size != 0)
      fail(fmt::format("{}: {} rows of {} elements are not whole blocks of {}", what, t.type->name,
                       t.ne[0], t.type->block_size),
           dims_at);
    uint64_t bytes = uint64_t(t.ne[0] / t.type->block_size) * uint64_t(t.type->type_size);
    for (size_t d = 1; d < t.ne.size(); ++d) {
      if (bytes > (uint64_t(1) << 62) / uint64_t(t.ne[d]))
        fail(fmt::format("{}: the byte size of its dimensions overflows", what), dims_at);
      bytes *= uint64_t(t.ne[d]);
    }
    t.nbytes = bytes;
    t.shape.assign(t.ne.rbegin(), t.ne.rend());
    f_.tensor_index_.emplace(t.name, f_.tensors_.size());
    f_.tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment.  A file
  // without tensors may end before it (vocab-only files have no padding).
  const uint64_t al = f_.alignment_;
  const uint64_t end_of_infos = pos_;
  if (end_of_infos > UINT64_MAX - al) fail("the data section offset overflows", end_of_infos);
  f_.data_offset_ = (end_of_infos + al - 1) / al * al;
  if (!f_.tensors_.empty() && f_.data_offset_ > size_)
    fail(fmt::format("the tensor data section (at byte {}) starts past the end of the file ({} "
                     "bytes): truncated file?",
                     f_.data_offset_, size_),
         end_of_infos);
  const uint64_t data_size = f_.data_offset_ <= size_ ? size_ - f_.data_offset_ : 0;
  for (TensorInfo& t : f_.tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fail(fmt::format("tensor \"{}\": data [{}, {}) lies past the end of the data section ({} "
                       "bytes): truncated file?",
                       printable(t.name), t.offset, t.offset + t.nbytes, data_size),
           t.info_offset);
    t.file_offset = f_.data_offset_ + t.offset;
  }
  // Tensors may come in any order but must not share bytes.
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : f_.tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const TensorInfo& prev = *by_offset[k - 1];
    const TensorInfo& t = *by_offset[k];
    if (t.offset < prev.offset + prev.nbytes)
      fail(fmt::format("tensor \"{}\": data at offset {} overlaps tensor \"{}\" [{}, {})",
                       printable(t.name), t.offset, printable(prev.name), prev.offset,
                       prev.offset + prev.nbytes),
           t.info_offset);
  }
}

File File::parse(const void* data, size_t size, const std::string& source,
                 std::shared_ptr<Buffer> owner) {
  File f;
  f.source_ = source;
  f.owner_ = std::move(owner);
  f.base_ = static_cast<const uint8_t*>(data);
  f.size_ = size;
  if (size < 4 || std::memcmp(data, "GGUF", 4) != 0)
    throw Error(source + ": not a GGUF file (it does not start with \"GGUF\")");
  Parser(f, f.base_, size).run();
  return f;
}

File File::open(const std::string& path) {
  auto file = std::make_shared<MappedFile>(path);
  const void* data = file->data();
  const size_t size = file->size();
  return parse(data, size, path, std::move(file));
}

void File::fail(std::string_view what, uint64_t offset) const {
  throw Error(fmt::format("{}: {} (at byte {})", source_, what, offset));
}

const Value* File::find(std::string_view key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

bool is_int(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::U16:
    case ValueType::I16:
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::U64:
    case ValueType::I64:
      return true;
    default:
      return false;
  }
}

// Element k of a packed scalar array.
int64_t int_at(const Value& v, uint64_t k) {
  const uint8_t* p = v.data + k * scalar_size(v.elem);
  switch (v.elem) {
    case ValueType::U8:
      return *p;
    case ValueType::I8:
      return int8_t(*p);
    case ValueType::U16: {
      uint16_t x;
      std::memcpy(&x, p, 2);
      return x;
    }
    case ValueType::I16: {
      int16_t x;
      std::memcpy(&x, p, 2);
      return x;
    }
    case ValueType::U32: {
      uint32_t x;
      std::memcpy(&x, p, 4);
      return x;
    }
    case ValueType::I32: {
      int32_t x;
      std::memcpy(&x, p, 4);
      return x;
    }
    default: {
      int64_t x;
      std::memcpy(&x, p, 8);
      return x;
    }
  }
}

}  // namespace

int64_t File::get_int(std::string_view key) const {
  const Value* v = find(key);
  if (!v) throw Error(fmt::format("{}: missing metadata key \"{}\"", source_, key));
  if (!is_int(v->type))
    fail(fmt::format("metadata key \"{}\": expected an integer, got {}", key,
                     value_type_name(v->type)),
         v->offset);
  if (v->type == ValueType::U64 && v->i < 0)
    fail(fmt::format("metadata key \"{}\": value {} is out of range", key, uint64_t(v->i)),
         v->offset);
  return v->i;
}

int64_t File::get_int(std::string_view key, int64_t fallback) const {
  return find(key) ? get_int(key) : fallback;
}

double File::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (!v) throw Error(fmt::format("{}: missing metadata key \"{}\"", source_, key));
  if (v->type != ValueType::F32 && v->type != ValueType::F64)
    fail(fmt::format("metadata key \"{}\": expected f32 or f64, got {}", key,
                     value_type_name(v->type)),
         v->offset);
  return v->f;
}

double File::get_float(std::string_view key, double fallback) const {
  return find(key) ? get_float(key) : fallback;
}

bool File::get_bool(std::string_view key, bool fallback) const {
  const Value* v = find(key);
  if (!v) return fallback;
  if (v->type != ValueType::Bool)
    fail(fmt::format("metadata key \"{}\": expected bool, got {}", key, value_type_name(v->type)),
         v->offset);
  return v->i != 0;
}

std::string_view File::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v) throw Error(fmt::format("{}: missing metadata key \"{}\"", source_, key));
  if (v->type != ValueType::String)
    fail(fmt::format("metadata key \"{}\": expected string, got {}", key, value_type_name(v->type)),
         v->offset);
  return v->str;
}

std::string_view File::get_string(std::string_view key, std::string_view fallback) const {
  return find(key) ? get_string(key) : fallback;
}

std::vector<std::string> File::get_strings(std::string_view key) const {
  const Value* v = find(key);
  if (!v) throw Error(fmt::format("{}: missing metadata key \"{}\"", source_, key));
  if (v->type != ValueType::Array || v->elem != ValueType::String)
    fail(fmt::format("metadata key \"{}\": expected an array of strings", key), v->offset);
  return std::vector<std::string>(v->strings.begin(), v->strings.end());
}

std::vector<float> File::get_floats(std::string_view key) const {
  const Value* v = find(key);
  if (!v) throw Error(fmt::format("{}: missing metadata key \"{}\"", source_, key));
  if (v->type != ValueType::Array || (v->elem != ValueType::F32 && v->elem != ValueType::F64))
    fail(fmt::format("metadata key \"{}\": expected an array of f32", key), v->offset);
  std::vector<float> out(size_t(v->count));
  for (uint64_t k = 0; k < v->count; ++k) {
    if (v->elem == ValueType::F32) {
      std::memcpy(&out[k], v->data + 4 * k, 4);
    } else {
      double d;
      std::memcpy(&d, v->data + 8 * k, 8);
      out[k] = float(d);
    }
  }
  return out;
}

std::vector<int64_t> File::get_ints(std::string_view key) const {
  const Value* v = find(key);
  if (!v) throw Error(fmt::format("{}: missing metadata key \"{}\"", source_, key));
  if (v->type != ValueType::Array || !is_int(v->elem))
    fail(fmt::format("metadata key \"{}\": expected an array of integers", key), v->offset);
  std::vector<int64_t> out(size_t(v->count));
  for (uint64_t k = 0; k < v->count; ++k) out[k] = int_at(*v, k);
  return out;
}

const uint8_t* File::tensor_data(const TensorInfo& t) const {
  if (!has_data_section() || t.file_offset > size_ || t.nbytes > size_ - t.file_offset)
    fail(fmt::format("tensor \"{}\": no data in this file (a vocab-only GGUF?)", printable(t.name)),
         t.info_offset);
  return base_ + t.file_offset;
}

Tensor File::tensor(const TensorInfo& t) const {
  if (!t.type->dtype)
    throw Error(fmt::format("{}: quantized type {} (tensor {}) is not supported yet; runnel reads {}",
                            source_, t.type->name, printable(t.name), readable_weight_types()));
  const uint8_t* p = tensor_data(t);
  return Tensor::view(const_cast<uint8_t*>(p), *t.type->dtype, t.shape.data(), int(t.shape.size()));
}

}  // namespace runnel::gguf

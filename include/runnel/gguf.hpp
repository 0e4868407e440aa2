#pragma once
// GGUF (v2 and v3), the file format of llama.cpp: a header, typed metadata
// key/value pairs, tensor infos, then the aligned tensor data.  The reader
// checks every count, length, dimension, product and offset against the file
// size before use; tensors are views into the mapped file, never copies.
//
// docs/gguf.md describes the format, the metadata runnel reads for each
// architecture (llama, bloom and runnel's own opt) and the tensor names.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runnel/buffer.hpp"
#include "runnel/config.hpp"
#include "runnel/dtype.hpp"
#include "runnel/tensor.hpp"

namespace runnel {

struct Checkpoint;
struct Vocab;

namespace gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read little-endian
inline constexpr uint64_t kDefaultAlignment = 32;

// Metadata value types, numbered as in the file.
enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
std::string_view value_type_name(ValueType t);  // "u32", "string", "array", ...

// ggml tensor types, numbered as in the file.  The full table of block sizes
// and bytes per block lives in src/gguf/ggml_types.cpp.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

// One row of the ggml type table.
struct GgmlTypeInfo {
  GgmlType type;
  std::string_view name;       // "F32", "Q4_K", ... as llama.cpp prints them
  int64_t block_size;          // elements per block
  int64_t type_size;           // bytes per block
  std::optional<DType> dtype;  // the runnel dtype that holds it, if any
};
// The row for `id`, or null for ids the format does not define.
const GgmlTypeInfo* ggml_type_info(uint32_t id);
// The ggml type that stores `dtype` (throws for dtypes GGUF has no type for).
GgmlType ggml_type_of(DType dtype);
// The ggml weight types runnel reads, as llama.cpp names them: "F32, F16, ...".
std::string readable_weight_types();

// The name llama.cpp gives a general.file_type value (its llama_ftype):
// 3 "Q4_1", 15 "Q4_K - Medium", 0 "all F32"; "" for values it does not define.
std::string_view file_type_name(int64_t file_type);
inline constexpr int64_t kFileTypeQ4_K_M = 15;
inline constexpr int64_t kFileTypeQ5_K_M = 17;

// A metadata value.  Strings and scalar arrays are views into the file.
struct Value {
  ValueType type = ValueType::U8;
  uint64_t offset = 0;  // byte offset of the value in the file, for messages
  // Scalars: integers and bool in `i` (U64 as its bit pattern), floats in `f`.
  int64_t i = 0;
  double f = 0.0;
  std::string_view str;  // String
  // Array: `count` elements of `elem`.
  ValueType elem = ValueType::U8;
  uint64_t count = 0;
  const uint8_t* data = nullptr;          // arrays of fixed-size scalars: packed, little-endian
  std::vector<std::string_view> strings;  // arrays of strings
  std::vector<Value> items;               // arrays of arrays
};

// One tensor info.  Dimensions are kept in both orders: ggml's `ne` (the
// innermost, contiguous dimension first) and runnel's row-major `shape`.
struct TensorInfo {
  std::string name;
  uint32_t type_id = 0;
  const GgmlTypeInfo* type = nullptr;
  std::vector<int64_t> ne;     // [n_dims] innermost first, as in the file
  std::vector<int64_t> shape;  // [n_dims] outermost first
  uint64_t offset = 0;         // relative to the data section, as in the file
  uint64_t file_offset = 0;    // absolute
  uint64_t nbytes = 0;
  uint64_t info_offset = 0;  // where the tensor info starts in the file
};

class File {
 public:
  // Maps `path` and parses it.
  static File open(const std::string& path);
  // Parses `size` bytes at `data`; `owner` (may be null) keeps them alive for
  // the views.  `source` names the file in error messages.
  static File parse(const void* data, size_t size, const std::string& source,
                    std::shared_ptr<Buffer> owner = nullptr);

  const std::string& source() const { return source_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the tensor data
  // True when the file ends right after the tensor infos (a vocab-only file).
  bool has_data_section() const { return data_offset_ <= size_; }

  const std::map<std::string, Value, std::less<>>& metadata() const { return kv_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const Value* find(std::string_view key) const;
  const TensorInfo* find_tensor(std::string_view name) const;

  // Typed getters.  A missing key throws for the first form and gives
  // `fallback` for the second; a key of another type always throws.
  int64_t get_int(std::string_view key) const;  // any integer type
  int64_t get_int(std::string_view key, int64_t fallback) const;
  double get_float(std::string_view key) const;  // f32 or f64
  double get_float(std::string_view key, double fallback) const;
  bool get_bool(std::string_view key, bool fallback) const;
  std::string_view get_string(std::string_view key) const;
  std::string_view get_string(std::string_view key, std::string_view fallback) const;
  std::vector<std::string> get_strings(std::string_view key) const;  // array of strings
  std::vector<float> get_floats(std::string_view key) const;         // array of f32/f64
  std::vector<int64_t> get_ints(std::string_view key) const;         // array of integers

  // A view of `t`'s data as `Tensor` in row-major shape.  Throws for types
  // with no runnel dtype ("quantized type Q5_0 (tensor ...) is not supported
  // yet") and for files without a data section.
  Tensor tensor(const TensorInfo& t) const;
  const uint8_t* tensor_data(const TensorInfo& t) const;
  std::shared_ptr<Buffer> owner() const { return owner_; }

  // "<source>: <what> (at byte N)"-style message prefix helpers.
  [[noreturn]] void fail(std::string_view what, uint64_t offset) const;

 private:
  std::string source_;
  std::shared_ptr<Buffer> owner_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::map<std::string, Value, std::less<>> kv_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
  friend class Parser;
};

// The model configuration the metadata of a llama, bloom or opt GGUF
// describes (general.architecture picks the family).
ModelConfig model_config(const File& f);

// The vocabulary of tokenizer.ggml.* ("llama" SentencePiece and "gpt2"
// byte-level BPE), or nullopt when the file carries none.
std::optional<Vocab> read_vocab(const File& f);

// Opens a GGUF model: config, weights (views, named as the family's
// descriptor names them) and the embedded vocabulary.  Quantized types with
// no runnel dtype are refused with a message naming the type and the tensor.
void load_checkpoint(const std::string& path, Checkpoint& ck);

// ---------------------------------------------------------------------------
// Writing

class Writer {
 public:
  explicit Writer(uint64_t alignment = kDefaultAlignment);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, std::string_view v);
  void set_strings(const std::string& key, const std::vector<std::string>& v);
  void set_f32s(const std::string& key, const std::vector<float>& v);
  void set_i32s(const std::string& key, const std::vector<int32_t>& v);
  // A key with an already-encoded value (type, then payload): for tests that
  // need unusual types such as nested arrays.
  void set_raw(const std::string& key, ValueType type, std::string payload);
  // Adds a tensor of row-major `shape`; `data` holds its bytes (copied).
  void add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape,
                  const void* data, size_t nbytes);
  // The whole file (v3).  Without tensors it ends after the metadata, as
  // vocab-only files do; otherwise the data section follows, aligned.
  std::string bytes() const;
  void write(const std::string& path) const;

 private:
  struct Kv {
    std::string key;
    ValueType type;
    std::string payload;
  };
  struct T {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    std::string data;
  };
  void put(const std::string& key, ValueType type, std::string payload);
  uint64_t alignment_;
  std::vector<Kv> kv_;
  std::vector<T> tensors_;
};

// Writes `ck` (an opened f32/f16/bf16 checkpoint of the opt, llama or bloom
// family) as GGUF in llama.cpp's layout: LLaMA q/k rows permuted for its
// adjacent-pair RoPE, BLOOM's fused QKV regrouped as [q; k; v], and the `opt`
// keys of docs/gguf.md.  `vocab`, when given, is embedded as tokenizer.ggml.*.
// `file_type` >= 0 is written as general.file_type (llama.cpp's llama_ftype).
void write_checkpoint(const Checkpoint& ck, const std::string& path, const Vocab* vocab = nullptr,
                      int64_t file_type = -1);
// Adds the tokenizer.ggml.* keys of `vocab` to `w`.
void write_vocab(Writer& w, const Vocab& vocab);

// ---------------------------------------------------------------------------
// Quantization (src/gguf/quantize.cpp)

// Mixes of types, as llama.cpp's quantizer writes them.
enum class QuantizeMix : unsigned char {
  None,    // every matrix in QuantizeOptions::type
  Q4_K_M,  // llama.cpp's Q4_K_M: Q4_K, with Q6_K for the LM head and for attn_v
           // (bloom: attn_qkv) and ffn_down of about a third of the layers
  Q5_K_M,  // llama.cpp's Q5_K_M: the same with Q5_K for the rest
};

struct QuantizeOptions {
  // Type of the matrix weights (token embeddings and the LM head included).
  // Norms, biases and position tables are written as f32.
  DType type = DType::Q8_0;
  QuantizeMix mix = QuantizeMix::None;  // a mix replaces `type`
  // Vocabulary to embed: a tokenizer file or folder (tokenizer.model,
  // vocab.json + merges.txt, tokenizer.json with a byte-level BPE model, or a
  // GGUF file).  Empty: the checkpoint's own vocabulary, else the tokenizer
  // found beside it.
  std::string tokenizer_path;
  // Receives notes (tensors that fall back to another type, a tokenizer that
  // cannot be embedded) once the file is written.  Null: notes are dropped.
  std::function<void(const std::string&)> note;
};

struct QuantizedTensor {
  std::string name;     // GGUF name, e.g. "blk.0.attn_q.weight"
  std::string from;     // source dtype name, e.g. "f32", "q4_1"
  GgmlType to;          // written type
  std::vector<int64_t> shape;
  uint64_t bytes_in = 0;   // bytes in the source
  uint64_t bytes_out = 0;  // bytes written
};

struct QuantizeReport {
  std::vector<QuantizedTensor> tensors;  // in the order written
  uint64_t weight_bytes_in = 0;   // all source tensors (tied heads counted once)
  uint64_t weight_bytes_out = 0;  // all written tensors
  uint64_t file_bytes = 0;        // size of the written file
  std::string vocab_source;       // where the embedded vocabulary came from, or "" (none)
};

// The dtype named `name` ("f32", "f16", "q8_0", "q4_0", "q4_1", "q4_k",
// "q6_k", ...) if this build can quantize to it and GGUF has a type for it.
// Throws naming `what` (a flag) for unknown names and for types this build
// lacks ("q4_k: not supported in this build").
DType quantize_type(std::string_view name, std::string_view what);

// The options a --type value names: a dtype (as quantize_type) or a mix
// ("q4_k_m"), which needs each type it writes in this build.
QuantizeOptions quantize_type_or_mix(std::string_view name, std::string_view what);
// The name of `options`' type or mix: "q8_0", "q4_k_m".
std::string quantize_type_name(const QuantizeOptions& options);

// Writes `ck` (any opened checkpoint: f32/f16/bf16 or quantized) as GGUF
// with its matrix weights in `options.type` (or `options.mix`), through
// write_checkpoint (so llama.cpp's layout and the `opt` keys of
// docs/gguf.md), with general.file_type as llama.cpp's quantizer sets it.  A
// matrix whose rows are not whole blocks of its type falls back as
// llama.cpp's does (q4_k -> q5_0, q6_k -> q8_0), else to f16; one note says
// how many and which.
QuantizeReport quantize_checkpoint(const Checkpoint& ck, const std::string& out_path,
                                   const QuantizeOptions& options);

}  // namespace gguf
}  // namespace runnel

#pragma once
// Checkpoint loading: safetensors (single file or sharded), llama2.c .bin
// files, and the refusal of PyTorch pickles.  Weights are views into mapped
// files; nothing is copied here.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runnel/buffer.hpp"
#include "runnel/config.hpp"
#include "runnel/tensor.hpp"

namespace runnel {

struct Vocab;

// One tensor entry of a safetensors header.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // 1 to kMaxDims dimensions
  uint64_t offset = 0;         // absolute byte offset in the file
  uint64_t nbytes = 0;
};

// Parses the header of a safetensors file image of `size` bytes: an 8-byte
// little-endian header length, a JSON header, then the data.  Checks every
// length, offset and shape against `size` (with overflow checks) and rejects
// dtypes other than F32, F16 and BF16.  `source` names the file in errors.
std::vector<TensorInfo> parse_safetensors_header(const uint8_t* data, size_t size,
                                                 const std::string& source);

// Named weight tensors, views into the files (or buffers) it keeps alive.
class WeightStore {
 public:
  struct Entry {
    Tensor tensor;
    std::string source;     // file the tensor came from
    std::string file_name;  // its name in that file when it differs from the key (GGUF), or ""
  };
  // Throws if `name` is already present.
  void add(const std::string& name, const Tensor& t, const std::string& source,
           const std::string& file_name = "");
  void keep_alive(std::shared_ptr<Buffer> buffer) { buffers_.push_back(std::move(buffer)); }

  const Entry* find(const std::string& name) const;
  const std::map<std::string, Entry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  const std::vector<std::shared_ptr<Buffer>>& buffers() const { return buffers_; }

 private:
  std::map<std::string, Entry> entries_;
  std::vector<std::shared_ptr<Buffer>> buffers_;
};

// Adds every tensor of one safetensors file to `store`.
void load_safetensors(const std::string& path, WeightStore& store);
// Reads model.safetensors.index.json and loads every shard it names; checks
// that each tensor of the weight map is in the shard the map says.
void load_safetensors_index(const std::string& index_path, WeightStore& store);

// llama2.c checkpoints: the legacy header of 7 int32 (a negative vocab_size
// meaning an untied classifier) and the "ak42" versioned header (version 1,
// fp32; version 2 is int8 and refused).
struct Llama2cHeader {
  int version = 0;  // 0 legacy, 1 versioned fp32
  int64_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0;
  int64_t vocab_size = 0, seq_len = 0;
  bool shared_classifier = true;
  uint64_t header_bytes = 0;  // where the weights start
  uint64_t weight_bytes = 0;  // bytes of weights the header implies
};
// Parses and checks the header against the file size `size`.
Llama2cHeader parse_llama2c_header(const uint8_t* data, size_t size, const std::string& source);

// Where a model came from and what it holds.
struct Checkpoint {
  std::string path;
  std::string format;  // "safetensors", "llama2.c", "gguf"
  ModelConfig config;
  WeightStore weights;
  std::string tokenizer_path;  // a tokenizer found beside the model, or empty
  std::shared_ptr<const Vocab> vocab;  // a vocabulary embedded in the model file (GGUF), or null
  int64_t file_type = -1;  // GGUF general.file_type (llama.cpp's llama_ftype), or -1
};

// Opens a model: a Hugging Face folder (config.json + model.safetensors or
// model.safetensors.index.json), a .safetensors file with config.json beside
// it, a GGUF file (runnel/gguf.hpp) or a llama2.c .bin file.  pytorch_model.bin
// files are refused with an explanation of how to convert them.
Checkpoint open_checkpoint(const std::string& path);

// The message given for PyTorch pickle checkpoints (exposed for tests).
std::string pickle_refusal_message(const std::string& path);

}  // namespace runnel

#pragma once
// Model::Impl: what a bound model holds, shared by the files of src/model/:
// bind.cpp (checkpoint tensors to slots, Model::load), random_weights.cpp
// (Model::random), forward.cpp (the forward pass and its workspace) and
// model.cpp (accessors, Sequence).
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/arch.hpp"
#include "runnel/loader.hpp"
#include "runnel/model.hpp"
#include "runnel/tokenizer.hpp"

namespace runnel::model_detail {

enum class Role : unsigned char {
  Matrix,  // matmul weights and token embeddings: the compute dtype
  Vector,  // norms, biases, position tables: f32
};

struct Need {
  model::Slot slot;
  std::vector<int64_t> shape;
  Role role;
};


// The model-level tensors `c` needs, and the tensors of each layer.
std::vector<Need> model_needs(const ModelConfig& c);
std::vector<Need> layer_needs(const ModelConfig& c);

// Batched decode gives products of a few to a few dozen rows.  The
// small-batch kernels read the weights once for all rows and stay ahead of
// the blocked path (which first widens f16 / bf16 / quantized weights to f32
// panels) up to about this many rows (measured with 2 threads on f16 weights
// of 5632 x 2048: 64 rows 66 ms against 185 ms).
constexpr int64_t kGemmMinRows = 64;

// The dtype with the highest count (the first in dtype order among equals),
// or `fallback` when there is none.
inline DType most_common(const std::map<DType, int64_t>& counts, DType fallback) {
  DType most = fallback;
  int64_t n = 0;
  for (const auto& [dt, count] : counts)
    if (count > n) most = dt, n = count;
  return most;
}

// The dump directory (--dump-layers, $RUNNEL_DUMP): checked, and created when
// only its last component is missing.
void prepare_dump_dir(const std::string& dir);

}  // namespace runnel::model_detail

namespace runnel {

struct Model::Impl {
  std::string path, format;
  ModelConfig cfg;
  const model::ArchDescriptor* arch = nullptr;
  WeightStore store;                               // keeps the mapped files alive
  std::vector<std::unique_ptr<HostBuffer>> owned;  // converted weights
  DType wdtype = DType::F32, fdtype = DType::F32;
  bool mapped = true;
  int64_t file_type = -1;                 // GGUF general.file_type, or -1
  std::map<DType, int64_t> matrix_types;  // bound matrix weights per dtype
  int64_t bound_bytes = 0;                // bytes of every bound weight
  std::array<Tensor, model::kNumSlots> global{};
  std::vector<std::array<Tensor, model::kNumSlots>> layers;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Context> ctx;
  std::vector<float> alibi;      // [n_heads] or empty
  std::vector<float> rope_freq;  // [rot_dim / 2] (dynamic scaling: within the trained context)
  std::vector<float> dyn_freq;   // dynamic scaling past it: [items, rot_dim / 2] of this step
  // The tables as the ops read them, and the weights' copies on a device
  // other than the CPU (placed once in prepare()).
  Tensor alibi_t, rope_freq_t;
  std::vector<std::shared_ptr<Buffer>> placed_weights;
  // Per-step state, kept so that a step no larger than those before it
  // allocates nothing.
  struct Group {  // consecutive batch items sharing one KV pool
    const void* pool_id;
    size_t begin, end;
    int64_t max_blocks;
    size_t at;  // its block tables, lengths and starts in `meta`
    ops::KvBatch batch;
  };
  std::vector<Group> groups;
  std::vector<int32_t> meta;
  std::vector<int64_t> offset;
  std::string dump_dir;
  int64_t calls = 0;
  std::shared_ptr<Buffer> ws;  // activations workspace, from the context's backend
  size_t ws_floats = 0;

  const Tensor& G(model::Slot s) const { return global[size_t(s)]; }
  const Tensor& W(int64_t l, model::Slot s) const { return layers[size_t(l)][size_t(s)]; }

  const WeightStore::Entry* lookup(const std::string& name, std::string* found) const;
  bool ignorable(const std::string& name) const;
  void bind(std::optional<DType> dtype, const std::function<void(double)>& progress = {});
  void norm(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y);
  void dump(const Tensor& t, const char* name, int64_t layer = -1);
  void prepare();  // tables computed once the weights are bound
  void forward(std::span<const Model::BatchItem> items);
};

}  // namespace runnel

#pragma once
// The model: a checkpoint bound to the generic block builder, and the
// sequences that run it (prefill of a prompt as one batch, then token-by-token
// decode over a KV cache).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runnel/buffer.hpp"
#include "runnel/config.hpp"
#include "runnel/kv_cache.hpp"
#include "runnel/ops.hpp"
#include "runnel/tensor.hpp"

namespace runnel {

class Tokenizer;

struct LoadOptions {
  // Dtype of the matrix weights (and token embeddings) during compute.  When it
  // matches the file the weights are mapped views; otherwise they are converted
  // once at load.  Unset: the checkpoint's own dtype.  Norms, biases and
  // position tables are always f32; activations are always f32.
  std::optional<DType> dtype;
  // Supplies or overrides the tokenizer (file or folder, see load_tokenizer).
  std::string tokenizer_path;
  int threads = 0;  // 0: every hardware thread this process may use
  // Directory for named intermediate outputs (.npy); empty: $RUNNEL_DUMP if set.
  std::string dump_dir;
  // Map the model files (weights are views into the mapping), or read them
  // into anonymous memory (llama.cpp's --no-mmap).
  bool mmap = true;
  // Lock the files' pages in memory (mlock); a failure is an error.
  bool mlock = false;
  // Called while weights are bound and converted with the fraction done, in
  // [0, 1], ending with 1 (for a progress bar).
  std::function<void(double)> progress;
  // Where the model runs: its Context's device.  Weights are bound (mapped or
  // converted) on the host, then placed on the device once; the workspace and
  // the KV caches come from that device's Backend.  A device this build or
  // machine lacks is an error at load.
  Device device = Device::CPU;
};

// Random weights for a configuration (benchmarks at real sizes without a download).
struct RandomOptions {
  DType dtype = DType::F16;  // matrix weights; quantized types are quantized from f32 draws
  uint64_t seed = 0;
  int threads = 0;  // 0: every hardware thread
  std::function<void(double)> progress;
  Device device = Device::CPU;  // as LoadOptions::device
};

enum class Logits : unsigned char {
  Last,  // logits of the last token only: [vocab]
  All,   // logits of every token: [n, vocab]
};

class Model {
 public:
  // Opens `path` (see open_checkpoint), binds and checks every weight.
  static std::unique_ptr<Model> load(const std::string& path, const LoadOptions& options = {});
  // A model of `config` (validated) with weights drawn uniformly with standard
  // deviation 0.02 (norm weights 1, biases 0), held in memory.  No tokenizer.
  // Deterministic for a seed, whatever the thread count.
  static std::unique_ptr<Model> random(const ModelConfig& config, const RandomOptions& options = {});
  // Bytes of memory the weights of `config` take in `dtype` (norms f32).
  static int64_t weight_bytes(const ModelConfig& config, DType dtype);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const;
  const std::string& path() const;
  const std::string& format() const;   // "safetensors", "llama2.c", "gguf"
  // Compute dtype of the matrix weights, and their dtype in the checkpoint;
  // in files that mix types, the one most matrices have.
  DType weight_dtype() const;
  DType file_dtype() const;
  bool weights_mapped() const;         // every matrix weight is a view into the file
  // The matrix weights' type, named as llama.cpp names a file's type.  Used
  // as stored: a GGUF's general.file_type ("Q4_1", "Q4_K - Medium"), else the
  // ggml name of the type most matrix weights are stored in ("Q4_1", "F16").
  // Converted at load: the type most of them are converted to.
  std::string type_name() const;
  // Bytes of the weights as held: views into the file in their stored types,
  // converted weights in their converted types; a tied head counted once.
  int64_t stored_weight_bytes() const;
  const Tokenizer* tokenizer() const;  // null when none was found or given
  Context& context();

  std::unique_ptr<KvCache> new_cache(DType kv_dtype = DType::F32) const;

  // Runs `ids` at positions [pos0, pos0 + ids.size()), reading positions
  // [0, pos0) from `cache` and appending the new keys and values.  `logits`
  // receives [vocab] (Last) or [ids.size(), vocab] (All) floats.
  void forward(KvCache& cache, std::span<const int32_t> ids, int64_t pos0, Logits which,
               std::vector<float>& logits);

  // One sequence's part of a batched forward pass.
  struct BatchItem {
    KvCache* cache = nullptr;
    std::span<const int32_t> ids;
    int64_t pos0 = 0;
    Logits which = Logits::Last;
    std::vector<float>* logits = nullptr;  // [vocab] or [ids.size(), vocab]; null: none
    // Or the logits left where they were computed: set to a view of them,
    // [1 or ids.size(), vocab] f32 on the model's device, valid until the
    // next forward.  Nothing is copied (a device sampler reads them there).
    Tensor* logits_view = nullptr;
    // Final hidden states of the same rows (after the final norm and OPT's
    // project_out, as transformers' last_hidden_state): [embed_dim] or [n, embed_dim].
    std::vector<float>* hidden = nullptr;
  };
  // Runs every item in one pass: the matrix products see all items' tokens
  // together (weights are read once), attention reads each item's own cache.
  // The results equal separate forward() calls up to floating-point rounding.
  void forward(std::span<const BatchItem> items);

  // Writes named intermediates ("inp_embd", "attn_norm-3", "l_out-3",
  // "result_norm", "result_output", ...) as <dir>/<call>-<name>.npy; "" stops.
  void set_dump_dir(const std::string& dir);

  struct Impl;

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// One sequence: its tokens and KV cache, stepped by hand (perplexity, tests,
// your own loop).  Generation goes through the Scheduler (scheduler.hpp:
// runnel::generate for one prompt).
class Sequence {
 public:
  explicit Sequence(Model& model, DType kv_dtype = DType::F32);
  // Appends `ids` as one batch.  Returns [vocab] (Last) or [n, vocab] (All).
  std::vector<float> prefill(std::span<const int32_t> ids, Logits which = Logits::Last);
  // Appends one token; returns its logits [vocab].
  std::vector<float> decode(int32_t id);
  int64_t n_past() const { return int64_t(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  void reset();
  Model& model() { return *model_; }

 private:
  Model* model_;
  std::unique_ptr<KvCache> cache_;
  std::vector<int32_t> tokens_;
};

// The index of the largest logit (the lowest index among ties).
int32_t argmax(std::span<const float> logits);

}  // namespace runnel

#pragma once
// Flags shared by the subcommands that load a model and sample from it
// (generate, chat): model and context flags, llama.cpp's sampling flags, and
// small input helpers (token id lists, files).
#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llama_flags.hpp"
#include "runnel/model.hpp"
#include "runnel/sampler.hpp"

namespace runnel::cli {

struct ModelFlags {
  std::string model;
  std::string tokenizer;
  std::string dtype;
  std::string kv_dtype;  // empty: f32, or f16 with llama_cpp_order
  int threads = 0;
  int64_t ctx = 0;           // -c; 0: the command's default
  double kv_cache_mb = 0.0;  // 0: unbounded
  bool llama_cpp_order = false;
  int64_t batch = 0;   // -b/--batch-size: most prompt tokens per forward pass; 0: all
  int64_t ubatch = 0;  // -ub/--ubatch-size: the same (runnel has one level)
  std::string cache_type_k, cache_type_v;  // -ctk / -ctv, as --kv-dtype
  DeviceFlags device;
};

// -m/--model, --tokenizer, --dtype, --kv-dtype, -t/--threads, the llama.cpp
// device flags (-ngl, -fa, --no-mmap, --mlock, ...); with `context`, also
// -c/--ctx-size, --kv-cache-mb, -b/--batch-size and -ub/--ubatch-size.
void add_model_flags(CLI::App& app, ModelFlags& f, bool context = true);
// -b/--batch-size and -ub/--ubatch-size (add_model_flags adds them with `context`).
void add_batch_flags(CLI::App& app, ModelFlags& f);
// The prompt tokens one forward pass takes: min of -b and -ub (0: all).
int64_t prompt_chunk(const ModelFlags& f);
// Runs `ids` from position `pos0` in passes of at most `chunk` tokens (0: one
// pass); `logits` ends as one pass over all of them would leave it.
void forward_chunked(Model& model, KvCache& cache, std::span<const int32_t> ids, int64_t pos0,
                     Logits which, std::vector<float>& logits, int64_t chunk);
// -t beyond the hardware threads only slows a spinning pool down: warns and
// returns the hardware thread count; otherwise returns `threads`.
int capped_threads(int threads);
LoadOptions load_options(const ModelFlags& f);
DType kv_dtype(const ModelFlags& f);  // f32 or f16, else runnel::Error
// Loads f.model with a progress bar on a terminal; `load_ms` receives the time.
std::unique_ptr<Model> load_model(const ModelFlags& f, double* load_ms = nullptr);

// The most tokens one sequence may hold: the smallest of -c (or
// `default_ctx` when -c is 0), the tokens --kv-cache-mb holds, and a learned
// position table's length.  0 means no limit.  Throws runnel::Error when -c
// exceeds a learned position table or --kv-cache-mb holds no block.
int64_t context_limit(const ModelFlags& f, const ModelConfig& cfg, int64_t default_ctx = 0);

struct SamplingFlags {
  SamplerOptions o;  // llama.cpp's defaults, temperature set per command
  std::string seed;  // -s/--seed: empty for o.seed; -1 draws a random seed
  std::vector<std::string> logit_bias;
  std::vector<std::string> stop;
};

// --temp, -s/--seed, --top-k, --top-p, --min-p, --typical/--typical-p,
// --repeat-penalty, --repeat-last-n, --frequency-penalty, --presence-penalty,
// --samplers/--sampler-order, -l/--logit-bias, --stop.
void add_sampling_flags(CLI::App& app, SamplingFlags& f);
// Resolves the logit biases and stage-name aliases; make_sampler checks the rest.
SamplerOptions sampler_options(const SamplingFlags& f);

// Reads standard input to its end; `what` names the flag in errors.
std::string read_stdin(const std::string& what);

// "1,2, 3" or "1 2\n3" (a JSON array "[1, 2, 3]" also parses).  `what` names
// the flag in errors.
std::vector<int32_t> parse_id_list(const std::string& s, const std::string& what);
// The whole file ("-": standard input); `what` names the flag in errors.
std::string read_text_file(const std::string& path, const std::string& what);

// The ids generation stops on: the config's EOS ids and the tokenizer's EOS,
// with `all_eog` also every end-of-generation token the tokenizer knows
// (<|eot_id|>, <|im_end|>, ...).
std::vector<int32_t> eos_ids(const ModelConfig& cfg, const Tokenizer* tok, bool all_eog);

}  // namespace runnel::cli

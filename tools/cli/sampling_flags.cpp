#include "sampling_flags.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "progress.hpp"
#include "runnel/error.hpp"
#include "runnel/kv_cache.hpp"
#include "runnel/thread_pool.hpp"
#include "runnel/tokenizer.hpp"

namespace runnel::cli {

void add_model_flags(CLI::App& app, ModelFlags& f, bool context) {
  app.add_option("-m,--model", f.model,
                 "Model: a Hugging Face folder (config.json + safetensors), a GGUF file or a "
                 "llama2.c .bin")
      ->required();
  app.add_option(
      "--tokenizer", f.tokenizer,
      "Tokenizer file or folder (tokenizer.json, tokenizer.model, llama2.c tokenizer.bin, GGUF)");
  app.add_option("--dtype", f.dtype,
                 "Weight compute dtype: f32, f16 or bf16 (default: the file's)");
  app.add_option("--kv-dtype", f.kv_dtype,
                 "KV cache dtype: f32 or f16 (default: f32; f16 with --llama-cpp-order)")
      ->check(CLI::IsMember({"f32", "f16", "float32", "float16"}));
  app.add_option("--cache-type-k", f.cache_type_k, "-ctk: as --kv-dtype (f32 or f16)")
      ->check(CLI::IsMember({"f32", "f16"}))
      ->group("llama.cpp compatibility");
  app.add_option("--cache-type-v", f.cache_type_v, "-ctv: as --kv-dtype (f32 or f16)")
      ->check(CLI::IsMember({"f32", "f16"}))
      ->group("llama.cpp compatibility");
  app.add_flag("--llama-cpp-order", f.llama_cpp_order,
               "Quantized products in llama.cpp's summation order at every batch size (slower "
               "prompts), and f16 as the default --kv-dtype: on AVX-512, Q4_1, Q5_1 and Q8_0 files "
               "then give llama.cpp's logits bit for bit");
  app.add_option("-t,--threads", f.threads, "Worker threads (default: all)")
      ->check(CLI::Range(0, 1024));
  if (context) {
    app.add_option("-c,--ctx-size", f.ctx,
                   "Context size in tokens: the positions the KV cache holds, i.e. the prompt "
                   "and every generated token but the last (default: the model's trained "
                   "context, else unlimited)")
        ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
    app.add_option("--kv-cache-mb", f.kv_cache_mb,
                   "KV cache budget in MiB; limits the context to the tokens it holds")
        ->check(CLI::Range(0.0, double(1 << 30)));
    add_batch_flags(app, f);
  }
  add_device_flags(app, f.device);
}

void add_batch_flags(CLI::App& app, ModelFlags& f) {
  app.add_option("-b,--batch-size", f.batch,
                 "Most prompt tokens per forward pass (default: the whole prompt)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
  app.add_option("--ubatch-size", f.ubatch, "-ub: as -b (runnel has one batch level)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 24));
}

int64_t prompt_chunk(const ModelFlags& f) {
  if (f.batch > 0 && f.ubatch > 0) return std::min(f.batch, f.ubatch);
  return std::max(f.batch, f.ubatch);
}

void forward_chunked(Model& model, KvCache& cache, std::span<const int32_t> ids, int64_t pos0,
                     Logits which, std::vector<float>& logits, int64_t chunk) {
  const int64_t n = int64_t(ids.size());
  if (chunk <= 0 || chunk >= n) {
    model.forward(cache, ids, pos0, which, logits);
    return;
  }
  std::vector<float> all, part;
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t len = std::min(chunk, n - i);
    model.forward(cache, ids.subspan(size_t(i), size_t(len)), pos0 + i, which, part);
    if (which == Logits::All)
      all.insert(all.end(), part.begin(), part.end());
    else if (i + len == n)
      all.swap(part);
  }
  logits.swap(all);
}

int capped_threads(int threads) {
  const int hw = ThreadPool::hardware_threads();
  if (threads <= hw) return threads;
  if (log_enabled(LogLevel::Warn))
    std::fprintf(stderr,
                 "runnel: warning: -t/--threads %d is more than the %d hardware threads this "
                 "process may use; using %d\n",
                 threads, hw, hw);
  return hw;
}

LoadOptions load_options(const ModelFlags& f) {
  LoadOptions o;
  if (!f.dtype.empty()) o.dtype = parse_dtype(f.dtype, "--dtype");
  o.tokenizer_path = f.tokenizer;
  o.threads = capped_threads(f.threads);
  o.mmap = !f.device.no_mmap;
  o.mlock = f.device.mlock;
  warn_device_flags(f.device);
  return o;
}

DType kv_dtype(const ModelFlags& f) {
  if (!f.cache_type_k.empty() && !f.cache_type_v.empty() && f.cache_type_k != f.cache_type_v)
    throw Error("--cache-type-k, --cache-type-v: runnel keeps keys and values in one dtype");
  std::string name = f.kv_dtype;
  const std::string& ct = f.cache_type_k.empty() ? f.cache_type_v : f.cache_type_k;
  if (!ct.empty()) {
    if (!name.empty() && parse_dtype(name, "--kv-dtype") != parse_dtype(ct, "--cache-type-k"))
      throw Error("--kv-dtype and --cache-type-k/-v: give one KV cache dtype");
    name = ct;
  }
  if (name.empty()) return f.llama_cpp_order ? DType::F16 : DType::F32;
  const DType kv = parse_dtype(name, "--kv-dtype");
  if (kv != DType::F32 && kv != DType::F16) throw Error("--kv-dtype: must be f32 or f16");
  return kv;
}

std::unique_ptr<Model> load_model(const ModelFlags& f, double* load_ms) {
  LoadOptions o = load_options(f);
  kv_dtype(f);  // bad flags fail before a long load
  ProgressBar bar("loading");
  o.progress = bar.callback();
  const auto t0 = std::chrono::steady_clock::now();
  auto model = Model::load(f.model, o);
  bar.finish();
  model->context().cpu.llama_cpp_order = f.llama_cpp_order;
  if (load_ms)
    *load_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return model;
}

int64_t context_limit(const ModelFlags& f, const ModelConfig& cfg, int64_t default_ctx) {
  int64_t limit = f.ctx > 0 ? f.ctx : default_ctx;
  if (cfg.position == PositionKind::Learned && cfg.max_positions > 0) {
    if (f.ctx > cfg.max_positions)
      throw Error(fmt::format("-c/--ctx-size: {} tokens exceed the model's position table of {}",
                              f.ctx, cfg.max_positions));
    limit = limit > 0 ? std::min(limit, cfg.max_positions) : cfg.max_positions;
  }
  if (f.kv_cache_mb > 0) {
    const KvCacheOptions kv = KvCacheOptions::for_model(cfg, kv_dtype(f));
    const double bytes = f.kv_cache_mb * 1024.0 * 1024.0;
    const int64_t blocks = kv.blocks_for_bytes(int64_t(std::min(bytes, 9.0e18)));
    const int64_t tokens = blocks * kv.block_size;
    limit = limit > 0 ? std::min(limit, tokens) : tokens;
  }
  return limit;
}

void add_sampling_flags(CLI::App& app, SamplingFlags& f) {
  SamplerOptions& o = f.o;
  app.add_option("--temp", o.temperature, "Sampling temperature; 0 is greedy")
      ->check(CLI::Range(0.0f, 100.0f))
      ->capture_default_str();
  app.add_option("-s,--seed", f.seed,
                 "Seed of the sampler's RNG (default: " + std::to_string(o.seed) +
                     "); -1 draws a random seed, printed at --log-level info");
  app.add_option("--top-k", o.top_k, "Keep the k most likely tokens (<= 0: off)")
      ->capture_default_str();
  const CLI::Validator unit_open(
      [](std::string& v) -> std::string {
        try {
          size_t used = 0;
          const double d = std::stod(v, &used);
          if (used == v.size() && d > 0.0 && d <= 1.0) return {};
        } catch (const std::exception&) {
        }
        return "Value " + v + " not in range (0, 1]";
      },
      "FLOAT in (0 - 1]");
  app.add_option("--top-p", o.top_p, "Nucleus sampling: keep the smallest set of mass p (1: off)")
      ->check(unit_open)
      ->capture_default_str();
  app.add_option("--min-p", o.min_p, "Keep tokens with p >= min-p * max p (0: off)")
      ->check(CLI::Range(0.0f, 1.0f))
      ->capture_default_str();
  app.add_option("--typical,--typical-p", o.typical_p, "Locally typical sampling mass (1: off)")
      ->check(unit_open)
      ->capture_default_str();
  app.add_option("--repeat-penalty", o.repeat_penalty,
                 "Penalty for tokens in the last --repeat-last-n (1: off)")
      ->check(CLI::Range(0.0f, 100.0f))
      ->capture_default_str();
  app.add_option("--repeat-last-n", o.penalty_last_n,
                 "Tokens the penalties look back on (0: off, -1: the whole context)")
      ->check(CLI::Range(-1, 1 << 24))
      ->capture_default_str();
  app.add_option("--frequency-penalty", o.frequency_penalty,
                 "Subtract count * this from a repeated token's logit (0: off)")
      ->check(CLI::Range(-100.0f, 100.0f))
      ->capture_default_str();
  app.add_option("--presence-penalty", o.presence_penalty,
                 "Subtract this from the logit of a token already present (0: off)")
      ->check(CLI::Range(-100.0f, 100.0f))
      ->capture_default_str();
  app.add_option("--samplers,--sampler-order", o.order,
                 "Stage order, names separated by ';' or ',': logit_bias, penalties, top_k, "
                 "typical_p, top_p, min_p, temperature")
      ->capture_default_str();
  app.add_option("-l,--logit-bias", f.logit_bias,
                 "Bias a token's logit: ID+BIAS or ID-BIAS, e.g. 15043+1 or 2-inf (repeatable)");
  app.add_option("--stop,-r,--reverse-prompt", f.stop,
                 "Stop when the output contains STRING (not printed; repeatable)");
  add_refused(app, "--grammar,--grammar-file,--json-schema,-j,--json-schema-file", true,
              "grammar- and schema-constrained sampling is not supported");
  add_refused(app, "--mirostat,--mirostat-lr,--mirostat-ent", true,
              "mirostat sampling is not supported (runnel's samplers: --samplers)");
  add_refused(app,
              "--dry-multiplier,--dry-base,--dry-allowed-length,--dry-penalty-last-n,"
              "--dry-sequence-breaker,--xtc-probability,--xtc-threshold,--top-nsigma,"
              "--dynatemp-range,--dynatemp-exp",
              true, "this sampler is not supported (runnel's samplers: --samplers)");
}

namespace {

std::string canonical_stage(std::string name) {
  if (name == "typ_p" || name == "typical" || name == "typ") return "typical_p";
  if (name == "temp") return "temperature";
  if (name == "penalty" || name == "repetition") return "penalties";
  return name;
}

}  // namespace

SamplerOptions sampler_options(const SamplingFlags& f) {
  SamplerOptions o = f.o;
  if (!f.seed.empty()) {
    if (f.seed == "-1") {
      // As llama.cpp: -1 is a fresh random seed each run.
      o.seed = (uint64_t(std::random_device{}()) << 32) ^ uint64_t(std::random_device{}());
      if (log_enabled(LogLevel::Info))
        std::fprintf(stderr, "seed: %llu (drawn for --seed -1)\n",
                     static_cast<unsigned long long>(o.seed));
    } else {
      const std::string& v = f.seed;
      if (v.empty() || v.size() > 20 || v.find_first_not_of("0123456789") != std::string::npos)
        throw Error("--seed: expected an integer in [0, 2^64), or -1 for a random seed, got \"" +
                    v + "\"");
      errno = 0;
      const unsigned long long u = std::strtoull(v.c_str(), nullptr, 10);
      if (errno == ERANGE)
        throw Error("--seed: " + v + " is larger than 2^64 - 1");
      o.seed = u;
    }
  }
  // Stage-name aliases (llama.cpp spells typical_p "typ_p").
  std::string order;
  size_t pos = 0;
  while (pos <= o.order.size()) {
    size_t end = o.order.find_first_of(";,", pos);
    if (end == std::string::npos) end = o.order.size();
    std::string name = o.order.substr(pos, end - pos);
    pos = end + 1;
    name.erase(0, name.find_first_not_of(" \t"));
    const size_t last = name.find_last_not_of(" \t");
    name.erase(last == std::string::npos ? 0 : last + 1);
    if (name.empty()) continue;
    if (!order.empty()) order.push_back(';');
    order += canonical_stage(name);
  }
  if (order.empty()) throw Error("--samplers: expected at least one stage name");
  o.order = order;
  for (const std::string& b : f.logit_bias) {
    const size_t sign = b.find_first_of("+-", 1);
    const std::string bad =
        "--logit-bias: expected ID+BIAS or ID-BIAS (e.g. 15043+1), got \"" + b + "\"";
    if (sign == std::string::npos || sign == 0) throw Error(bad);
    const std::string id_s = b.substr(0, sign);
    if (id_s.size() > 9 || id_s.find_first_not_of("0123456789") != std::string::npos)
      throw Error(bad);
    const int32_t id = int32_t(std::stol(id_s));
    const std::string v = b.substr(sign + 1);
    float bias;
    if (v == "inf") {
      bias = std::numeric_limits<float>::infinity();
    } else {
      char* endp = nullptr;
      const double d = std::strtod(v.c_str(), &endp);
      if (v.empty() || endp != v.c_str() + v.size() || !std::isfinite(d) || std::fabs(d) > 1e6)
        throw Error(bad);
      bias = float(d);
    }
    if (b[sign] == '-') bias = -bias;
    o.logit_bias[id] += bias;
  }
  return o;
}

std::vector<int32_t> parse_id_list(const std::string& s, const std::string& what) {
  std::vector<int32_t> ids;
  size_t i = 0;
  auto sep = [](char c) {
    return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '[' || c == ']';
  };
  while (i < s.size()) {
    while (i < s.size() && sep(s[i])) ++i;
    if (i == s.size()) break;
    size_t j = i;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    if (j == i || j - i > 9 || (j < s.size() && !sep(s[j])))
      throw Error(fmt::format("{}: expected token ids separated by commas or spaces, found \"{}\"",
                              what, s.substr(i, std::min<size_t>(20, s.size() - i))));
    ids.push_back(int32_t(std::stol(s.substr(i, j - i))));
    i = j;
  }
  return ids;
}

std::string read_stdin(const std::string& what) {
  std::stringstream ss;
  ss << std::cin.rdbuf();
  if (std::cin.bad()) throw Error(what + ": reading standard input failed");
  std::cin.clear();
  return ss.str();
}

std::string read_text_file(const std::string& path, const std::string& what) {
  if (path == "-") return read_stdin(what);
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (st.type() == std::filesystem::file_type::not_found)
    throw Error(fmt::format("{}: {}: no such file", what, path));
  if (ec) throw Error(fmt::format("{}: {}: cannot access: {}", what, path, ec.message()));
  if (st.type() == std::filesystem::file_type::directory)
    throw Error(fmt::format("{}: {}: is a directory, not a file", what, path));
  if (st.type() != std::filesystem::file_type::regular)
    throw Error(fmt::format("{}: {}: not a regular file", what, path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: {}: cannot open", what, path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(fmt::format("{}: {}: read failed", what, path));
  return ss.str();
}

std::vector<int32_t> eos_ids(const ModelConfig& cfg, const Tokenizer* tok, bool all_eog) {
  std::vector<int32_t> ids = cfg.eos_ids;
  if (tok) {
    if (tok->eos_id() >= 0) ids.push_back(tok->eos_id());
    for (size_t i = 0; all_eog && i < tok->vocab_size(); ++i)
      if (tok->is_eog(int32_t(i))) ids.push_back(int32_t(i));
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

}  // namespace runnel::cli

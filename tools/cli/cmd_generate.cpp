// runnel generate: load a model, prefill the prompt, stream the continuation.
// stdout carries only the generated text (the prompt is not echoed); timing
// goes to stderr.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "command.hpp"
#include "runnel/model.hpp"
#include "runnel/runnel.hpp"
#include "runnel/tokenizer.hpp"

namespace runnel::cli {
namespace {

struct GenerateArgs {
  std::string model;
  std::string prompt;
  std::string prompt_ids;
  int n_predict = 128;
  float temperature = 0.0f;
  uint64_t seed = 0;
  std::string tokenizer;
  std::string dtype;
  std::string kv_dtype = "f32";
  int threads = 0;
  std::string dump_dir;
  bool ignore_eos = false;
  bool print_ids = false;
};

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ',' || s[i] == ' ')) ++i;
    if (i == s.size()) break;
    size_t j = i;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    if (j == i || j - i > 9)
      throw Error("--prompt-ids: expected comma-separated token ids, got \"" + s + "\"");
    ids.push_back(int32_t(std::stol(s.substr(i, j - i))));
    i = j;
  }
  return ids;
}

int run_generate(const GenerateArgs& a) {
  if (!(a.temperature >= 0.0f)) throw Error("--temp: must be >= 0");
  LoadOptions opts;
  if (!a.dtype.empty()) opts.dtype = parse_dtype(a.dtype, "--dtype");
  const DType kv = parse_dtype(a.kv_dtype, "--kv-dtype");
  if (kv != DType::F32 && kv != DType::F16) throw Error("--kv-dtype: must be f32 or f16");
  opts.tokenizer_path = a.tokenizer;
  opts.threads = a.threads;
  opts.dump_dir = a.dump_dir;

  const auto t_load = Clock::now();
  auto model = Model::load(a.model, opts);
  const double load_ms = ms_since(t_load);
  const ModelConfig& cfg = model->config();
  const Tokenizer* tok = model->tokenizer();

  std::vector<int32_t> prompt;
  if (!a.prompt_ids.empty()) {
    if (!a.prompt.empty()) throw Error("give either --prompt or --prompt-ids, not both");
    prompt = parse_ids(a.prompt_ids);
  } else {
    if (!tok)
      throw Error(a.model +
                  ": no tokenizer found beside the model; pass --tokenizer PATH "
                  "(or token ids with --prompt-ids)");
    prompt = tok->encode(a.prompt, /*add_special=*/true);
  }
  if (prompt.empty()) {
    const int32_t bos = tok && tok->bos_id() >= 0 ? tok->bos_id() : cfg.bos_id;
    if (bos < 0) throw Error("the prompt is empty and the model has no BOS token to start from");
    prompt.push_back(bos);
  }
  if (!a.print_ids && !tok) throw Error("--prompt-ids without a tokenizer needs --print-ids");

  GenerateOptions g;
  g.max_new_tokens = a.n_predict;
  g.temperature = a.temperature;
  g.seed = a.seed;
  if (!a.ignore_eos) {
    g.stop_ids = cfg.eos_ids;
    if (tok && tok->eos_id() >= 0) g.stop_ids.push_back(tok->eos_id());
  }

  std::optional<StreamDecoder> dec;
  if (tok && !a.print_ids) {
    dec.emplace(*tok, /*skip_special=*/true);
    for (int32_t id : prompt) dec->push(id);  // context for spacing; not printed
  }
  Sequence seq(*model, kv);
  const auto t_start = Clock::now();
  Clock::time_point t_first{};
  int n_gen = 0;
  bool first = true;
  generate(seq, prompt, g, [&](int32_t id) {
    if (first) {
      t_first = Clock::now();
      first = false;
    }
    ++n_gen;
    if (std::find(g.stop_ids.begin(), g.stop_ids.end(), id) != g.stop_ids.end()) return true;
    if (dec) {
      std::fputs(dec->push(id).c_str(), stdout);
    } else {
      std::printf("%s%d", n_gen > 1 ? " " : "", id);
    }
    std::fflush(stdout);
    return true;
  });
  const auto t_end = Clock::now();
  if (dec) std::fputs(dec->flush().c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);

  const double prefill_s =
      n_gen > 0 ? std::chrono::duration<double>(t_first - t_start).count() : 0.0;
  const double decode_s = n_gen > 0 ? std::chrono::duration<double>(t_end - t_first).count() : 0.0;
  const double prompt_tps = prefill_s > 0 ? double(prompt.size()) / prefill_s : 0.0;
  const double gen_tps = decode_s > 0 && n_gen > 1 ? double(n_gen - 1) / decode_s : 0.0;
  std::fprintf(stderr,
               "load: %.1f ms (%s, %s weights%s) | prompt: %zu tokens, %.1f tokens/s | "
               "generated: %d tokens, %.1f tokens/s\n",
               load_ms, model->format().c_str(),
               std::string(dtype_name(model->weight_dtype())).c_str(),
               model->weights_mapped() ? ", mapped" : ", converted", prompt.size(), prompt_tps,
               n_gen, gen_tps);
  return 0;
}

const Command generate_cmd("generate", [](CLI::App& app) {
  app.description("Generate a continuation of a prompt (greedy with --temp 0)");
  auto a = std::make_shared<GenerateArgs>();
  app.add_option("-m,--model", a->model,
                 "Model: a Hugging Face folder (config.json + safetensors) or a llama2.c .bin")
      ->required();
  app.add_option("-p,--prompt", a->prompt, "Prompt text (not echoed)");
  app.add_option("--prompt-ids", a->prompt_ids, "Prompt as comma-separated token ids");
  app.add_option("-n,--n-predict", a->n_predict, "Number of tokens to generate")
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--temp", a->temperature, "Sampling temperature; 0 is greedy")
      ->check(CLI::Range(0.0f, 100.0f));
  app.add_option("--seed", a->seed, "Seed of the sampler (temperature > 0)");
  app.add_option(
      "--tokenizer", a->tokenizer,
      "Tokenizer file or folder (tokenizer.json, tokenizer.model, llama2.c tokenizer.bin)");
  app.add_option("--dtype", a->dtype,
                 "Weight compute dtype: f32, f16 or bf16 (default: the file's)");
  app.add_option("--kv-dtype", a->kv_dtype, "KV cache dtype: f32 or f16");
  app.add_option("-t,--threads", a->threads, "Worker threads (default: all)")
      ->check(CLI::Range(0, 1024));
  app.add_option("--dump-layers", a->dump_dir,
                 "Write every named intermediate as DIR/<call>-<name>.npy (also $RUNNEL_DUMP)");
  app.add_flag("--ignore-eos", a->ignore_eos, "Do not stop at end-of-sequence tokens");
  app.add_flag("--print-ids", a->print_ids, "Print generated token ids instead of text");
  return [a] { return run_generate(*a); };
});

}  // namespace
}  // namespace runnel::cli

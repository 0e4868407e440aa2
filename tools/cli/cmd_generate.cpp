// runnel generate: load a model, prefill the prompt, stream the continuation.
// stdout carries only the generated text (the prompt is not echoed); timing
// goes to stderr.
#include <fmt/core.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <span>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "command.hpp"
#include "progress.hpp"
#include "runnel/model.hpp"
#include "runnel/runnel.hpp"
#include "runnel/sampler.hpp"
#include "runnel/scheduler.hpp"
#include "runnel/tokenizer.hpp"
#include "sampling_flags.hpp"

namespace runnel::cli {
namespace {

struct GenerateArgs {
  ModelFlags m;
  SamplingFlags s;
  std::string prompt;
  std::string prompt_file;
  std::string prompt_ids;
  int n_predict = 128;
  std::string dump_dir;
  bool ignore_eos = false;
  bool print_ids = false;
  bool escape = false;
  std::string color = "off";
};

// llama.cpp's prompt escapes (-e): \n \r \t \' \" \\ and \xHH.
std::string process_escapes(const std::string& s) {
  std::string o;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      o += s[i];
      continue;
    }
    const char c = s[++i];
    switch (c) {
      case 'n': o += '\n'; break;
      case 'r': o += '\r'; break;
      case 't': o += '\t'; break;
      case '\'': o += '\''; break;
      case '"': o += '"'; break;
      case '\\': o += '\\'; break;
      case 'x':
        if (i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
          o += char(std::stoi(s.substr(i + 1, 2), nullptr, 16));
          i += 2;
          break;
        }
        [[fallthrough]];
      default:
        o += '\\';
        o += c;
    }
  }
  return o;
}

using Clock = std::chrono::steady_clock;

int run_generate(const GenerateArgs& a) {
  // Flags that need no model are checked before the load.
  const SamplerOptions so = sampler_options(a.s);
  Sampler sampler = make_sampler(so);
  if (int(!a.prompt.empty()) + int(!a.prompt_file.empty()) + int(!a.prompt_ids.empty()) > 1)
    throw Error("give only one of --prompt, --file and --prompt-ids");
  if (!a.s.stop.empty() && a.print_ids) throw Error("--stop: needs text output, not --print-ids");
  for (const auto& s : a.s.stop)
    if (s.empty()) throw Error("--stop: the stop string is empty");
  std::string prompt_text = a.prompt;
  if (!a.prompt_file.empty()) prompt_text = read_text_file(a.prompt_file, "--file");
  if (a.escape) prompt_text = process_escapes(prompt_text);
  const bool color = a.color == "on" || a.color == "1" || a.color == "true" ||
                     a.color == "always" ||
                     (a.color == "auto" && ::isatty(STDOUT_FILENO) == 1);
  std::vector<int32_t> prompt;
  if (!a.prompt_ids.empty()) prompt = parse_id_list(a.prompt_ids, "--prompt-ids");
  const DType kv = kv_dtype(a.m);

  double load_ms = 0;
  auto model = [&] {
    LoadOptions o = load_options(a.m);
    o.dump_dir = a.dump_dir;  // checked (and its last component made) by the load
    ProgressBar bar("loading");
    o.progress = bar.callback();
    const auto t0 = Clock::now();
    auto m = Model::load(a.m.model, o);
    bar.finish();
    m->context().cpu.llama_cpp_order = a.m.llama_cpp_order;
    load_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    return m;
  }();
  const ModelConfig& cfg = model->config();
  const Tokenizer* tok = model->tokenizer();

  if (a.prompt_ids.empty()) {
    if (!tok)
      throw Error(a.m.model +
                  ": no tokenizer found beside the model; pass --tokenizer PATH "
                  "(or token ids with --prompt-ids)");
    prompt = tok->encode(prompt_text, /*add_special=*/true);
  }
  if (prompt.empty()) {
    const int32_t bos = tok && tok->bos_id() >= 0 ? tok->bos_id() : cfg.bos_id;
    if (bos < 0) throw Error("the prompt is empty and the model has no BOS token to start from");
    prompt.push_back(bos);
  }
  if (!a.print_ids && !tok) throw Error("--prompt-ids without a tokenizer needs --print-ids");
  for (int32_t id : prompt)
    if (id < 0 || id >= cfg.vocab_size)
      throw Error(fmt::format("prompt: token id {} is outside the vocabulary of {} tokens", id,
                              cfg.vocab_size));

  // The model's trained context unless -c says otherwise.
  const int64_t n_ctx = context_limit(a.m, cfg, cfg.max_positions > 0 ? cfg.max_positions : 0);
  // The cache holds n_ctx positions: the prompt and every generated token but
  // the last, which is never run (as llama2.c's run.c and llama.cpp count).
  if (n_ctx > 0 && int64_t(prompt.size()) >= n_ctx)
    throw Error(fmt::format(
        "the prompt is {} tokens but the context holds {} (-c/--ctx-size, --kv-cache-mb or the "
        "model's positions); it must be shorter to leave room for generation",
        prompt.size(), n_ctx));
  int64_t budget = a.n_predict;
  if (budget < 0) {  // -1 / -2, as llama.cpp: until the context is full
    if (n_ctx <= 0)
      throw Error("-n/--n-predict " + std::to_string(a.n_predict) +
                  ": generating until the context is full needs a context size (-c)");
    budget = n_ctx - int64_t(prompt.size()) + 1;
  }
  if (n_ctx > 0) budget = std::min<int64_t>(budget, n_ctx - int64_t(prompt.size()) + 1);

  StopOptions stop_opts;
  if (!a.ignore_eos) stop_opts.eos_ids = eos_ids(cfg, tok, /*all_eog=*/false);
  stop_opts.stop_strings = a.s.stop;
  stop_opts.max_tokens = budget;

  if (log_enabled(LogLevel::Debug))
    std::fprintf(stderr, "sampler: %s (seed %llu)\ncontext: %s\n", sampler.describe().c_str(),
                 static_cast<unsigned long long>(so.seed),
                 n_ctx > 0 ? std::to_string(n_ctx).c_str() : "unlimited");

  // One request through the Scheduler, as every generation runs.  Its pool
  // holds what this run can reach: the prompt and all but the last token.
  RequestOptions ro;
  ro.sampling = so;
  ro.stop = stop_opts;
  ro.stop_at_eos = false;  // eos_ids above (none with --ignore-eos)
  ro.text = tok && !a.print_ids;
  SchedulerOptions sched;
  sched.kv_dtype = kv;
  sched.max_sequences = 1;
  const int64_t chunk = prompt_chunk(a.m);
  sched.max_batch_tokens = chunk > 0 ? chunk : std::max<int64_t>(1, int64_t(prompt.size()));
  sched.ctx_size = int64_t(prompt.size()) + budget;

  const auto t_start = Clock::now();
  Clock::time_point t_first = t_start;
  int64_t n_gen = 0;
  const char* color_on = color ? "\033[33m" : "";  // the generated text in yellow
  if (color) std::fputs(color_on, stdout);
  if (budget > 0) {
    const RequestResult r = runnel::generate(
        *model, prompt, ro, sched, [&](const Event& e) {
          if (e.token >= 0 && n_gen++ == 0) t_first = Clock::now();
          if (ro.text) {
            std::fputs(e.text.c_str(), stdout);
          } else if (e.token >= 0 && e.finish != FinishReason::Eos) {
            std::printf("%s%d", n_gen > 1 ? " " : "", e.token);
          }
          std::fflush(stdout);
          return true;
        });
    if (r.samples.at(0).finish == FinishReason::Error) {
      std::fputs(color ? "\033[0m\n" : "\n", stdout);
      throw Error(r.samples[0].error);
    }
  }
  const auto t_end = Clock::now();
  if (color) std::fputs("\033[0m", stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);

  if (log_enabled(LogLevel::Info)) {
    const double prefill_s =
        n_gen > 0 ? std::chrono::duration<double>(t_first - t_start).count() : 0.0;
    const double decode_s =
        n_gen > 0 ? std::chrono::duration<double>(t_end - t_first).count() : 0.0;
    const double prompt_tps = prefill_s > 0 ? double(prompt.size()) / prefill_s : 0.0;
    const double gen_tps = decode_s > 0 && n_gen > 1 ? double(n_gen - 1) / decode_s : 0.0;
    std::fprintf(stderr,
                 "load: %.1f ms (%s, %s weights%s) | prompt: %zu tokens, %.1f tokens/s | "
                 "generated: %lld tokens, %.1f tokens/s\n",
                 load_ms, model->format().c_str(),
                 model->type_name().c_str(),
                 model->weights_mapped() ? ", mapped" : ", converted", prompt.size(), prompt_tps,
                 static_cast<long long>(n_gen), gen_tps);
  }
  return 0;
}

const Command generate_cmd("generate", [](CLI::App& app) {
  app.description("Generate a continuation of a prompt (greedy by default)");
  app.footer(
      "The text streams to stdout (the prompt is not echoed); timing goes to stderr.  Sampling "
      "is greedy unless --temp > 0; the other sampling flags then apply in --samplers order.  "
      "Stop strings end the output and are not printed.");
  auto a = std::make_shared<GenerateArgs>();
  a->s.o.temperature = 0.0f;  // greedy unless asked
  add_model_flags(app, a->m);
  app.add_option("-p,--prompt", a->prompt, "Prompt text (not echoed)");
  app.add_option("-f,--file", a->prompt_file, "Read the prompt from FILE (-: standard input)");
  app.add_flag("-e,--escape", a->escape,
               "Process escapes in the prompt (\\n, \\t, \\\\, ...), as llama.cpp does by default");
  app.add_flag("--no-escape")->description("Take the prompt as written (the default)")->group(
      "llama.cpp compatibility");
  app.add_flag("--no-display-prompt")->description("Accepted: generate never echoes the prompt")
      ->group("llama.cpp compatibility");
  app.add_option("--color", a->color,
                 "--color [on|off|auto]: the generated text in colour (on: always; auto: on a "
                 "terminal)")
      ->check(CLI::IsMember({"on", "off", "auto", "1", "0", "true", "false", "always", "never"}));
  app.add_option("--prompt-ids", a->prompt_ids, "Prompt as comma-separated token ids");
  app.add_option("-n,--n-predict", a->n_predict,
                 "Most tokens to generate (also limited by the context; -1: until the context "
                 "is full)")
      ->check(CLI::Range(-2, 1 << 24))
      ->capture_default_str();
  add_sampling_flags(app, a->s);
  app.add_option("--dump-layers", a->dump_dir,
                 "Write every named intermediate as DIR/<call>-<name>.npy (also $RUNNEL_DUMP)");
  app.add_flag("--ignore-eos", a->ignore_eos, "Do not stop at end-of-sequence tokens");
  app.add_flag("--print-ids", a->print_ids, "Print generated token ids instead of text");
  const std::string use_chat = "a conversation is 'runnel chat -m MODEL' (it takes --system)";
  add_refused(app, "-i,--interactive,--interactive-first,--conversation,--chatml,--multiline-input",
              false, use_chat);
  add_refused(app, "--system-prompt,--system-prompt-file,--chat-template,--chat-template-file",
              true, use_chat);
  add_refused(app, "--single-turn", false, use_chat);
  app.add_flag("--no-conversation")->description("-no-cnv: accepted; generate is always a plain continuation")
      ->group("llama.cpp compatibility");
  return [a] { return run_generate(*a); };
});

}  // namespace
}  // namespace runnel::cli

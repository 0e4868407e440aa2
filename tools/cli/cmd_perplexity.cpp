// runnel perplexity: the perplexity of a model on a text, over strided windows
// as in Hugging Face's perplexity guide, and optionally the KL divergence and
// top-1 agreement against a reference model over the same windows.
//
// Windows start at 0, stride, 2 * stride, ... and hold up to ctx tokens; each
// scores only the tokens the previous window did not (positions
// [max(prev_end, begin + 1), end)), so the first token of the text and, with
// stride == ctx, the first token of every window are never scored.  The last
// window is the first that reaches the end of the text.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "command.hpp"
#include "progress.hpp"
#include "runnel/model.hpp"
#include "runnel/runnel.hpp"
#include "runnel/tokenizer.hpp"
#include "sampling_flags.hpp"

namespace runnel::cli {
namespace {

struct PerplexityArgs {
  ModelFlags m;
  std::string file;
  std::string ids;
  std::string ids_file;
  int64_t ctx = 0;
  int64_t stride = 0;
  std::string kl_ref;
  std::string kl_ref_dtype;
  int64_t chunks = -1;  // --chunks: most windows; -1: all
  bool json = false;
};

// Runs a whole window from position 0, in passes of at most `chunk` tokens.
std::vector<float> window_logits(Sequence& seq, std::span<const int32_t> win, int64_t chunk) {
  seq.reset();
  if (chunk <= 0 || chunk >= int64_t(win.size())) return seq.prefill(win, Logits::All);
  std::vector<float> all;
  for (size_t i = 0; i < win.size(); i += size_t(chunk)) {
    const size_t len = std::min(win.size() - i, size_t(chunk));
    const std::vector<float> part = seq.prefill(win.subspan(i, len), Logits::All);
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

using Clock = std::chrono::steady_clock;

struct Window {
  int64_t begin, end;  // tokens [begin, end) are run
  int64_t score_from;  // positions [score_from, end) are scored
};

std::vector<Window> make_windows(int64_t n, int64_t ctx, int64_t stride) {
  std::vector<Window> w;
  int64_t prev_end = 0;
  for (int64_t begin = 0; begin < n; begin += stride) {
    const int64_t end = std::min(begin + ctx, n);
    w.push_back({begin, end, std::max(prev_end, begin + 1)});
    prev_end = end;
    if (end == n) break;
  }
  return w;
}

// log softmax of one row in double: returns log-sum-exp; `max_id` receives
// the argmax (lowest id among ties).
double log_sum_exp(const float* row, int64_t n, int32_t* max_id) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (row[i] > row[best]) best = i;
  const double mx = row[best];
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(row[i]) - mx);
  if (max_id) *max_id = int32_t(best);
  return mx + std::log(sum);
}

int run_perplexity(const PerplexityArgs& a) {
  const int given = int(!a.file.empty()) + int(!a.ids.empty()) + int(!a.ids_file.empty());
  if (given != 1) throw Error("give exactly one of -f/--file, --ids and --ids-file");
  if (a.stride < 0 || a.ctx < 0) throw Error("--ctx and --stride must be >= 0");
  std::string text;
  std::vector<int32_t> ids;
  if (!a.file.empty()) text = read_text_file(a.file, "--file");
  if (!a.ids.empty()) ids = parse_id_list(a.ids, "--ids");
  if (!a.ids_file.empty())
    ids = parse_id_list(read_text_file(a.ids_file, "--ids-file"), "--ids-file");
  const DType kv = kv_dtype(a.m);

  double load_ms = 0;
  auto model = load_model(a.m, &load_ms);
  const ModelConfig& cfg = model->config();
  if (!a.file.empty()) {
    const Tokenizer* tok = model->tokenizer();
    if (!tok)
      throw Error(a.m.model +
                  ": no tokenizer found beside the model; pass --tokenizer PATH "
                  "(or token ids with --ids / --ids-file)");
    ids = tok->encode(text, /*add_special=*/true);
  }
  const int64_t n = int64_t(ids.size());
  if (n < 2) throw Error(fmt::format("perplexity needs at least 2 tokens, got {}", n));
  for (int32_t id : ids)
    if (id < 0 || id >= cfg.vocab_size)
      throw Error(fmt::format("input: token id {} is outside the vocabulary of {} tokens", id,
                              cfg.vocab_size));

  // Window length: --ctx, else the model's position table, else 512 tokens.
  int64_t ctx = a.ctx > 0 ? a.ctx : (cfg.max_positions > 0 ? cfg.max_positions : 512);
  if (cfg.position == PositionKind::Learned && cfg.max_positions > 0 && ctx > cfg.max_positions) {
    if (a.ctx > 0)
      throw Error(fmt::format("--ctx: {} tokens exceed the model's position table of {}", ctx,
                              cfg.max_positions));
    ctx = cfg.max_positions;
  }
  ctx = std::min(ctx, n);
  if (ctx < 2) throw Error("--ctx: a window needs at least 2 tokens");
  const int64_t stride = a.stride > 0 ? a.stride : ctx;
  if (stride > ctx)
    throw Error(
        fmt::format("--stride: {} is larger than the window of {} tokens (tokens would "
                    "be skipped)",
                    stride, ctx));

  std::unique_ptr<Model> ref;
  if (!a.kl_ref.empty()) {
    ModelFlags rf = a.m;
    rf.model = a.kl_ref;
    rf.dtype = a.kl_ref_dtype;
    rf.tokenizer.clear();
    ref = load_model(rf, nullptr);
    if (ref->config().vocab_size != cfg.vocab_size)
      throw Error(fmt::format("--kl-ref: {} has a vocabulary of {} tokens, the model {}", a.kl_ref,
                              ref->config().vocab_size, cfg.vocab_size));
  }

  std::vector<Window> windows = make_windows(n, ctx, stride);
  if (a.chunks >= 0 && int64_t(windows.size()) > a.chunks) windows.resize(size_t(a.chunks));
  if (windows.empty()) throw Error("--chunks: 0 windows leave nothing to score");
  const int64_t chunk = prompt_chunk(a.m);
  const int64_t V = cfg.vocab_size;
  double nll_sum = 0, kl_sum = 0, ref_nll_sum = 0;
  int64_t scored = 0, agree = 0, evaluated = 0;
  double model_s = 0;
  Sequence seq(*model, kv);
  std::optional<Sequence> ref_seq;
  if (ref) ref_seq.emplace(*ref, kv);
  ProgressBar bar("perplexity",
                  stderr_is_tty() && log_enabled(LogLevel::Info) && windows.size() > 1);
  std::vector<double> logp_ref(size_t(ref ? V : 0));
  for (size_t wi = 0; wi < windows.size(); ++wi) {
    const Window& w = windows[wi];
    const std::span<const int32_t> win(ids.data() + w.begin, size_t(w.end - w.begin));
    const auto t0 = Clock::now();
    const std::vector<float> logits = window_logits(seq, win, chunk);
    model_s += std::chrono::duration<double>(Clock::now() - t0).count();
    evaluated += int64_t(win.size());
    std::vector<float> ref_logits;
    if (ref) {
      ref_logits = window_logits(*ref_seq, win, chunk);
    }
    // Row r predicts token begin + r + 1.
    for (int64_t pos = w.score_from; pos < w.end; ++pos) {
      const int64_t r = pos - 1 - w.begin;
      const float* row = logits.data() + r * V;
      int32_t top = 0;
      const double lse = log_sum_exp(row, V, &top);
      if (!std::isfinite(lse))
        throw Error(fmt::format(
            "{}: the logits at position {} are not finite (NaN or infinity): the model's weights "
            "are broken, or its computation overflows",
            a.m.model, pos - 1));
      nll_sum += lse - double(row[ids[size_t(pos)]]);
      ++scored;
      if (ref) {
        const float* rrow = ref_logits.data() + r * V;
        int32_t rtop = 0;
        const double rlse = log_sum_exp(rrow, V, &rtop);
        if (!std::isfinite(rlse))
          throw Error(fmt::format("--kl-ref: {}: the logits at position {} are not finite (NaN or "
                                  "infinity)",
                                  a.kl_ref, pos - 1));
        ref_nll_sum += rlse - double(rrow[ids[size_t(pos)]]);
        double kl = 0;
        for (int64_t v = 0; v < V; ++v) {
          const double lr = double(rrow[v]) - rlse;
          const double lm = double(row[v]) - lse;
          kl += std::exp(lr) * (lr - lm);
        }
        kl_sum += std::max(kl, 0.0);
        agree += top == rtop;
      }
    }
    bar.update(double(wi + 1) / double(windows.size()));
  }
  bar.finish();

  const double mean_nll = nll_sum / double(scored);
  const double ppl = std::exp(mean_nll);
  const double tps = model_s > 0 ? double(evaluated) / model_s : 0.0;
  if (a.json) {
    nlohmann::json j;
    j["model"] = a.m.model;
    j["tokens"] = n;
    j["ctx"] = ctx;
    j["stride"] = stride;
    j["windows"] = windows.size();
    j["scored_tokens"] = scored;
    j["mean_nll"] = mean_nll;
    j["perplexity"] = ppl;
    j["tokens_per_second"] = tps;
    if (ref) {
      j["kl_ref"] = a.kl_ref;
      j["ref_mean_nll"] = ref_nll_sum / double(scored);
      j["ref_perplexity"] = std::exp(ref_nll_sum / double(scored));
      j["mean_kl"] = kl_sum / double(scored);
      j["top1_agreement"] = double(agree) / double(scored);
    }
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("tokens: %lld, windows: %zu (ctx %lld, stride %lld), scored: %lld\n",
                static_cast<long long>(n), windows.size(), static_cast<long long>(ctx),
                static_cast<long long>(stride), static_cast<long long>(scored));
    std::printf("mean nll: %.6f\nperplexity: %.6f\n", mean_nll, ppl);
    if (ref) {
      std::printf("reference perplexity: %.6f\n", std::exp(ref_nll_sum / double(scored)));
      std::printf("mean KL(ref || model): %.6g\n", kl_sum / double(scored));
      std::printf("top-1 agreement: %.2f%%\n", 100.0 * double(agree) / double(scored));
    }
  }
  std::fflush(stdout);
  if (log_enabled(LogLevel::Info))
    std::fprintf(stderr, "load: %.1f ms | evaluated: %lld tokens in %.3f s, %.1f tokens/s\n",
                 load_ms, static_cast<long long>(evaluated), model_s, tps);
  return 0;
}

const Command perplexity_cmd("perplexity", [](CLI::App& app) {
  app.description("Perplexity of a model on a text, and KL divergence against a reference");
  app.footer(
      "Strided windows as in Hugging Face's perplexity guide: windows of --ctx tokens start "
      "every --stride tokens and each scores only the tokens the previous window did not (the "
      "first token of the text is never scored; with --stride equal to --ctx the windows are "
      "disjoint and the first token of each is not scored).  With --kl-ref, the same windows "
      "run through the reference model and the mean KL(ref || model) of the next-token "
      "distributions and the top-1 agreement are reported.");
  auto a = std::make_shared<PerplexityArgs>();
  add_model_flags(app, a->m, /*context=*/false);
  add_batch_flags(app, a->m);
  app.add_option("-f,--file", a->file, "Text file to score (tokenized with BOS)");
  app.add_option("--ids", a->ids, "Token ids to score, comma-separated (instead of --file)");
  app.add_option("--ids-file", a->ids_file,
                 "File of token ids separated by commas, spaces or newlines (a JSON array works)");
  app.add_option("-c,--ctx,--ctx-size", a->ctx,
                 "Window length in tokens (default: the model's position table, else 512; at "
                 "most the text)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  app.add_option("--stride,--ppl-stride", a->stride,
                 "Tokens between window starts (default: --ctx, disjoint)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 24));
  app.add_option("--kl-ref", a->kl_ref,
                 "Reference model (e.g. the f16 original of a quantized model) for KL and top-1 "
                 "agreement");
  app.add_option("--kl-ref-dtype", a->kl_ref_dtype, "Compute dtype of the reference model");
  app.add_flag("--json", a->json, "Print the results as JSON");
  app.add_option("--chunks", a->chunks, "Score at most this many windows (default: all)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  add_refused(app, "--kl-divergence-base,--kl-divergence", true,
              "runnel computes the KL divergence in one run against a reference model: --kl-ref "
              "MODEL");
  add_refused(app, "--hellaswag,--winogrande,--multiple-choice", false,
              "only perplexity and KL divergence are measured");
  add_refused(app, "--ppl-output-type", true, "the output is text, or JSON with --json");
  return [a] { return run_perplexity(*a); };
});

}  // namespace
}  // namespace runnel::cli

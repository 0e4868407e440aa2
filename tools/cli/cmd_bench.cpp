// runnel bench: throughput of prompt processing (pp) and generation (tg)
// through the batching Scheduler, in the manner of llama.cpp's llama-bench.
// Every combination of the -p / -n, -b and -t lists is one row: a warm-up run
// (not counted), then -r timed repetitions, reported as mean ± sd tokens/s.
//   ppP: B sequences each prefill P tokens;  t/s = B * P / time.
//   tgN: B sequences each generate N tokens after a 1-token prompt (greedy,
//        EOS ignored);  t/s = B * N / time.
// "overhead" is the share of Scheduler::step() time spent outside
// Model::forward (sampling, scheduling, cache bookkeeping).  A Model's thread
// count is fixed when it is built, so each -t value loads (or draws) it anew.
// The table (or --json / --csv rows) goes to stdout, progress to stderr.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "command.hpp"
#include "progress.hpp"
#include "runnel/runnel.hpp"
#include "runnel/scheduler.hpp"
#include "llama_flags.hpp"
#include "sampling_flags.hpp"

namespace runnel::cli {
namespace {

struct BenchArgs {
  std::string model, config, preset;
  std::string dtype;
  std::string kv_dtype;  // empty: f32, or f16 with --llama-cpp-order
  std::string tokenizer;
  std::string n_prompt = "512";
  std::string n_gen = "128";
  std::string parallel = "1";  // concurrent sequences (list)
  std::string batch_size;      // -b: llama-bench's logical batch (list); empty: no limit
  std::string ubatch_size;     // -ub / --ubatch: tokens per forward pass (list)
  std::string threads;         // empty: every hardware thread
  int reps = 3;
  int64_t gemm_min_rows = -1;  // -1: the library's default
  bool llama_cpp_order = false;
  bool profile = false;
  bool json = false;
  bool csv = false;
  std::string output;  // -o: md, json, jsonl, csv
  std::string n_gpu_layers;
  std::string flash_attn;
  std::string mmap;  // -mmp 0|1
  bool no_mmap = false;
  std::string cache_type_k, cache_type_v;
  bool no_kv_offload = false;
  bool verbose = false;
  uint64_t seed = 0;
};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A progress line on stderr (hidden below --log-level info).
template <class... Args>
void note(fmt::format_string<Args...> f, Args&&... args) {
  if (!log_enabled(LogLevel::Info)) return;
  std::fputs(("bench: " + fmt::format(f, std::forward<Args>(args)...) + "\n").c_str(), stderr);
}

// "512" or "1,4,16": non-negative integers in [lo, hi].
std::vector<int> parse_list(const std::string& s, const char* flag, int lo, int hi) {
  auto bad = [&](const std::string& why) -> Error {
    return Error(fmt::format("{}: {} (got \"{}\")", flag, why, s));
  };
  std::vector<int> out;
  size_t i = 0;
  for (;;) {
    const size_t j = std::min(s.find(',', i), s.size());
    const std::string item = s.substr(i, j - i);
    if (item.empty() || item.size() > 9 ||
        !std::all_of(item.begin(), item.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw bad(fmt::format("expected a comma-separated list of integers in [{}, {}]", lo, hi));
    const long v = std::stol(item);
    if (v < lo || v > hi) throw bad(fmt::format("{} is out of range [{}, {}]", v, lo, hi));
    out.push_back(int(v));
    if (j == s.size()) break;
    i = j + 1;
  }
  return out;
}

// Weight dtypes by their traits-table name (f32, f16, bf16, q8_0, q4_0, ...).
DType parse_weight_dtype(const std::string& s) {
  std::string known;
  for (int i = 0; i < kNumDTypes; ++i) {
    const DTypeTraits& t = traits(DType(i));
    if (!t.is_float) continue;
    if (t.name == s) return t.dtype;
    known += (known.empty() ? "" : ", ") + std::string(t.name);
  }
  try {
    return parse_dtype(s, "--dtype");  // long spellings (float16, bfloat16, ...)
  } catch (const Error&) {
    throw Error("--dtype: unknown weight dtype \"" + s + "\" (expected " + known + ")");
  }
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      case '\t':
        o += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          o += fmt::format("\\u{:04x}", int(c));
        else
          o += c;
    }
  }
  return o;
}

std::string json_number(double v) { return std::isfinite(v) ? fmt::format("{}", v) : "null"; }

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

// Where the weights come from: a checkpoint, or random weights of a config.
struct Source {
  std::string name;     // the "model" column
  std::string weights;  // "file" or "random"
  std::string path;     // -m
  ModelConfig config;   // --config / --preset
  std::optional<DType> dtype;
  std::string tokenizer;
  bool mmap = true;
  uint64_t seed = 0;

  std::unique_ptr<Model> build(int threads) const {
    const auto t0 = Clock::now();
    std::unique_ptr<Model> m;
    if (weights == "file") {
      note("loading {} ({} threads)", path, threads);
      ProgressBar bar("loading");
      LoadOptions o;
      o.progress = bar.callback();
      o.dtype = dtype;
      o.threads = threads;
      o.tokenizer_path = tokenizer;
      o.mmap = mmap;
      m = Model::load(path, o);
    } else {
      const DType dt = dtype.value_or(DType::F16);
      note("random {} weights for {} ({} threads)", dtype_name(dt), name, threads);
      ProgressBar bar("weights");
      RandomOptions o;
      o.progress = bar.callback();
      o.dtype = dt;
      o.seed = seed;
      o.threads = threads;
      m = Model::random(config, o);
    }
    note("model ready in {:.1f} s", seconds_since(t0));
    return m;
  }
};

struct Test {
  int n_prompt = 0;  // pp: tokens per sequence; 0 for tg
  int n_gen = 0;     // tg: tokens per sequence; 0 for pp
  int batch = 1;     // concurrent sequences
  int threads = 1;
  int64_t ubatch = 0;  // tokens per forward pass; 0: max(512, prompt length, batch)
  std::string name() const {
    return n_gen > 0 ? fmt::format("tg{}", n_gen) : fmt::format("pp{}", n_prompt);
  }
};

struct Sample {
  double seconds = 0;
  int64_t tokens = 0;
  Scheduler::Stats stats;
};

struct Row {
  Test test;
  std::string model, family, weights, dtype, kv_dtype, backend;
  int64_t size_bytes = 0, params = 0, ubatch = 0, gemm_min_rows = 0;
  std::vector<Sample> samples;
  bool profiled = false;
  OpProfile profile;  // over every repetition (not the warm-up)

  std::vector<double> ts() const {
    std::vector<double> v;
    for (const Sample& s : samples) v.push_back(s.seconds > 0 ? double(s.tokens) / s.seconds : 0);
    return v;
  }
  static double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0 : s / double(v.size());
  }
  static double sd(const std::vector<double>& v) {
    if (v.size() < 2) return 0;
    const double m = mean(v);
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / double(v.size() - 1));
  }
  // Share of step() time spent outside Model::forward (sampling, scheduling,
  // cache bookkeeping), over all repetitions.
  double overhead() const {
    double total = 0, fwd = 0;
    for (const Sample& s : samples) {
      total += s.stats.total_s;
      fwd += s.stats.forward_s;
    }
    return total > 0 ? (total - fwd) / total : 0;
  }
  int64_t steps() const { return samples.empty() ? 0 : samples.front().stats.steps; }
  double sum(double Scheduler::Stats::*field) const {
    double t = 0;
    for (const Sample& s : samples) t += s.stats.*field;
    return t;
  }
  int64_t all_steps() const {
    int64_t n = 0;
    for (const Sample& s : samples) n += s.stats.steps;
    return n;
  }

  // --profile: each op's share of a step (the scheduler's step() time), then
  // the forward pass's time outside every op (host work between ops: views,
  // batch tables, uploads) and the step's time outside the forward pass
  // (sampling, scheduling, cache bookkeeping), largest op first.
  struct ProfileLine {
    std::string what;
    double calls_per_step = 0, ms_per_step = 0, share = 0;
  };
  std::vector<ProfileLine> profile_lines() const {
    std::vector<ProfileLine> out;
    const double steps = double(std::max<int64_t>(1, all_steps()));
    const double total = sum(&Scheduler::Stats::total_s), fwd = sum(&Scheduler::Stats::forward_s);
    auto line = [&](std::string what, double calls, double seconds) {
      out.push_back({std::move(what), calls / steps, 1e3 * seconds / steps, total > 0 ? seconds / total : 0});
    };
    std::vector<OpProfile::Entry> e = profile.entries;
    std::sort(e.begin(), e.end(), [](const auto& a, const auto& b) { return a.ns > b.ns; });
    for (const OpProfile::Entry& x : e)
      line(std::string(x.op) + (std::string_view(x.op) == "matmul" ? " " + std::string(dtype_name(x.dtype)) : ""),
           double(x.calls), 1e-9 * double(x.ns));
    line("(forward, outside ops)", 0, std::max(0.0, fwd - 1e-9 * double(profile.total_ns())));
    line("(step, outside forward)", 0, std::max(0.0, total - fwd));
    return out;
  }
};

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// One run of `t` on a fresh Scheduler.  `n_gen` overrides t.n_gen (warm-up).
Sample run_once(Model& model, const Test& t, int n_gen, DType kv_dtype, int64_t ubatch,
                uint64_t seed) {
  const bool tg = t.n_gen > 0;
  const int64_t prompt_len = tg ? 1 : t.n_prompt;
  SchedulerOptions so;
  so.kv_dtype = kv_dtype;
  so.max_sequences = t.batch;
  so.max_batch_tokens = ubatch;
  so.ctx_size = int64_t(t.batch) * round_up(prompt_len + n_gen + 1, so.block_size);
  Scheduler sched(model, so);

  RequestOptions ro;
  ro.sampling.temperature = 0.0f;
  ro.stop.max_tokens = tg ? n_gen : 0;
  ro.stop_at_eos = false;
  ro.text = false;

  // The same prompts in every repetition.
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(model.config().vocab_size - 1));
  std::vector<RequestId> ids;
  for (int b = 0; b < t.batch; ++b) {
    std::vector<int32_t> prompt(size_t(prompt_len), 0);
    for (int32_t& id : prompt) id = tok(rng);
    ids.push_back(sched.submit(std::move(prompt), ro));
  }

  const auto t0 = Clock::now();
  sched.run();
  Sample s;
  s.seconds = seconds_since(t0);
  s.stats = sched.stats();

  for (RequestId id : ids) {
    const RequestResult r = sched.take(id);
    for (const Completion& c : r.samples) {
      if (c.finish == FinishReason::Error)
        throw Error(
            fmt::format("{} (batch {}): a sequence failed: {}", t.name(), t.batch, c.error));
      if (tg && int64_t(c.tokens.size()) != n_gen)
        throw Error(fmt::format("{} (batch {}): a sequence generated {} tokens, expected {}",
                                t.name(), t.batch, c.tokens.size(), n_gen));
    }
  }
  const int64_t expected = int64_t(t.batch) * (tg ? n_gen : t.n_prompt);
  s.tokens = tg ? s.stats.generated_tokens : s.stats.prompt_tokens;
  if (s.tokens != expected)
    throw Error(fmt::format("{} (batch {}): the scheduler counted {} {} tokens, expected {}",
                            t.name(), t.batch, s.tokens, tg ? "generated" : "prompt", expected));
  return s;
}

std::string human_size(int64_t bytes) {
  if (bytes < (int64_t(1) << 30)) return fmt::format("{:.2f} MiB", double(bytes) / double(1 << 20));
  return fmt::format("{:.2f} GiB", double(bytes) / double(int64_t(1) << 30));
}
std::string human_params(int64_t n) {
  if (n >= 1'000'000'000) return fmt::format("{:.2f} B", double(n) / 1e9);
  if (n >= 1'000'000) return fmt::format("{:.2f} M", double(n) / 1e6);
  if (n >= 1'000) return fmt::format("{:.2f} K", double(n) / 1e3);
  return fmt::format("{}", n);
}

class Printer {
 public:
  enum class Format { Table, Json, JsonLines, Csv };
  Printer(Format f, size_t model_width, size_t backend_width)
      : f_(f), mw_(std::max<size_t>(model_width, 5)), bw_(std::max<size_t>(backend_width, 7)) {}

  void header() {
    if (f_ == Format::Table) {
      line({"model", "size", "params", "backend", "threads", "batch", "test", "t/s", "overhead"},
           true);
      std::string sep = "|";
      for (size_t w : widths()) sep += " " + std::string(w, '-') + " |";
      // Right-aligned numeric columns, as markdown.
      std::fputs((sep + "\n").c_str(), stdout);
    } else if (f_ == Format::Csv) {
      std::fputs(
          "model,model_type,weights,dtype,kv_dtype,size_bytes,params,backend,threads,batch,"
          "ubatch,gemm_min_rows,test,n_prompt,n_gen,reps,avg_ts,stddev_ts,samples_ts,samples_s,"
          "overhead,steps\n",
          stdout);
    }
    std::fflush(stdout);
  }

  // Closes a JSON array.
  void finish() {
    if (f_ == Format::Json) std::fputs(rows_ ? "\n]\n" : "[]\n", stdout);
    std::fflush(stdout);
  }

  void row(const Row& r) {
    const std::vector<double> ts = r.ts();
    const double avg = Row::mean(ts), sd = Row::sd(ts);
    std::string samples_ts, samples_s;
    for (size_t i = 0; i < r.samples.size(); ++i) {
      const char* sep = i ? (f_ == Format::Csv ? ";" : ", ") : "";
      samples_ts += sep + json_number(ts[i]);
      samples_s += sep + json_number(r.samples[i].seconds);
    }
    const Test& t = r.test;
    switch (f_) {
      case Format::Table:
        line({r.model, human_size(r.size_bytes), human_params(r.params), r.backend,
              std::to_string(t.threads), std::to_string(t.batch), t.name(),
              fmt::format("{:.2f} ± {:.2f}", avg, sd), fmt::format("{:.2f} %", 100 * r.overhead())},
             false);
        break;
      case Format::Json:
      case Format::JsonLines:
        if (f_ == Format::Json) std::fputs(rows_ ? ",\n  " : "[\n  ", stdout);
        std::fputs(
            fmt::format(
                "{{\"model\": \"{}\", \"model_type\": \"{}\", \"weights\": \"{}\", "
                "\"dtype\": \"{}\", \"kv_dtype\": \"{}\", \"size_bytes\": {}, \"params\": {}, "
                "\"backend\": \"{}\", \"cpu_isa\": \"{}\", \"threads\": {}, \"batch\": {}, "
                "\"ubatch\": {}, \"gemm_min_rows\": {}, \"test\": \"{}\", \"n_prompt\": {}, "
                "\"n_gen\": {}, "
                "\"reps\": {}, \"avg_ts\": {}, \"stddev_ts\": {}, \"samples_ts\": [{}], "
                "\"samples_s\": [{}], \"overhead\": {}, \"steps\": {}, {}\"version\": \"{}\"}}{}",
                json_escape(r.model), json_escape(r.family), r.weights, r.dtype, r.kv_dtype,
                r.size_bytes, r.params, json_escape(r.backend), cpu_isa(), t.threads, t.batch,
                r.ubatch, r.gemm_min_rows, t.name(), t.n_prompt, t.n_gen, r.samples.size(),
                json_number(avg), json_number(sd), samples_ts, samples_s, json_number(r.overhead()),
                r.steps(), profile_json(r), version(), f_ == Format::JsonLines ? "\n" : "")
                .c_str(),
            stdout);
        break;
      case Format::Csv:
        std::fputs(
            fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                        csv_field(r.model), csv_field(r.family), r.weights, r.dtype, r.kv_dtype,
                        r.size_bytes, r.params, csv_field(r.backend), t.threads, t.batch, r.ubatch,
                        r.gemm_min_rows, t.name(), t.n_prompt, t.n_gen, r.samples.size(),
                        json_number(avg), json_number(sd), samples_ts, samples_s,
                        json_number(r.overhead()), r.steps())
                .c_str(),
            stdout);
        break;
    }
    std::fflush(stdout);
    ++rows_;
  }

  // --profile in the table format: one markdown table per row, after the main table.
  void profiles(const std::vector<Row>& rows) const {
    if (f_ != Format::Table) return;
    for (const Row& r : rows) {
      if (!r.profiled) continue;
      std::string s = fmt::format("\nprofile: {} {} batch {} threads {} ({} steps in {} reps)\n\n", r.model,
                                  r.test.name(), r.test.batch, r.test.threads, r.all_steps(), r.samples.size());
      s += "| op | calls / step | ms / step | share of step |\n|---|---:|---:|---:|\n";
      for (const Row::ProfileLine& l : r.profile_lines())
        s += fmt::format("| {} | {} | {:.3f} | {:.1f} % |\n", l.what,
                         l.calls_per_step > 0 ? fmt::format("{:.1f}", l.calls_per_step) : std::string("-"),
                         l.ms_per_step, 100 * l.share);
      std::fputs(s.c_str(), stdout);
    }
    std::fflush(stdout);
  }

 private:
  static std::string profile_json(const Row& r) {
    if (!r.profiled) return "";
    std::string s = "\"profile\": [";
    bool first = true;
    for (const Row::ProfileLine& l : r.profile_lines()) {
      s += fmt::format("{}{{\"op\": \"{}\", \"calls_per_step\": {}, \"ms_per_step\": {}, \"share\": {}}}",
                       first ? "" : ", ", json_escape(l.what), json_number(l.calls_per_step),
                       json_number(l.ms_per_step), json_number(l.share));
      first = false;
    }
    return s + "], ";
  }
  std::vector<size_t> widths() const { return {mw_, 10, 9, bw_, 7, 5, 8, 20, 8}; }
  // Display width: "±" is one column but two bytes.
  static size_t display_width(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
  }
  void line(const std::vector<std::string>& cells, bool is_header) {
    const std::vector<size_t> w = widths();
    std::string s = "|";
    for (size_t i = 0; i < cells.size(); ++i) {
      const size_t pad = w[i] > display_width(cells[i]) ? w[i] - display_width(cells[i]) : 0;
      const bool left = is_header || i == 0 || i == 3 || i == 6;
      s +=
          " " + (left ? cells[i] + std::string(pad, ' ') : std::string(pad, ' ') + cells[i]) + " |";
    }
    std::fputs((s + "\n").c_str(), stdout);
  }

  Format f_;
  size_t mw_, bw_;
  size_t rows_ = 0;
};

int run_bench(const BenchArgs& a) {
  // Check every flag before the (slow) model build.
  const int n_sources = int(!a.model.empty()) + int(!a.config.empty()) + int(!a.preset.empty());
  if (n_sources != 1) throw Error("give exactly one of -m/--model, --config or --preset");
  const std::vector<int> prompts = parse_list(a.n_prompt, "-p/--n-prompt", 0, 1 << 20);
  const std::vector<int> gens = parse_list(a.n_gen, "-n/--n-gen", 0, 1 << 20);
  const std::vector<int> batches = parse_list(a.parallel, "-np/--parallel", 1, 4096);
  const std::vector<int> ubatches =
      a.ubatch_size.empty() ? std::vector<int>{0}
                            : parse_list(a.ubatch_size, "-ub/--ubatch-size", 1, 1 << 20);
  const std::vector<int> lbatches = a.batch_size.empty()
                                        ? std::vector<int>{0}
                                        : parse_list(a.batch_size, "-b/--batch-size", 1, 1 << 20);
  std::vector<int64_t> pass_sizes;  // tokens per forward pass: min(-b, -ub); 0: the default
  for (int lb : lbatches)
    for (int ub : ubatches) {
      const int64_t v = lb > 0 && ub > 0 ? std::min(lb, ub) : std::max(lb, ub);
      if (std::find(pass_sizes.begin(), pass_sizes.end(), v) == pass_sizes.end())
        pass_sizes.push_back(v);
    }
  std::vector<int> threads = a.threads.empty() ? std::vector<int>{ThreadPool::hardware_threads()}
                                               : parse_list(a.threads, "-t/--threads", 0, 1 << 20);
  for (int& t : threads) t = t == 0 ? ThreadPool::hardware_threads() : capped_threads(t);
  if (!a.n_gpu_layers.empty()) {
    const std::vector<int> ngl = parse_list(a.n_gpu_layers, "-ngl/--n-gpu-layers", 0, 1 << 20);
    if (std::any_of(ngl.begin(), ngl.end(), [](int v) { return v > 0; }))
      warn_device_flags(DeviceFlags{1});
  }
  if (!a.flash_attn.empty()) {
    // llama-bench's -fa 0,1 list: runnel's attention is always fused, so
    // every value is the same test.
    for (size_t i = 0; i <= a.flash_attn.size();) {
      const size_t j = std::min(a.flash_attn.find(',', i), a.flash_attn.size());
      const std::string v = a.flash_attn.substr(i, j - i);
      if (v != "0" && v != "1" && v != "on" && v != "off" && v != "auto")
        throw Error("-fa/--flash-attn: expected a list of 0, 1, on, off or auto (got \"" +
                    a.flash_attn + "\")");
      i = j + 1;
    }
  }
  bool mmap = !a.no_mmap;
  if (!a.mmap.empty()) {
    if (a.mmap != "0" && a.mmap != "1")
      throw Error("-mmp/--mmap: expected 0 or 1 (got \"" + a.mmap + "\")");
    mmap = a.mmap == "1" && !a.no_mmap;
  }
  if (a.verbose) set_log_level(LogLevel::Debug);
  std::string kv_name = a.kv_dtype;
  for (const std::string* ct : {&a.cache_type_k, &a.cache_type_v}) {
    if (ct->empty()) continue;
    if (!kv_name.empty() && parse_dtype(kv_name, "--kv-dtype") != parse_dtype(*ct, "-ctk/-ctv"))
      throw Error("--kv-dtype, -ctk/--cache-type-k, -ctv/--cache-type-v: give one KV cache dtype");
    kv_name = *ct;
  }
  const DType kv = kv_name.empty() ? (a.llama_cpp_order ? DType::F16 : DType::F32)
                                   : parse_dtype(kv_name, "--kv-dtype");
  if (kv != DType::F32 && kv != DType::F16) throw Error("--kv-dtype: must be f32 or f16");
  Printer::Format fmt_kind = a.json ? Printer::Format::Json
                             : a.csv ? Printer::Format::Csv
                                     : Printer::Format::Table;
  if (!a.output.empty()) {
    if (a.json || a.csv) throw Error("-o/--output: give it alone, without --json or --csv");
    if (a.output == "json") fmt_kind = Printer::Format::Json;
    else if (a.output == "jsonl") fmt_kind = Printer::Format::JsonLines;
    else if (a.output == "csv") fmt_kind = Printer::Format::Csv;
    else if (a.output == "md") fmt_kind = Printer::Format::Table;
    else
      throw Error("-o/--output: \"" + a.output + "\" is not a format runnel writes (md, json, jsonl, csv)");
  }

  if (a.profile && fmt_kind == Printer::Format::Csv)
    throw Error("--profile: the csv format has no column for it (use md, json or jsonl)");

  Source src;
  src.seed = a.seed;
  src.tokenizer = a.tokenizer;
  src.mmap = mmap;
  if (!a.tokenizer.empty() && a.model.empty())
    throw Error("--tokenizer: needs -m/--model (random weights have no tokenizer)");
  if (!a.dtype.empty()) src.dtype = parse_weight_dtype(a.dtype);
  if (!a.model.empty()) {
    src.weights = "file";
    src.path = a.model;
    src.name = std::filesystem::path(a.model).filename().string();
    if (src.name.empty())
      src.name = std::filesystem::path(a.model).parent_path().filename().string();
  } else {
    src.weights = "random";
    if (!a.preset.empty()) {
      src.config = preset_config(a.preset);
      src.name = a.preset;
    } else {
      src.config = load_config(a.config);
      src.name = std::filesystem::path(a.config).filename().string();
      if (src.name == "config.json") {
        const std::string dir = std::filesystem::path(a.config).parent_path().filename().string();
        if (!dir.empty()) src.name = dir;
      }
    }
  }

  std::vector<Test> tests;  // for one thread count
  for (int b : batches)
    for (int64_t ub : pass_sizes) {
      for (int p : prompts)
        if (p > 0) tests.push_back({p, 0, b, 0, ub});
      for (int n : gens)
        if (n > 0) tests.push_back({0, n, b, 0, ub});
    }
  if (tests.empty()) throw Error("nothing to run: every -p and -n value is 0");

  const std::string backend = std::string("CPU ") + cpu_isa();
  std::optional<Printer> printer;  // column widths need the model's label
  std::vector<Row> profiled;       // --profile: printed after the table

  // A learned position table bounds the sequence length.
  auto check_lengths = [&](const ModelConfig& cfg) {
    for (const Test& t : tests) {
      const int64_t len = t.n_gen > 0 ? 1 + t.n_gen : t.n_prompt;
      if (cfg.max_positions > 0 && len > cfg.max_positions)
        throw Error(fmt::format("{}: {} needs {} positions; the model has {}", src.name, t.name(),
                                len, cfg.max_positions));
    }
  };
  if (src.weights == "random") check_lengths(src.config);

  for (int nt : threads) {
    std::unique_ptr<Model> model = src.build(nt);
    const ModelConfig& cfg = model->config();
    const DType wdt = model->weight_dtype();
    const std::string label = src.name + " " + model->type_name();
    check_lengths(cfg);
    if (a.gemm_min_rows >= 0) {
      model->context().cpu.gemm_min_rows = a.gemm_min_rows;
      model->context().cpu.qgemm_min_rows = a.gemm_min_rows;
    }
    model->context().cpu.llama_cpp_order = a.llama_cpp_order;
    if (!printer) {
      printer.emplace(fmt_kind, label.size(), backend.size());
      printer->header();
    }
    for (Test t : tests) {
      t.threads = nt;
      Row row;
      row.test = t;
      row.model = label;
      row.family = cfg.family;
      row.weights = src.weights;
      row.dtype = std::string(dtype_name(wdt));
      row.kv_dtype = std::string(dtype_name(kv));
      row.backend = backend;
      row.size_bytes = model->stored_weight_bytes();
      row.params = parameter_count(cfg);
      row.gemm_min_rows = model->context().cpu.gemm_min_rows;
      row.ubatch = t.ubatch > 0 ? t.ubatch : std::max<int64_t>({512, t.n_prompt, t.batch});
      if (t.n_prompt > 0 && row.ubatch < t.n_prompt)
        note("-ub {} < {}: a prompt takes several passes", row.ubatch, t.n_prompt);

      // Warm-up: the whole prompt for pp (first touch of the weights and
      // activations at this shape); a few steps for tg.
      note("{} batch {} threads {}: warm-up", t.name(), t.batch, nt);
      run_once(*model, t, std::min(t.n_gen, 4), kv, row.ubatch, a.seed);
      row.profiled = a.profile;
      model->context().profile = a.profile ? &row.profile : nullptr;
      for (int r = 0; r < a.reps; ++r) {
        row.samples.push_back(run_once(*model, t, t.n_gen, kv, row.ubatch, a.seed));
        const Sample& s = row.samples.back();
        note("{} batch {} threads {}: rep {}/{}: {:.1f} ms, {:.2f} t/s", t.name(), t.batch, nt,
             r + 1, a.reps, 1e3 * s.seconds, s.seconds > 0 ? double(s.tokens) / s.seconds : 0.0);
      }
      model->context().profile = nullptr;
      printer->row(row);
      if (row.profiled) profiled.push_back(std::move(row));
    }
  }
  if (printer) {
    printer->finish();
    printer->profiles(profiled);
  }
  return 0;
}

const Command bench_cmd("bench", [](CLI::App& app) {
  app.description(
      "Measure prompt processing (ppP) and generation (tgN) throughput; comma lists run every "
      "combination");
  auto a = std::make_shared<BenchArgs>();
  app.add_option("-m,--model", a->model, "Model file or folder (weights from the checkpoint)");
  app.add_option("--config", a->config, "A config.json: random weights of that shape");
  app.add_option(
      "--preset", a->preset, "A built-in config with random weights: " + [] {
        std::string s;
        for (const std::string& n : preset_names()) s += (s.empty() ? "" : ", ") + n;
        return s;
      }());
  app.add_option("--dtype", a->dtype,
                 "Weight dtype (f32, f16, bf16, q8_0, q4_0, q4_1; default: the file's, or f16 "
                 "for random weights)");
  app.add_option("--kv-dtype", a->kv_dtype, "KV cache dtype: f32 or f16 (default: f32; f16 with --llama-cpp-order)");
  app.add_flag("--profile", a->profile,
               "Time every op: each op's share of a step (after the table; \"profile\" in JSON)");
  app.add_flag("--llama-cpp-order", a->llama_cpp_order,
               "Quantized products in llama.cpp's summation order at every batch size (as "
               "generate's flag)");
  app.add_option("-p,--n-prompt", a->n_prompt, "Prompt lengths for pp tests (list; 0: none)");
  app.add_option("-n,--n-gen", a->n_gen, "Generated tokens for tg tests (list; 0: none)");
  app.add_option("--parallel", a->parallel, "-np: concurrent sequences (list; default 1)");
  app.add_option("-b,--batch-size", a->batch_size,
                 "Most tokens per forward pass, as llama-bench's -b (list; with -ub, the smaller "
                 "applies)");
  app.add_option("--ubatch-size,--ubatch", a->ubatch_size,
                 "-ub: tokens per forward pass (list; default: max(512, prompt length, -np))");
  app.add_option("-t,--threads", a->threads, "Worker threads (list; default: all)");
  app.add_option("-r,--repetitions", a->reps, "Timed repetitions per test")
      ->check(CLI::Range(1, 1000));
  app.add_option("--tokenizer", a->tokenizer,
                 "Tokenizer file or folder, as the other commands take it (loaded and checked; "
                 "bench prompts are token ids)");
  app.add_option("--gemm-min-rows", a->gemm_min_rows,
                 "Products with at least this many rows use the GEMM path instead of the "
                 "small-batch kernels, for every weight type (default: the library's, 64, and 16 "
                 "for weights with an int8 GEMM)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  app.add_option("--seed", a->seed, "Seed of the random weights and prompt tokens");
  app.add_option("-o,--output", a->output,
                 "Output format, as llama-bench's: md (the table), json (an array), jsonl (one "
                 "object a line) or csv");
  auto* j = app.add_flag("--json", a->json, "As -o json: a JSON array of the rows");
  auto* c = app.add_flag("--csv", a->csv, "As -o csv: CSV with a header line");
  j->excludes(c);
  const std::string g = "llama.cpp compatibility";
  app.add_option("--n-gpu-layers", a->n_gpu_layers,
                 "-ngl (list): accepted; this build runs every layer on the CPU")
      ->group(g);
  app.add_option("--flash-attn", a->flash_attn,
                 "-fa (list of 0/1): accepted; runnel's attention is always fused")
      ->group(g);
  app.add_option("--mmap", a->mmap, "-mmp 0|1: map the weights (1, the default) or read them (0)")
      ->group(g);
  app.add_flag("--no-mmap", a->no_mmap, "Read the weights instead of mapping them")->group(g);
  app.add_option("--cache-type-k", a->cache_type_k, "-ctk: as --kv-dtype (f32 or f16)")
      ->check(CLI::IsMember({"f32", "f16"}))
      ->group(g);
  app.add_option("--cache-type-v", a->cache_type_v, "-ctv: as --kv-dtype (f32 or f16)")
      ->check(CLI::IsMember({"f32", "f16"}))
      ->group(g);
  app.add_flag("--no-kv-offload", a->no_kv_offload,
               "-nkvo: accepted; the KV cache is where the layers run")
      ->group(g);
  app.add_flag("-v,--verbose", a->verbose, "As --log-level debug")->group(g);
  app.add_flag("--progress")->description("Accepted: bench always reports progress on stderr")->group(g);
  add_refused(app, "--n-prompt-gen", true,
              "combined prompt + generation tests are not supported; run -p and -n");
  add_refused(app, "-d,--n-depth", true, "tests at a context depth are not supported");
  add_refused(app, "--embeddings", true, "bench measures generation, not embeddings");
  add_refused(app, "--split-mode,--main-gpu,--tensor-split", true,
              "runnel runs a model on one device; it has no multi-GPU split");
  add_refused(app, "--numa,--cpu-mask,--cpu-strict,--poll,--prio,--delay", true,
              "thread placement and priority flags are not supported; -t sets the threads");
  return [a] { return run_bench(*a); };
});

}  // namespace
}  // namespace runnel::cli

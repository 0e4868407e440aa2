// runnel serve: an OpenAI-compatible HTTP server on the continuous-batching
// Scheduler.  Every generation request becomes one Scheduler request; one
// engine thread steps the Scheduler, each connection thread turns its
// request's events into a response (or a stream of Server-Sent Events) and
// cancels the request when its client goes.  See docs/server.md.
#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "command.hpp"
#include "runnel/chat_template.hpp"
#include "runnel/runnel.hpp"
#include "runnel/scheduler.hpp"
#include "runnel/tokenizer.hpp"
#include "sampling_flags.hpp"
#include "api.hpp"
#include "http.hpp"

namespace runnel::cli {
namespace {

using nlohmann::json;
using server::ApiError;
using server::HttpConnection;
using server::HttpRequest;
using Clock = std::chrono::steady_clock;

struct ServeArgs {
  ModelFlags m;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 4;
  int max_queue = 64;
  int timeout_s = 600;
  double max_body_mb = 4.0;
  std::string api_key, api_key_file;
  std::string alias;
  std::string chat_template;
  int64_t n_predict = -1;  // default max_tokens: -1 until the context is full
};

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }

// A request's events, passed from the engine thread to its connection.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Event> events;
  int open = 0;                       // samples not finished
  bool hung_up = false;               // the HangupWatcher saw the client go
  std::atomic<bool> cancelled{false}; // the client went: the callback says stop
  static constexpr size_t kMaxQueued = 4096;  // a client this far behind has stopped reading
  // A stream's connection wakes for every event; a whole response's only
  // once this many are queued (or a sample ends), since it writes nothing
  // before the end.  Called with mu held.
  static constexpr size_t kWholeResponseBatch = 256;
  bool worth_waking(bool stream) const { return stream ? !events.empty() : events.size() >= kWholeResponseBatch; }
};

// Steps the one Scheduler whenever it has work.
class Engine {
 public:
  Engine(Model& m, const SchedulerOptions& o) : sched(m, o), thread_([this] { loop(); }) {}
  ~Engine() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  RequestId submit(std::vector<int32_t> prompt, const RequestOptions& o, EventCallback cb) {
    const RequestId id = sched.submit(std::move(prompt), o, std::move(cb));
    cv_.notify_all();
    return id;
  }
  void cancel(RequestId id) {
    sched.cancel(id);
    cv_.notify_all();
  }
  Scheduler sched;

 private:
  void loop() {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(50),
                     [&] { return stop_ || sched.n_pending() > 0; });
        if (stop_) return;
      }
      bool worked = false;
      try {
        worked = sched.step();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "runnel serve: scheduler step failed: %s\n", e.what());
      }
      if (!worked) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

struct Metrics {
  std::atomic<int64_t> requests{0}, errors{0}, in_flight{0};
  std::atomic<int64_t> chat{0}, completions{0}, cancelled{0};
  std::mutex mu;
  double ttft_sum = 0;
  int64_t ttft_count = 0;
};

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  return fmt::format("{}-{:016x}", prefix, salt ^ (++counter * 0x9E3779B97F4A7C15ull));
}

const char* finish_name(FinishReason r) {
  switch (r) {
    case FinishReason::Eos:
    case FinishReason::StopString: return "stop";
    default: return "length";
  }
}

class Server {
 public:
  explicit Server(const ServeArgs& a) : a_(a) {}

  void load() {
    model_ = load_model(a_.m);
    const ModelConfig& cfg = model_->config();
    tok_ = model_->tokenizer();
    if (!tok_) throw Error(a_.m.model + ": no tokenizer found beside the model; pass --tokenizer PATH");
    name_ = a_.alias;
    if (name_.empty()) {
      name_ = a_.m.model;
      while (!name_.empty() && name_.back() == '/') name_.pop_back();
      if (const size_t s = name_.find_last_of('/'); s != std::string::npos) name_ = name_.substr(s + 1);
    }
    std::string src = a_.chat_template.empty() ? tok_->chat_template() : builtin_chat_template(a_.chat_template);
    std::string origin = a_.chat_template.empty() ? tok_->chat_template_origin() : "--chat-template " + a_.chat_template;
    if (!a_.chat_template.empty() && src.empty())
      throw Error("--chat-template: \"" + a_.chat_template + "\" is not a built-in template");
    if (src.empty()) {
      std::fprintf(stderr, "runnel serve: %s has no chat template; chat requests use chatml\n",
                   a_.m.model.c_str());
      src = builtin_chat_template("chatml");
      origin = "chatml";
    }
    tmpl_ = std::make_unique<ChatTemplate>(src, origin);
    const int32_t bos = tok_->bos_id() >= 0 ? tok_->bos_id() : cfg.bos_id;
    const int32_t eos = tok_->eos_id() >= 0 ? tok_->eos_id() : cfg.eos_ids.empty() ? -1 : cfg.eos_ids.front();
    if (bos >= 0 && size_t(bos) < tok_->vocab_size()) bos_ = tok_->token_to_piece(bos);
    if (eos >= 0 && size_t(eos) < tok_->vocab_size()) eos_ = tok_->token_to_piece(eos);
    eos_ids_ = eos_ids(cfg, tok_, /*all_eog=*/true);

    ctx_ = context_limit(a_.m, cfg, cfg.max_positions > 0 ? cfg.max_positions : 4096);
    // One sequence holds at most ctx tokens; the pool holds ctx tokens in all
    // (as llama.cpp's -c), or --kv-cache-mb.
    SchedulerOptions so;
    so.kv_dtype = kv_dtype(a_.m);
    so.max_sequences = a_.parallel;
    so.ctx_size = ctx_;
    if (a_.m.kv_cache_mb > 0) so.kv_cache_mb = std::max<int64_t>(1, int64_t(a_.m.kv_cache_mb));
    const int64_t chunk = prompt_chunk(a_.m);
    so.max_batch_tokens = chunk > 0 ? chunk : 512;
    so.keep_prefixes = a_.parallel;
    engine_ = std::make_unique<Engine>(*model_, so);
    limits_.vocab_size = cfg.vocab_size;
    limits_.ctx = ctx_;
    limits_.max_n = a_.parallel;
    created_ = std::time(nullptr);
    ready_ = true;
  }

  void handle(const HttpRequest& req, HttpConnection& c) {
    ++metrics_.requests;
    try {
      route(req, c);
    } catch (const ApiError& e) {
      ++metrics_.errors;
      server::Headers extra;
      if (e.status == 503) extra.emplace_back("Retry-After", "1");
      reply(c, e.status, server::error_json(e), extra);
    } catch (const Error& e) {
      ++metrics_.errors;
      reply(c, 400, server::error_json(ApiError(400, e.what())));
    } catch (const std::exception& e) {
      ++metrics_.errors;
      reply(c, 500, server::error_json(ApiError(500, e.what(), {}, "server_error")));
    }
  }

 private:
  void reply(HttpConnection& c, int status, const json& j, const server::Headers& extra = {}) {
    if (c.responded()) return;
    c.send(status, "application/json", j.dump(-1, ' ', false, json::error_handler_t::replace), extra);
  }

  void route(const HttpRequest& req, HttpConnection& c) {
    const std::string& p = req.path;
    if (p == "/health") {
      if (!ready_) throw ApiError(503, "loading the model", {}, "unavailable");
      return reply(c, 200, {{"status", "ok"}});
    }
    if (!a_.api_key.empty() &&
        !server::constant_time_equal(req.header("authorization"), "Bearer " + a_.api_key))
      throw ApiError(401, "missing or wrong API key (Authorization: Bearer KEY)", {},
                     "invalid_request_error", "invalid_api_key");
    if (!ready_) throw ApiError(503, "loading the model", {}, "unavailable");
    const bool post = req.method == "POST", get = req.method == "GET";
    if (p == "/v1/models" || p == "/models") {
      if (!get) throw ApiError(405, "use GET");
      return reply(c, 200,
                   {{"object", "list"},
                    {"data", json::array({{{"id", name_},
                                           {"object", "model"},
                                           {"created", created_},
                                           {"owned_by", "runnel"},
                                           {"meta", {{"n_ctx", ctx_}, {"n_vocab", limits_.vocab_size}}}}})}});
    }
    if (p == "/metrics") {
      if (!get) throw ApiError(405, "use GET");
      return c.send(200, "text/plain; version=0.0.4", metrics_text()), void();
    }
    if (p == "/v1/chat/completions" || p == "/chat/completions") {
      if (!post) throw ApiError(405, "use POST");
      ++metrics_.chat;
      return generate(c, server::parse_generation(server::parse_body(req.body, limits_.max_depth),
                                                  server::Kind::Chat, limits_));
    }
    if (p == "/v1/completions" || p == "/completions") {
      if (!post) throw ApiError(405, "use POST");
      ++metrics_.completions;
      return generate(c, server::parse_generation(server::parse_body(req.body, limits_.max_depth),
                                                  server::Kind::Completion, limits_));
    }
    if (p == "/tokenize") {
      if (!post) throw ApiError(405, "use POST");
      const json b = server::parse_body(req.body, limits_.max_depth);
      if (!b.is_object() || !b.contains("content") || !b["content"].is_string())
        throw ApiError(400, "content: expected a string", "content");
      bool special = true;
      if (b.contains("add_special")) {
        if (!b["add_special"].is_boolean()) throw ApiError(400, "add_special: expected true or false", "add_special");
        special = b["add_special"].get<bool>();
      }
      return reply(c, 200, {{"tokens", tok_->encode(b["content"].get<std::string>(), special)}});
    }
    if (p == "/detokenize") {
      if (!post) throw ApiError(405, "use POST");
      const json b = server::parse_body(req.body, limits_.max_depth);
      if (!b.is_object() || !b.contains("tokens") || !b["tokens"].is_array())
        throw ApiError(400, "tokens: expected an array of token ids", "tokens");
      std::vector<int32_t> ids;
      for (size_t i = 0; i < b["tokens"].size(); ++i) {
        const json& v = b["tokens"][i];
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= limits_.vocab_size)
          throw ApiError(400, fmt::format("tokens[{}]: not a token id of the vocabulary of {}", i,
                                          limits_.vocab_size),
                         fmt::format("tokens[{}]", i));
        ids.push_back(int32_t(v.get<int64_t>()));
      }
      return reply(c, 200, {{"content", tok_->decode(ids)}});
    }
    throw ApiError(404, "no endpoint " + req.method + " " + p, {}, "invalid_request_error", "not_found");
  }

  std::string metrics_text() {
    const Scheduler::Stats s = engine_->sched.stats();
    double ttft_sum;
    int64_t ttft_n;
    {
      std::lock_guard<std::mutex> lock(metrics_.mu);
      ttft_sum = metrics_.ttft_sum;
      ttft_n = metrics_.ttft_count;
    }
    const double looked_up = double(s.prompt_tokens + s.prefix_tokens);
    std::string o;
    auto metric = [&](const char* name, const char* type, const char* help, const std::string& v) {
      o += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
    };
    metric("runnel_requests_total", "counter", "HTTP requests received.", std::to_string(metrics_.requests.load()));
    metric("runnel_request_errors_total", "counter", "Requests answered with an error.", std::to_string(metrics_.errors.load()));
    metric("runnel_requests_cancelled_total", "counter", "Generations ended because the client went.", std::to_string(metrics_.cancelled.load()));
    metric("runnel_generation_requests_running", "gauge", "Generation requests being answered.", std::to_string(metrics_.in_flight.load()));
    metric("runnel_queue_depth", "gauge", "Requests submitted and not finished.", std::to_string(engine_->sched.n_pending()));
    metric("runnel_prompt_tokens_total", "counter", "Prompt tokens prefilled.", std::to_string(s.prompt_tokens));
    metric("runnel_generated_tokens_total", "counter", "Tokens sampled.", std::to_string(s.generated_tokens));
    metric("runnel_prefix_cache_hit_tokens_total", "counter", "Prompt tokens found in kept prefixes.", std::to_string(s.prefix_tokens));
    metric("runnel_prefix_cache_hit_ratio", "gauge", "Share of prompt tokens found in kept prefixes.",
           fmt::format("{:.6f}", looked_up > 0 ? double(s.prefix_tokens) / looked_up : 0.0));
    metric("runnel_kv_blocks_used", "gauge", "KV-cache blocks in use (running and kept sequences).", std::to_string(s.kv_blocks_used));
    metric("runnel_kv_blocks_kept", "gauge", "Of the blocks in use, those kept prefixes hold.", std::to_string(s.kv_blocks_kept));
    metric("runnel_kept_prefixes", "gauge", "Finished sequences kept for prefix reuse.", std::to_string(s.kept_prefixes));
    metric("runnel_scheduler_steps_total", "counter", "Scheduler steps that ran the model.", std::to_string(s.steps));
    metric("runnel_kv_blocks_total", "gauge", "KV-cache blocks in the pool.", std::to_string(s.kv_blocks_total));
    metric("runnel_preemptions_total", "counter", "Requests preempted for want of KV blocks.", std::to_string(s.preemptions));
    o += "# HELP runnel_time_to_first_token_seconds From submission to the first token.\n"
         "# TYPE runnel_time_to_first_token_seconds summary\n";
    o += fmt::format("runnel_time_to_first_token_seconds_sum {:.6f}\nrunnel_time_to_first_token_seconds_count {}\n",
                     ttft_sum, ttft_n);
    metric("runnel_tokens_per_second", "gauge", "Generated tokens per second of scheduler time.",
           fmt::format("{:.3f}", s.total_s > 0 ? double(s.generated_tokens) / s.total_s : 0.0));
    return o;
  }

  // A token's text as it reads after `prev` (decoders drop a piece's leading
  // space at the start of a text, so it is decoded after the token before it).
  std::string token_text(int32_t prev, int32_t id) const {
    if (prev >= 0) {
      const int32_t two[2] = {prev, id};
      const std::string before = tok_->decode(std::span<const int32_t>(two, 1));
      const std::string both = tok_->decode(std::span<const int32_t>(two, 2));
      if (both.compare(0, before.size(), before) == 0) return both.substr(before.size());
    }
    const int32_t one[1] = {id};
    return tok_->decode(std::span<const int32_t>(one, 1));
  }

  json bytes_of(const std::string& s) const {
    json b = json::array();
    for (unsigned char ch : s) b.push_back(int(ch));
    return b;
  }

  // One token's logprobs entry in the chat format.
  json chat_logprob(int32_t prev, const Event& e) const {
    const std::string t = token_text(prev, e.token);
    json top = json::array();
    for (const auto& [id, lp] : e.top_logprobs) {
      const std::string s = token_text(prev, id);
      top.push_back({{"token", s}, {"logprob", lp}, {"bytes", bytes_of(s)}});
    }
    return {{"token", t}, {"logprob", e.logprob}, {"bytes", bytes_of(t)}, {"top_logprobs", top}};
  }

  void generate(HttpConnection& c, server::GenerationRequest r) {
    // The prompt.
    std::vector<int32_t> prompt;
    std::string echo;
    if (r.kind == server::Kind::Chat) {
      std::vector<ChatMessage> msgs;
      for (const auto& m : r.messages) msgs.push_back({m.role, m.content});
      const std::string text = tmpl_->apply(msgs, /*add_generation_prompt=*/true, bos_, eos_);
      prompt = tok_->encode(text, /*add_special=*/false);
    } else if (!r.prompt_ids.empty()) {
      prompt = r.prompt_ids;
      if (r.echo) echo = tok_->decode(prompt);
    } else {
      prompt = tok_->encode(r.prompt, /*add_special=*/true);
      if (r.echo) echo = r.prompt;
    }
    const char* what = r.kind == server::Kind::Chat ? "messages" : "prompt";
    if (prompt.empty()) throw ApiError(400, std::string(what) + ": the prompt is empty", what);
    const int64_t P = int64_t(prompt.size());
    if (ctx_ > 0 && P >= ctx_)
      throw ApiError(400,
                     fmt::format("the prompt has {} tokens; the context holds {}, which leaves no "
                                 "room for a completion",
                                 P, ctx_),
                     what, "invalid_request_error", "context_length_exceeded");
    int64_t max_tokens = r.max_tokens > 0 ? r.max_tokens : a_.n_predict;
    if (ctx_ > 0) {
      if (max_tokens > ctx_ - P)
        throw ApiError(400,
                       fmt::format("the context holds {} tokens, but {} were asked for ({} of "
                                   "prompt, {} of completion)",
                                   ctx_, P + max_tokens, P, max_tokens),
                       r.max_tokens > 0 ? "max_tokens" : what, "invalid_request_error",
                       "context_length_exceeded");
      if (max_tokens < 0) max_tokens = ctx_ - P;
    }
    // Bounded admission: running plus queued requests.
    const int64_t limit = int64_t(a_.parallel) + a_.max_queue;
    if (metrics_.in_flight.fetch_add(1) >= limit) {
      --metrics_.in_flight;
      throw ApiError(503, "the server is busy; retry shortly", {}, "server_error", "server_busy");
    }
    struct Release {
      std::atomic<int64_t>& n;
      ~Release() { --n; }
    } release{metrics_.in_flight};

    RequestOptions ro;
    ro.sampling = r.sampling;
    if (!r.ignore_eos) ro.stop.eos_ids = eos_ids_;
    ro.stop.stop_strings = r.stop;
    ro.stop.max_tokens = max_tokens;
    ro.stop_at_eos = false;
    ro.n_samples = r.n;
    ro.logprobs = r.logprobs;

    auto ch = std::make_shared<Channel>();
    ch->open = r.n;
    const auto t_submit = Clock::now();
    const bool stream = r.stream;
    const RequestId id = engine_->submit(prompt, ro, [ch, stream](const Event& e) {
      std::lock_guard<std::mutex> lock(ch->mu);
      if (e.finish != FinishReason::None) --ch->open;
      if (ch->cancelled.load()) {
        if (e.finish != FinishReason::None) ch->cv.notify_all();  // the connection waits for the end
        return false;
      }
      ch->events.push_back(e);
      if (ch->events.size() > Channel::kMaxQueued) ch->cancelled = true;
      if (e.finish != FinishReason::None || ch->worth_waking(stream)) ch->cv.notify_all();
      return !ch->cancelled.load();
    });
    const server::HangupWatcher::Watch watch = watcher_.watch(c.fd(), [ch] {
      std::lock_guard<std::mutex> lock(ch->mu);
      ch->hung_up = true;
      ch->cv.notify_all();
    });

    const bool chat = r.kind == server::Kind::Chat;
    const std::string rid = random_id(chat ? "chatcmpl" : "cmpl");
    const int64_t created = std::time(nullptr);
    const char* object = chat ? "chat.completion" : "text_completion";
    const char* chunk_object = chat ? "chat.completion.chunk" : "text_completion";
    bool first_token = true;
    bool gone = false;
    auto cancel = [&] {
      if (gone) return;
      gone = true;
      ch->cancelled = true;
      engine_->cancel(id);
      ++metrics_.cancelled;
    };
    auto chunk = [&](json choice) {
      json j = {{"id", rid}, {"object", chunk_object}, {"created", created}, {"model", name_},
                {"choices", json::array({std::move(choice)})}};
      if (r.include_usage) j["usage"] = nullptr;
      return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
    };

    struct Choice {
      std::string text;
      FinishReason finish = FinishReason::None;
      std::string error;
      json lp_content = json::array();  // chat
      json tokens = json::array(), token_lps = json::array(), top = json::array(),
           offsets = json::array();  // completion
      size_t offset = 0;
      int64_t n_tokens = 0;
      int32_t prev = -1;  // the token before the next one
    };
    std::vector<Choice> choices(size_t(r.n));
    for (auto& ch_ : choices) ch_.text = echo, ch_.offset = echo.size(), ch_.prev = prompt.back();

    if (r.stream) {
      if (!c.begin_stream(200, "text/event-stream", {{"X-Accel-Buffering", "no"}})) cancel();
      for (int i = 0; i < r.n && !gone; ++i) {
        json choice = chat ? json{{"index", i}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                                  {"logprobs", nullptr}, {"finish_reason", nullptr}}
                           : json{{"index", i}, {"text", echo}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
        if (!c.write_chunk(chunk(choice))) cancel();
      }
    }

    // Events until every sample has finished (after a cancel too, so that
    // the result can be taken and nothing stays behind).
    std::vector<Event> batch;
    for (;;) {
      bool finished, hung_up, woken;
      {
        // Woken by the engine or the HangupWatcher; the timeout is only a
        // backstop (the peer check below runs then too).
        std::unique_lock<std::mutex> lock(ch->mu);
        woken = ch->cv.wait_for(lock, std::chrono::seconds(1), [&] {
          return ch->worth_waking(stream) || ch->open == 0 || (ch->hung_up && !gone);
        });
        batch.assign(std::make_move_iterator(ch->events.begin()), std::make_move_iterator(ch->events.end()));
        ch->events.clear();
        finished = ch->open == 0;
        hung_up = ch->hung_up;
      }
      if (hung_up || ch->cancelled.load()) cancel();  // the client went, or fell too far behind
      for (const Event& e : batch) {
        if (gone) break;
        Choice& cc = choices[size_t(e.sample)];
        if (e.token >= 0 && first_token) {
          first_token = false;
          std::lock_guard<std::mutex> lock(metrics_.mu);
          metrics_.ttft_sum += std::chrono::duration<double>(Clock::now() - t_submit).count();
          ++metrics_.ttft_count;
        }
        const bool counted = e.token >= 0;
        if (counted) ++cc.n_tokens;
        const int32_t prev = cc.prev;
        if (counted) cc.prev = e.token;
        json lp = nullptr;
        if (r.logprobs >= 0 && e.token >= 0 && e.finish != FinishReason::Eos) {
          if (chat) {
            lp = chat_logprob(prev, e);
            cc.lp_content.push_back(lp);
            lp = json{{"content", json::array({lp})}, {"refusal", nullptr}};
          } else {
            const std::string t = token_text(prev, e.token);
            json top = json::object();
            for (const auto& [tid, v] : e.top_logprobs) top[token_text(prev, tid)] = v;
            cc.tokens.push_back(t);
            cc.token_lps.push_back(e.logprob);
            cc.top.push_back(top);
            cc.offsets.push_back(cc.offset);
            lp = json{{"tokens", {t}}, {"token_logprobs", {e.logprob}}, {"top_logprobs", {top}},
                      {"text_offset", {cc.offset}}};
          }
        }
        cc.text += e.text;
        cc.offset += e.text.size();
        if (e.finish != FinishReason::None) {
          cc.finish = e.finish;
          cc.error = e.error;
        }
        if (r.stream && (!e.text.empty() || !lp.is_null())) {
          json choice = chat ? json{{"index", e.sample}, {"delta", {{"content", e.text}}},
                                    {"logprobs", lp}, {"finish_reason", nullptr}}
                             : json{{"index", e.sample}, {"text", e.text}, {"logprobs", lp},
                                    {"finish_reason", nullptr}};
          if (!c.write_chunk(chunk(choice))) cancel();
        }
        if (r.stream && e.finish != FinishReason::None && !gone) {
          std::string out;
          if (e.finish == FinishReason::Error) {
            out = "data: " + server::error_json(ApiError(500, e.error, {}, "server_error")).dump() + "\n\n";
          } else {
            json choice = chat ? json{{"index", e.sample}, {"delta", json::object()},
                                      {"logprobs", nullptr}, {"finish_reason", finish_name(e.finish)}}
                               : json{{"index", e.sample}, {"text", ""}, {"logprobs", nullptr},
                                      {"finish_reason", finish_name(e.finish)}};
            out = chunk(choice);
          }
          if (!c.write_chunk(out)) cancel();
        }
      }
      batch.clear();
      if (finished) break;
      // The backstop to the HangupWatcher, when the wait timed out (not a
      // system call per token).
      if (!woken && !gone && c.peer_gone()) cancel();
    }
    // The last event comes before the step publishes the result.
    while (!engine_->sched.finished(id)) std::this_thread::sleep_for(std::chrono::microseconds(200));
    const RequestResult res = engine_->sched.take(id);
    if (gone) {
      c.keep_alive = false;
      if (!c.responded()) c.send(499, "application/json", "{}");
      return;
    }
    int64_t completion_tokens = 0;
    for (const Choice& cc : choices) completion_tokens += cc.n_tokens;
    const json usage = {{"prompt_tokens", res.prompt_tokens},
                        {"completion_tokens", completion_tokens},
                        {"total_tokens", res.prompt_tokens + completion_tokens}};
    if (r.stream) {
      if (r.include_usage) {
        json j = {{"id", rid}, {"object", chunk_object}, {"created", created}, {"model", name_},
                  {"choices", json::array()}, {"usage", usage}};
        c.write_chunk("data: " + j.dump() + "\n\n");
      }
      c.write_chunk("data: [DONE]\n\n");
      c.end_stream();
      return;
    }
    for (const Choice& cc : choices)
      if (cc.finish == FinishReason::Error)
        throw ApiError(500, cc.error, {}, "server_error");
    json out_choices = json::array();
    for (size_t i = 0; i < choices.size(); ++i) {
      const Choice& cc = choices[i];
      json lp = nullptr;
      if (r.logprobs >= 0)
        lp = chat ? json{{"content", cc.lp_content}, {"refusal", nullptr}}
                  : json{{"tokens", cc.tokens}, {"token_logprobs", cc.token_lps},
                         {"top_logprobs", cc.top}, {"text_offset", cc.offsets}};
      if (chat)
        out_choices.push_back({{"index", i},
                               {"message", {{"role", "assistant"}, {"content", cc.text}, {"refusal", nullptr}}},
                               {"logprobs", lp},
                               {"finish_reason", finish_name(cc.finish)}});
      else
        out_choices.push_back({{"index", i}, {"text", cc.text}, {"logprobs", lp},
                               {"finish_reason", finish_name(cc.finish)}});
    }
    reply(c, 200, {{"id", rid}, {"object", object}, {"created", created}, {"model", name_},
                   {"system_fingerprint", nullptr}, {"choices", out_choices}, {"usage", usage}});
  }

  const ServeArgs& a_;
  std::unique_ptr<Model> model_;
  const Tokenizer* tok_ = nullptr;
  std::unique_ptr<ChatTemplate> tmpl_;
  std::string bos_, eos_, name_;
  std::vector<int32_t> eos_ids_;
  server::HangupWatcher watcher_;  // notices clients that hang up mid-request
  int64_t ctx_ = 0;
  int64_t created_ = 0;
  std::unique_ptr<Engine> engine_;
  server::Limits limits_;
  Metrics metrics_;
  std::atomic<bool> ready_{false};
};

int run_serve(const ServeArgs& given) {
  ServeArgs a = given;
  if (!a.api_key_file.empty()) {
    if (!a.api_key.empty()) throw Error("give only one of --api-key and --api-key-file");
    a.api_key = read_text_file(a.api_key_file, "--api-key-file");
    while (!a.api_key.empty() && (a.api_key.back() == '\n' || a.api_key.back() == '\r'))
      a.api_key.pop_back();
    if (a.api_key.empty()) throw Error("--api-key-file: " + a.api_key_file + ": the key is empty");
  }
  kv_dtype(a.m);
  Server srv(a);
  server::HttpOptions ho;
  ho.host = a.host;
  ho.port = a.port;
  ho.max_body = size_t(a.max_body_mb * 1024.0 * 1024.0);
  ho.max_connections = a.parallel + a.max_queue + 16;
  ho.timeout_s = a.timeout_s;
  server::HttpServer http(ho, [&srv](const HttpRequest& r, HttpConnection& c) { srv.handle(r, c); });
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  std::thread accept([&] { http.run(); });
  std::fprintf(stderr, "runnel serve: listening on http://%s:%d (loading %s)\n", a.host.c_str(),
               http.port(), a.m.model.c_str());
  int rc = 0;
  try {
    srv.load();
    std::fprintf(stderr, "runnel serve: ready on http://%s:%d\n", a.host.c_str(), http.port());
    while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } catch (...) {
    http.stop();
    accept.join();
    throw;
  }
  http.stop();
  accept.join();
  return rc;
}

const Command serve_cmd("serve", [](CLI::App& app) {
  app.description("Serve the model over an OpenAI-compatible HTTP API (see docs/server.md)");
  app.footer(
      "Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, "
      "GET /metrics, POST /tokenize, POST /detokenize.  It listens on 127.0.0.1 unless --host "
      "says otherwise; with --api-key every endpoint but /health needs 'Authorization: Bearer "
      "KEY'.");
  auto a = std::make_shared<ServeArgs>();
  add_model_flags(app, a->m);
  app.add_option("--host", a->host, "Address to listen on")->capture_default_str();
  app.add_option("--port", a->port, "TCP port (0: any free port, printed at start)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--parallel", a->parallel, "Sequences generated at once (also the most n per request)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--max-queue", a->max_queue, "Requests waiting beyond --parallel before 503")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  app.add_option("--timeout", a->timeout_s, "Seconds a connection may wait to read or write")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--max-body", a->max_body_mb, "Largest request body in MiB")
      ->check(CLI::Range(0.001, 1024.0))
      ->capture_default_str();
  app.add_option("--api-key", a->api_key, "Require 'Authorization: Bearer KEY'");
  app.add_option("--api-key-file", a->api_key_file, "Read the API key from FILE");
  app.add_option("-a,--alias", a->alias, "Model name the API reports (default: the file name)");
  app.add_option("--chat-template", a->chat_template,
                 "A built-in chat template (chatml, llama2, ...) instead of the model's");
  app.add_option("-n,--n-predict", a->n_predict,
                 "Default max_tokens (-1: until the context is full)")
      ->check(CLI::Range(int64_t(-1), int64_t(1) << 24));
  return [a] { return run_serve(*a); };
});

}  // namespace
}  // namespace runnel::cli

// runnel chat: an interactive conversation on stdin / stdout.
//
// Each turn renders the whole conversation with the model's chat template
// (add_generation_prompt), tokenizes it and runs only what the KV cache does
// not already hold: the longest common prefix of the new tokens and the
// cached ones is kept, so a conversation that grows by appending costs only
// the new turn.  When the conversation no longer fits in the context, the
// oldest user/assistant turns are dropped (the system prompt stays) and the
// rest is prefilled again.  Replies stream to stdout; stdin may be a pipe.
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "command.hpp"
#include "progress.hpp"
#include "runnel/chat_template.hpp"
#include "runnel/model.hpp"
#include "runnel/runnel.hpp"
#include "runnel/sampler.hpp"
#include "runnel/scheduler.hpp"
#include "runnel/tokenizer.hpp"
#include "sampling_flags.hpp"

namespace runnel::cli {
namespace {

struct ChatArgs {
  ModelFlags m;
  SamplingFlags s;
  std::string system;
  std::string system_file;
  std::string template_arg;   // --chat-template: a built-in name, Jinja text or a file
  std::string template_file;  // --chat-template-file
  bool chatml = false;
  int n_predict = 512;
};

// Ctrl-C: the first stops the reply being generated (back to the prompt); a
// Ctrl-C at the prompt, or a second one before the reply has stopped, exits.
std::atomic<bool> g_generating{false};
std::atomic<bool> g_interrupted{false};

void on_sigint(int) {
  if (g_generating.load() && !g_interrupted.load()) {
    g_interrupted.store(true);
    return;
  }
  static const char nl[] = "\n";
  [[maybe_unused]] const ssize_t n = ::write(STDOUT_FILENO, nl, 1);
  ::_exit(130);
}


using Clock = std::chrono::steady_clock;

// A template file holds the Jinja text, or a JSON object (tokenizer_config.json)
// with a "chat_template" string (or a list of {"name", "template"}, "default" first).
std::string read_template(const std::string& path) {
  std::string text = read_text_file(path, "--chat-template");
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '{' &&
      (first + 1 >= text.size() || (text[first + 1] != '%' && text[first + 1] != '{' &&
                                    text[first + 1] != '#' && text[first + 1] != '-'))) {
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) {
      const nlohmann::json* ct = nullptr;
      if (j.contains("chat_template"))
        ct = &j["chat_template"];
      else if (j.contains("template"))
        ct = &j["template"];
      if (ct && ct->is_string()) return ct->get<std::string>();
      if (ct && ct->is_array()) {
        for (const auto& e : *ct)
          if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
              e["template"].is_string())
            return e["template"].get<std::string>();
      }
      throw Error("--chat-template: " + path +
                  ": a JSON file needs a \"chat_template\" string (or a list with a \"default\" "
                  "entry)");
    }
  }
  if (text.empty()) throw Error("--chat-template: " + path + ": the file is empty");
  return text;
}

// --chat-template VALUE: a built-in name (llama.cpp's), an existing file, or
// the Jinja text itself.
std::string resolve_template_arg(const std::string& v) {
  if (const std::string t = builtin_chat_template(v); !t.empty()) return t;
  std::error_code ec;
  // An existing file, or what looks like a path (so that a missing file is
  // reported as one).
  if (std::filesystem::exists(v, ec) ||
      (v.find("{%") == std::string::npos && v.find("{{") == std::string::npos &&
       v.find_first_of("/.") != std::string::npos))
    return read_template(v);
  if (v.find("{%") != std::string::npos || v.find("{{") != std::string::npos) return v;
  std::string names;
  for (const std::string& n : builtin_chat_template_names()) names += (names.empty() ? "" : ", ") + n;
  throw Error("--chat-template: \"" + v + "\" is neither a built-in template (" + names +
              "), a file, nor Jinja text");
}

// One conversation at a time: the pool holds the context, and the last
// turn's cache stays in it for the next turn.
SchedulerOptions scheduler_options(const ChatArgs& a, int64_t n_ctx) {
  SchedulerOptions o;
  o.kv_dtype = kv_dtype(a.m);
  o.ctx_size = n_ctx;
  o.max_sequences = 1;
  o.keep_prefixes = 1;
  const int64_t chunk = prompt_chunk(a.m);
  o.max_batch_tokens = chunk > 0 ? chunk : n_ctx;
  return o;
}

class Chat {
 public:
  Chat(const ChatArgs& a, Model& model, const Tokenizer& tok, ChatTemplate tmpl, SamplerOptions sampling,
       int64_t n_ctx)
      : a_(a),
        model_(model),
        tok_(tok),
        tmpl_(std::move(tmpl)),
        sampling_(std::move(sampling)),
        n_ctx_(n_ctx),
        sched_(model, scheduler_options(a, n_ctx)) {
    const ModelConfig& cfg = model.config();
    StopOptions so;
    so.eos_ids = eos_ids(cfg, &tok, /*all_eog=*/true);
    so.stop_strings = a.s.stop;
    stop_opts_ = so;
    const int32_t bos = tok.bos_id() >= 0 ? tok.bos_id() : cfg.bos_id;
    const int32_t eos = tok.eos_id() >= 0     ? tok.eos_id()
                        : cfg.eos_ids.empty() ? -1
                                              : cfg.eos_ids.front();
    if (bos >= 0 && size_t(bos) < tok.vocab_size()) bos_ = tok.token_to_piece(bos);
    if (eos >= 0 && size_t(eos) < tok.vocab_size()) eos_ = tok.token_to_piece(eos);
  }

  void reset() {
    history_.clear();
    fresh_ = true;
  }

  // One user turn: renders, fits, prefills and streams the reply.  Returns
  // false (after a message on stderr) when the message cannot fit.
  bool turn(const std::string& user) {
    // A message that cannot fit even alone is refused before any history is
    // dropped for it.
    {
      std::vector<ChatMessage> saved;
      saved.swap(history_);
      history_.push_back({"user", user});
      const size_t alone = render().size();
      history_.swap(saved);
      if (int64_t(alone) >= n_ctx_) {
        std::fprintf(stderr,
                     "runnel: error: the message needs %zu tokens with the template and the "
                     "system prompt, but the context holds %lld (-c/--ctx-size); it was not "
                     "sent and the conversation is unchanged\n",
                     alone, static_cast<long long>(n_ctx_));
        return false;
      }
    }
    history_.push_back({"user", user});
    const int64_t reserve = std::min<int64_t>(a_.n_predict, n_ctx_ / 2);
    std::vector<int32_t> ids = render();
    int dropped = 0;
    while (int64_t(ids.size()) + reserve > n_ctx_ && history_.size() > 1) {
      // Drop the oldest turn: a user message and the replies up to the next one.
      size_t end = 1;
      while (end < history_.size() - 1 && history_[end].role != "user") ++end;
      history_.erase(history_.begin(), history_.begin() + std::ptrdiff_t(end));
      ++dropped;
      ids = render();
    }
    if (ids.empty()) throw Error("chat template: the conversation rendered as no tokens");
    if (dropped > 0 && log_enabled(LogLevel::Warn))
      std::fprintf(stderr, "chat: dropped the %d oldest turn%s to fit the context of %lld tokens\n",
                   dropped, dropped == 1 ? "" : "s", static_cast<long long>(n_ctx_));
    if (int64_t(ids.size()) >= n_ctx_) {
      std::fprintf(stderr,
                   "runnel: error: the message needs %zu tokens with the template and the system "
                   "prompt, but the context holds %lld (-c/--ctx-size); it was not sent\n",
                   ids.size(), static_cast<long long>(n_ctx_));
      history_.pop_back();
      return false;
    }
    const int32_t vocab = int32_t(model_.config().vocab_size);
    for (int32_t id : ids)
      if (id < 0 || id >= vocab)
        throw Error(
            fmt::format("chat: token id {} of the rendered prompt is outside the model's "
                        "vocabulary of {} tokens (tokenizer and model do not match)",
                        id, vocab));

    // The Scheduler keeps the last turn's cache and runs only what the new
    // prompt does not share with it (at least one token).
    RequestOptions ro;
    ro.sampling = sampling_;
    ro.sampling.seed = sampling_.seed + uint64_t(n_turns_);
    ro.stop = stop_opts_;
    ro.stop.max_tokens = std::min<int64_t>(a_.n_predict, n_ctx_ - int64_t(ids.size()));
    ro.stop_at_eos = false;  // stop_opts_ has every end-of-generation id
    ro.reuse_prefix = !fresh_;
    fresh_ = false;
    const int64_t reused_before = sched_.stats().prefix_tokens;
    std::string reply;
    int64_t n_gen = 0;
    const auto t0 = Clock::now();
    Clock::time_point t1 = t0;
    g_interrupted.store(false);
    g_generating.store(true);
    bool interrupted = false;
    const RequestId id = sched_.submit(ids, ro, [&](const Event& e) {
      if (e.token >= 0 && n_gen++ == 0) t1 = Clock::now();
      std::fputs(e.text.c_str(), stdout);
      std::fflush(stdout);
      reply += e.text;
      if (g_interrupted.load()) interrupted = true;
      return !interrupted;
    });
    sched_.run();
    const RequestResult res = sched_.take(id);
    const int64_t common = sched_.stats().prefix_tokens - reused_before;
    g_generating.store(false);
    if (interrupted && log_enabled(LogLevel::Info))
      std::fputs("\nchat: reply stopped (Ctrl-C); Ctrl-C again at the prompt, or Ctrl-D, exits\n",
                 stderr);
    if (res.samples.at(0).finish == FinishReason::Error) throw Error(res.samples[0].error);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    history_.push_back({"assistant", reply});
    ++n_turns_;
    if (log_enabled(LogLevel::Debug)) {
      const double pre_s = std::chrono::duration<double>(t1 - t0).count();
      const double gen_s = std::chrono::duration<double>(Clock::now() - t1).count();
      std::fprintf(stderr,
                   "chat: turn %d: prompt %zu tokens (%zu reused, %zu run, %.1f tokens/s), "
                   "reply %lld tokens (%.1f tokens/s), history %zu messages\n",
                   n_turns_, ids.size(), size_t(common), ids.size() - size_t(common),
                   pre_s > 0 ? double(int64_t(ids.size()) - common) / pre_s : 0.0,
                   static_cast<long long>(n_gen), gen_s > 0 ? double(n_gen) / gen_s : 0.0,
                   history_.size());
    }
    return true;
  }

 private:
  std::vector<int32_t> render() const {
    std::vector<ChatMessage> msgs;
    if (!a_.system.empty()) msgs.push_back({"system", a_.system});
    msgs.insert(msgs.end(), history_.begin(), history_.end());
    const std::string text = tmpl_.apply(msgs, /*add_generation_prompt=*/true, bos_, eos_);
    // The template writes the special tokens itself (transformers' apply_chat_template).
    return tok_.encode(text, /*add_special=*/false);
  }

  const ChatArgs& a_;
  Model& model_;
  const Tokenizer& tok_;
  ChatTemplate tmpl_;
  SamplerOptions sampling_;  // --seed resolved; turn t is seeded seed + t
  int64_t n_ctx_;
  Scheduler sched_;
  StopOptions stop_opts_;
  std::string bos_, eos_;
  std::vector<ChatMessage> history_;  // without the system prompt
  bool fresh_ = true;                 // the next turn reuses no cached prefix (start, /reset)
  int n_turns_ = 0;
};

int run_chat(const ChatArgs& a) {
  const SamplerOptions so = sampler_options(a.s);
  Sampler sampler = make_sampler(so);
  for (const auto& s : a.s.stop)
    if (s.empty()) throw Error("--stop: the stop string is empty");
  std::string tmpl_source, tmpl_name;
  if (int(!a.template_arg.empty()) + int(!a.template_file.empty()) + int(a.chatml) > 1)
    throw Error("give only one of --chat-template, --chat-template-file and --chatml");
  if (!a.template_file.empty()) {
    tmpl_source = read_template(a.template_file);
    tmpl_name = a.template_file;
  } else if (!a.template_arg.empty()) {
    tmpl_source = resolve_template_arg(a.template_arg);
    tmpl_name = "--chat-template " + (a.template_arg.size() > 40 ? a.template_arg.substr(0, 40) + "..." : a.template_arg);
  } else if (a.chatml) {
    tmpl_source = builtin_chat_template("chatml");
    tmpl_name = "chatml";
  }
  if (!a.system.empty() && !a.system_file.empty())
    throw Error("give only one of --system and --system-prompt-file");
  ChatArgs args = a;
  if (!a.system_file.empty()) args.system = read_text_file(a.system_file, "--system-prompt-file");
  kv_dtype(a.m);

  auto model = load_model(a.m, nullptr);
  const ModelConfig& cfg = model->config();
  const Tokenizer* tok = model->tokenizer();
  if (!tok) throw Error(a.m.model + ": no tokenizer found beside the model; pass --tokenizer PATH");
  if (tmpl_source.empty()) {
    tmpl_source = tok->chat_template();
    tmpl_name = tok->chat_template_origin();
    if (tmpl_source.empty())
      throw Error(a.m.model +
                  ": the model has no chat template (tokenizer_config.json \"chat_template\" or "
                  "GGUF tokenizer.chat_template); pass --chat-template NAME or "
                  "--chat-template-file FILE");
  }
  ChatTemplate tmpl(tmpl_source, tmpl_name);
  const int64_t n_ctx = context_limit(a.m, cfg, cfg.max_positions > 0 ? cfg.max_positions : 4096);
  if (n_ctx < 2) throw Error("-c/--ctx-size: the context must hold at least 2 tokens");
  if (log_enabled(LogLevel::Debug))
    std::fprintf(stderr, "chat: context %lld tokens, sampler %s (seed %llu)\n",
                 static_cast<long long>(n_ctx), sampler.describe().c_str(),
                 static_cast<unsigned long long>(so.seed));

  Chat chat(args, *model, *tok, std::move(tmpl), so, n_ctx);
  const bool interactive = ::isatty(STDIN_FILENO) == 1;
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  bool refused = false;
  if (interactive && log_enabled(LogLevel::Info))
    std::fprintf(stderr,
                 "chat: type a message and press Enter (end a line with \\ to continue it); "
                 "/reset starts over, /exit or Ctrl-D quits\n");
  std::string line;
  while (true) {
    if (interactive) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    std::string msg;
    bool got = false;
    while (std::getline(std::cin, line)) {
      got = true;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty() && line.back() == '\\') {
        line.pop_back();
        msg += line + "\n";
        continue;
      }
      msg += line;
      break;
    }
    if (!got) break;  // EOF
    if (msg == "/exit" || msg == "/quit") break;
    if (msg == "/reset") {
      chat.reset();
      if (log_enabled(LogLevel::Info)) std::fprintf(stderr, "chat: conversation reset\n");
      continue;
    }
    if (msg == "/help") {
      std::fprintf(stderr,
                   "/reset  forget the conversation (the system prompt stays)\n"
                   "/exit   quit (also /quit and end of input)\n");
      continue;
    }
    if (msg.find_first_not_of(" \t\n") == std::string::npos) continue;
    if (!chat.turn(msg)) refused = true;
  }
  if (interactive) std::fputs("\n", stdout);
  // A script that piped its messages learns that one was not answered.
  return refused && !interactive ? 2 : 0;
}

const Command chat_cmd("chat", [](CLI::App& app) {
  app.description("Chat with a model on stdin/stdout using its chat template");
  app.footer(
      "One message per line (end a line with \\ to continue it); /reset forgets the "
      "conversation, /exit or end of input quits.  The conversation stays in the KV cache "
      "between turns; when it outgrows the context (-c), the oldest turns are dropped (the "
      "system prompt stays) so that the prompt leaves room for min(-n, ctx/2) reply tokens.  "
      "The template comes from tokenizer_config.json or GGUF tokenizer.chat_template, or "
      "--chat-template.  Ctrl-C stops a reply; at the prompt it exits.  Sampling defaults to --temp 0.8; --temp 0 is greedy.");
  auto a = std::make_shared<ChatArgs>();
  a->s.o.temperature = 0.8f;
  add_model_flags(app, a->m);
  app.add_option("--system,--system-prompt", a->system,
                 "System prompt (also -sys, as llama.cpp spells it)");
  app.add_option("--system-prompt-file", a->system_file, "Read the system prompt from FILE (-sysf)");
  app.add_option("--chat-template", a->template_arg,
                 "The chat template, overriding the model's: a built-in name (" + [] {
                   std::string s;
                   for (const std::string& n : builtin_chat_template_names())
                     s += (s.empty() ? "" : ", ") + n;
                   return s;
                 }() + "), Jinja text, or a file");
  app.add_option("--chat-template-file", a->template_file,
                 "Chat template file (Jinja text, or a tokenizer_config.json)");
  app.add_flag("--chatml", a->chatml, "-cml: the chatml template")->group("llama.cpp compatibility");
  app.add_flag("-i,--interactive,--interactive-first,--conversation")->description("-i, -cnv: accepted; chat is always a conversation")
      ->group("llama.cpp compatibility");
  app.add_flag("--multiline-input")->description("-mli: accepted; end a line with \\ to continue a message")
      ->group("llama.cpp compatibility");
  add_refused(app, "--no-conversation", false,
              "chat is always a conversation; a plain continuation is 'runnel generate'");
  app.add_option("-n,--n-predict", a->n_predict, "Most tokens per reply")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  add_sampling_flags(app, a->s);
  return [a] { return run_chat(*a); };
});

}  // namespace
}  // namespace runnel::cli

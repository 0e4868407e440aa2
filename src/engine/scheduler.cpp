// The batching scheduler (include/runnel/scheduler.hpp).
//
// Every sample is a sequence of tokens of which the first n_cached are in the
// paged KV cache.  A step feeds each sequence the tokens it has not cached yet
// (one for a decoding sequence, a chunk of the prompt for a prefilling one)
// in one batched forward pass; a sequence whose input reached its last token
// gets logits and samples the next one.  Sequences that cannot get a KV block
// preempt the youngest other request (its blocks are freed and its tokens are
// recomputed later) or, when nothing can be preempted, end with an error.
#include "runnel/scheduler.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <span>

#include "runnel/error.hpp"
#include "runnel/tokenizer.hpp"

namespace runnel {

const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::None: return "none";
    case FinishReason::Eos: return "eos";
    case FinishReason::StopString: return "stop";
    case FinishReason::MaxTokens: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
  }
  return "?";
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

FinishReason finish_of(StopReason r) {
  switch (r) {
    case StopReason::Eos: return FinishReason::Eos;
    case StopReason::StopString: return FinishReason::StopString;
    case StopReason::MaxTokens: return FinishReason::MaxTokens;
    case StopReason::None: break;
  }
  return FinishReason::None;
}

// log(sum_j exp(x_j)), in double.
double log_normalizer(std::span<const float> x) {
  double mx = -INFINITY;
  for (float v : x) mx = std::max(mx, double(v));
  if (!std::isfinite(mx)) return mx;
  double sum = 0;
  for (float v : x) sum += std::exp(double(v) - mx);
  return mx + std::log(sum);
}

// The n most likely tokens with their log-probabilities, most likely first
// (ties: the lower id first).
void top_logprobs(std::span<const float> x, double norm, int n,
                  std::vector<std::pair<int32_t, float>>& out) {
  const size_t k = std::min(x.size(), size_t(std::min(n, 20)));
  std::vector<int32_t> ids(x.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(i);
  std::partial_sort(ids.begin(), ids.begin() + ptrdiff_t(k), ids.end(), [&](int32_t a, int32_t b) {
    return x[size_t(a)] > x[size_t(b)] || (x[size_t(a)] == x[size_t(b)] && a < b);
  });
  out.clear();
  for (size_t i = 0; i < k; ++i) out.emplace_back(ids[i], float(double(x[size_t(ids[i])]) - norm));
}

}  // namespace

struct Scheduler::Impl {
  struct Request;

  struct Sample {
    Request* req = nullptr;
    int index = 0;
    PagedKvCache::SeqId kv = -1;  // -1: holds no blocks
    std::unique_ptr<PagedSequenceCache> view;
    std::vector<int32_t> tokens;  // prompt, then generated
    int64_t n_cached = 0;         // tokens[0, n_cached) are in the cache
    std::optional<Sampler> sampler;
    std::optional<StopCondition> stop;
    std::optional<StreamDecoder> decoder;
    Completion out;
    bool done = false;
    // The logits of the last forward, when it reached the end: a view where
    // the model computed them, valid until the next forward (this step).
    Tensor logits;
    std::vector<float> host_logits;  // their copy, where that is not host memory
  };

  struct Request {
    RequestId id = -1;
    RequestOptions options;
    EventCallback on_event;
    int64_t prompt_tokens = 0;
    int64_t admitted_at = -1;  // admission order (preemption picks the youngest)
    std::vector<std::unique_ptr<Sample>> samples;
    bool forked = false;  // samples 1.. exist in the cache
    int open = 0;         // samples not done
    int64_t preemptions = 0;
  };

  Model& model;
  SchedulerOptions o;
  std::unique_ptr<PagedKvCache> cache;
  int64_t max_ctx = 0;  // longest sequence (0: none)
  std::vector<int32_t> eos_ids;

  // Shared with submit() / cancel() / queries.
  mutable std::mutex mu;
  RequestId next_id = 0;
  std::deque<std::unique_ptr<Request>> incoming;
  std::vector<RequestId> cancels;
  std::map<RequestId, RequestResult> results;
  std::atomic<size_t> pending{0};
  Stats stats;

  // Owned by step().
  std::deque<std::unique_ptr<Request>> waiting;  // not admitted (or preempted)
  std::vector<std::unique_ptr<Request>> running;
  int64_t admissions = 0;
  // Finished sequences kept for their prefix (SchedulerOptions::keep_prefixes),
  // least recently used first.
  struct Kept {
    PagedKvCache::SeqId kv = -1;
    std::vector<int32_t> tokens;  // the positions the cache holds
  };
  std::deque<Kept> kept;

  Impl(Model& m, const SchedulerOptions& opt) : model(m), o(opt) {
    const ModelConfig& c = model.config();
    if (o.max_batch_tokens < 1) throw Error("scheduler: max_batch_tokens must be >= 1");
    if (o.max_sequences < 1) throw Error("scheduler: max_sequences must be >= 1");
    if (o.ctx_size < 0) throw Error("scheduler: ctx_size must be >= 0");
    if (o.kv_cache_mb < 0) throw Error("scheduler: kv_cache_mb must be >= 0");
    if (o.keep_prefixes < 0) throw Error("scheduler: keep_prefixes must be >= 0");
    KvCacheOptions kv = KvCacheOptions::for_model(c, o.kv_dtype, o.block_size);
    // Learned position tables end at max_positions; RoPE and ALiBi models can
    // run past their trained context (dynamic NTK scaling is meant for that),
    // so only ctx_size limits them.
    max_ctx = c.position == PositionKind::Learned ? c.max_positions : 0;
    if (o.ctx_size > 0) max_ctx = max_ctx > 0 ? std::min(max_ctx, o.ctx_size) : o.ctx_size;
    kv.max_seq_tokens = max_ctx;
    kv.backend = &model.context().backend();  // the pool lives where the model runs
    if (o.kv_cache_mb > 0) {
      kv.n_blocks = kv.blocks_for_bytes(o.kv_cache_mb << 20);
    } else if (o.ctx_size > 0) {
      kv.n_blocks = kv.blocks_for_tokens(o.ctx_size);
    } else {
      // The model's context for every sequence, within 4 GiB.
      const int64_t per_seq = c.max_positions > 0 ? c.max_positions : 4096;
      const int64_t want = kv.blocks_for_tokens(per_seq) * o.max_sequences;
      kv.n_blocks = std::max<int64_t>(1, std::min(want, kv.blocks_for_bytes(int64_t(4) << 30)));
    }
    cache = std::make_unique<PagedKvCache>(kv);
    stats.kv_blocks_total = cache->n_blocks();
    eos_ids = c.eos_ids;
    if (const Tokenizer* t = model.tokenizer(); t && t->eos_id() >= 0) eos_ids.push_back(t->eos_id());
  }

  // --- finishing -----------------------------------------------------------

  void release(Sample& s) {
    if (s.kv >= 0) cache->free(s.kv);
    s.kv = -1;
    s.view.reset();
  }

  // Keeps a finished sample's cached positions for later prompts that start
  // with them, or frees them.
  void keep_or_release(Sample& s, FinishReason why) {
    if (o.keep_prefixes == 0 || s.kv < 0 || s.n_cached <= 0 || why == FinishReason::Error) {
      release(s);
      return;
    }
    cache->truncate(s.kv, s.n_cached);
    kept.push_back({s.kv, std::vector<int32_t>(s.tokens.begin(), s.tokens.begin() + s.n_cached)});
    s.kv = -1;
    s.view.reset();
    while (kept.size() > size_t(o.keep_prefixes)) drop_kept();
  }

  // Frees the least recently used kept prefix; false when there is none.
  bool drop_kept() {
    if (kept.empty()) return false;
    cache->free(kept.front().kv);
    kept.pop_front();
    return true;
  }

  // Gives sample 0 of a request its sequence: a fork of the kept prefix that
  // shares the most leading tokens with its prompt (all but the last token at
  // most, which must run for logits), else an empty one.
  void start(Sample& s0) {
    size_t best = 0, at = 0;
    const size_t limit = s0.req->options.reuse_prefix ? s0.tokens.size() - 1 : 0;
    for (size_t i = 0; i < kept.size(); ++i) {
      const std::vector<int32_t>& t = kept[i].tokens;
      size_t n = 0;
      while (n < limit && n < t.size() && t[n] == s0.tokens[n]) ++n;
      if (n > best) best = n, at = i;
    }
    if (best > 0) {
      s0.kv = cache->fork(kept[at].kv, int64_t(best));
      Kept used = std::move(kept[at]);  // now the most recently used
      kept.erase(kept.begin() + ptrdiff_t(at));
      kept.push_back(std::move(used));
      std::lock_guard<std::mutex> lock(mu);
      stats.prefix_tokens += int64_t(best);
    } else {
      s0.kv = cache->add_sequence();
    }
    s0.view = std::make_unique<PagedSequenceCache>(*cache, s0.kv);
    s0.n_cached = int64_t(best);
  }

  // Ends a sample, emitting its last event.  `text` is what may still be printed;
  // `token` is the token this event reports (with `lp`, its log-probabilities).
  void finish(Sample& s, FinishReason why, std::string text = {}, std::string error = {},
              int32_t token = -1, const Event* lp = nullptr) {
    if (s.done) return;
    s.done = true;
    if (s.stop && why != FinishReason::Eos && why != FinishReason::StopString)
      text += s.stop->flush();
    if (s.decoder && why != FinishReason::StopString && why != FinishReason::Error)
      text += s.decoder->flush();
    s.out.text += text;
    s.out.finish = why;
    s.out.error = error;
    keep_or_release(s, why);
    --s.req->open;
    // Samples waiting for sample 0's prompt share its fate.
    if (s.index == 0 && !s.req->forked)
      for (auto& other : s.req->samples)
        if (other.get() != &s) finish(*other, why, {}, s.out.error);
    if (s.req->on_event) {
      Event e;
      e.request = s.req->id;
      e.sample = s.index;
      e.token = token;
      e.text = std::move(text);
      e.finish = why;
      e.error = std::move(error);
      if (lp) {
        e.logprob = lp->logprob;
        e.top_logprobs = lp->top_logprobs;
      }
      s.req->on_event(e);
    }
  }

  void fail_request(Request& r, const std::string& why) {
    for (auto& s : r.samples) finish(*s, FinishReason::Error, {}, why);
  }

  // --- admission -------------------------------------------------------------

  int64_t blocks_for(int64_t tokens) const {
    const int64_t bs = cache->options().block_size;
    return (tokens + bs - 1) / bs;
  }

  // Moves waiting requests into `running` while sequences and blocks allow.
  void admit() {
    while (!waiting.empty()) {
      Request& r = *waiting.front();
      int64_t seqs = 0;
      for (auto& q : running) seqs += q->open;
      if (seqs + r.open > o.max_sequences && !running.empty()) break;
      // Blocks for its tokens plus one more, beside one growth block per running sample.
      const int64_t need = blocks_for(int64_t(r.samples[0]->tokens.size()) + 1);
      if (need > cache->n_blocks()) {
        auto req = std::move(waiting.front());
        waiting.pop_front();
        fail_request(*req, fmt::format("the KV cache ({} blocks of {} tokens) cannot hold a "
                                       "sequence of {} tokens",
                                       cache->n_blocks(), cache->options().block_size,
                                       req->samples[0]->tokens.size()));
        publish(std::move(req));
        continue;
      }
      // Kept prefixes give way to a request that would otherwise wait.
      while (!running.empty() && cache->free_blocks() - seqs < need && drop_kept()) {
      }
      if (!running.empty() && cache->free_blocks() - seqs < need) break;
      auto req = std::move(waiting.front());
      waiting.pop_front();
      req->admitted_at = admissions++;
      if (!req->forked) start(*req->samples[0]);  // forked samples get theirs in step()
      running.push_back(std::move(req));
    }
  }

  // Frees the youngest running request other than `keep` and queues it for
  // recomputation.  Returns false when there is none.
  bool preempt(const Request* keep) {
    Request* victim = nullptr;
    for (auto& r : running)
      if (r.get() != keep && r->open > 0 && (!victim || r->admitted_at > victim->admitted_at))
        victim = r.get();
    if (!victim) return false;
    {
      std::lock_guard<std::mutex> lock(mu);
      ++stats.preemptions;
    }
    ++victim->preemptions;
    for (auto& s : victim->samples) {
      release(*s);
      s->n_cached = 0;
    }
    auto it = std::find_if(running.begin(), running.end(),
                           [&](const auto& p) { return p.get() == victim; });
    std::unique_ptr<Request> owned = std::move(*it);
    running.erase(it);
    waiting.push_front(std::move(owned));
    return true;
  }

  // --- results ---------------------------------------------------------------

  void publish(std::unique_ptr<Request> r) {
    RequestResult res;
    res.id = r->id;
    res.prompt_tokens = r->prompt_tokens;
    res.preemptions = r->preemptions;
    for (auto& s : r->samples) res.samples.push_back(std::move(s->out));
    std::lock_guard<std::mutex> lock(mu);
    results[r->id] = std::move(res);
    --pending;
  }

  // --- the step --------------------------------------------------------------

  void sample_one(Sample& s) {
    std::span<const float> lg(s.logits.data_as<const float>(), size_t(s.logits.numel()));
    if (s.logits.device() != Device::CPU) {
      s.host_logits.resize(lg.size());
      model.context().backend().copy(s.host_logits.data(), Device::CPU, lg.data(),
                                     s.logits.device(), lg.size() * sizeof(float));
      lg = s.host_logits;
    }
    // Log-probabilities come from the logits before any sampling stage.
    Event lp;
    const int n_top = s.req->options.logprobs;
    const double norm = n_top >= 0 ? log_normalizer(lg) : 0.0;
    if (n_top > 0) top_logprobs(lg, norm, n_top, lp.top_logprobs);
    const int32_t tok = s.sampler->sample(lg);
    if (n_top >= 0) lp.logprob = float(double(lg[size_t(tok)]) - norm);
    s.tokens.push_back(tok);
    s.out.tokens.push_back(tok);
    if (s.req->options.keep_logits) s.out.logits.insert(s.out.logits.end(), lg.begin(), lg.end());
    const std::string piece = s.decoder ? s.decoder->push(tok) : std::string();
    const StopCondition::Step st = s.stop->push(tok, piece);
    {
      std::lock_guard<std::mutex> lock(mu);
      ++stats.generated_tokens;
    }
    if (st.stop != StopReason::None) {
      finish(s, finish_of(st.stop), st.text, {}, tok, &lp);
      return;
    }
    if (max_ctx > 0 && int64_t(s.tokens.size()) > max_ctx) {
      finish(s, FinishReason::Error, st.text,
             fmt::format("the context of {} tokens is full", max_ctx), tok, &lp);
      return;
    }
    s.out.text += st.text;
    if (s.req->on_event) {
      Event e;
      e.request = s.req->id;
      e.sample = s.index;
      e.token = tok;
      e.text = st.text;
      e.logprob = lp.logprob;
      e.top_logprobs = std::move(lp.top_logprobs);
      if (!s.req->on_event(e)) finish(s, FinishReason::Cancelled);
    }
  }

  // Samples 1.. of a request share sample 0's prompt blocks.
  void fork(Request& r) {
    Sample& s0 = *r.samples[0];
    for (size_t i = 1; i < r.samples.size(); ++i) {
      Sample& s = *r.samples[i];
      if (s.done) continue;
      s.kv = cache->fork(s0.kv);
      s.view = std::make_unique<PagedSequenceCache>(*cache, s.kv);
      s.n_cached = s0.n_cached;
      s.logits = s0.logits;
    }
    r.forked = true;
  }

  bool step() {
    const auto t0 = Clock::now();
    std::vector<RequestId> cancelled;
    {
      std::lock_guard<std::mutex> lock(mu);
      while (!incoming.empty()) {
        waiting.push_back(std::move(incoming.front()));
        incoming.pop_front();
      }
      cancelled.swap(cancels);
    }
    for (RequestId id : cancelled) {
      for (auto& r : running)
        if (r->id == id)
          for (auto& s : r->samples) finish(*s, FinishReason::Cancelled);
      for (auto& r : waiting)
        if (r->id == id)
          for (auto& s : r->samples) finish(*s, FinishReason::Cancelled);
    }
    retire();
    admit();
    if (running.empty()) {
      publish_cache_stats();
      return false;
    }
    // Forked samples that lost their blocks (preempted) recompute alone.
    for (auto& r : running)
      if (r->forked)
        for (auto& sp : r->samples)
          if (!sp->done && sp->kv < 0) {
            sp->kv = cache->add_sequence();
            sp->view = std::make_unique<PagedSequenceCache>(*cache, sp->kv);
            sp->n_cached = 0;
          }

    // Inputs: decodes first (one token each), then prompt chunks.
    struct Input {
      Sample* s;
      int64_t n;
    };
    std::vector<Input> inputs;
    int64_t budget = o.max_batch_tokens;
    for (int pass = 0; pass < 2; ++pass)
      for (auto& r : running)
        for (auto& sp : r->samples) {
          Sample& s = *sp;
          if (s.done || s.kv < 0) continue;
          const int64_t left = int64_t(s.tokens.size()) - s.n_cached;
          if (left <= 0) continue;
          if ((pass == 0) != (left == 1)) continue;
          const int64_t n = pass == 0 ? 1 : std::min(left, budget);
          if (n <= 0) continue;
          inputs.push_back({&s, n});
          budget -= n;
        }

    // Reserve blocks; on a full cache preempt someone else or fail this sample.
    for (size_t i = 0; i < inputs.size(); ++i) {
      Sample& s = *inputs[i].s;
      if (s.done || s.kv < 0) continue;
      for (;;) {
        try {
          cache->reserve(s.kv, s.n_cached + inputs[i].n);
          break;
        } catch (const KvCacheFull& e) {
          if (drop_kept() || preempt(s.req)) continue;
          finish(s, FinishReason::Error, {}, e.what());
          break;
        } catch (const ContextFull& e) {
          finish(s, FinishReason::Error, {}, e.what());
          break;
        }
      }
    }
    // Preemption may have taken samples that were inputs.
    std::vector<Model::BatchItem> items;
    std::vector<Input> used;
    for (const Input& in : inputs) {
      Sample& s = *in.s;
      if (s.done || s.kv < 0 || !s.view) continue;
      const bool last = s.n_cached + in.n == int64_t(s.tokens.size());
      Model::BatchItem it;
      it.cache = s.view.get();
      it.ids = std::span<const int32_t>(s.tokens.data() + s.n_cached, size_t(in.n));
      it.pos0 = s.n_cached;
      it.which = Logits::Last;
      it.logits_view = last ? &s.logits : nullptr;
      items.push_back(it);
      used.push_back(in);
    }
    if (!items.empty()) {
      const auto tf = Clock::now();
      try {
        model.forward(items);
      } catch (const Error& e) {
        for (const Input& in : used) finish(*in.s, FinishReason::Error, {}, e.what());
        items.clear();
        used.clear();
      }
      std::lock_guard<std::mutex> lock(mu);
      stats.forward_s += seconds_since(tf);
      for (const Input& in : used)
        if (int64_t(in.s->tokens.size()) - in.s->n_cached > 1 || in.s->out.tokens.empty())
          stats.prompt_tokens += in.n;
    }
    // Advance and sample.
    for (const Input& in : used) {
      Sample& s = *in.s;
      s.n_cached += in.n;
      if (s.n_cached != int64_t(s.tokens.size()) || s.done) continue;
      Request& r = *s.req;
      if (s.index == 0 && !r.forked && r.samples.size() > 1) fork(r);
      if (r.options.stop.max_tokens == 0) {
        for (auto& x : r.samples) finish(*x, FinishReason::MaxTokens);
        continue;
      }
      if (s.index == 0 && r.samples.size() > 1 && s.out.tokens.empty()) {
        for (auto& x : r.samples)
          if (!x->done) sample_one(*x);
      } else {
        sample_one(s);
      }
    }
    retire();
    {
      std::lock_guard<std::mutex> lock(mu);
      ++stats.steps;
      stats.total_s += seconds_since(t0);
    }
    publish_cache_stats();
    return true;
  }

  // The pool's occupancy after a step, for stats(): blocks in use, and the
  // distinct blocks that kept prefixes hold (shared ones counted once).
  std::vector<int32_t> kept_blocks;  // scratch, keeps its capacity
  void publish_cache_stats() {
    kept_blocks.clear();
    for (const Kept& k : kept) {
      const std::span<const int32_t> t = cache->block_table(k.kv);
      kept_blocks.insert(kept_blocks.end(), t.begin(), t.end());
    }
    std::sort(kept_blocks.begin(), kept_blocks.end());
    const auto n_kept = std::unique(kept_blocks.begin(), kept_blocks.end()) - kept_blocks.begin();
    std::lock_guard<std::mutex> lock(mu);
    stats.kv_blocks_used = cache->n_blocks() - cache->free_blocks();
    stats.kv_blocks_kept = int64_t(n_kept);
    stats.kept_prefixes = int64_t(kept.size());
  }

  // Publishes requests whose samples are all done.
  void retire() {
    for (size_t i = 0; i < running.size();) {
      if (running[i]->open == 0) {
        publish(std::move(running[i]));
        running.erase(running.begin() + ptrdiff_t(i));
      } else {
        ++i;
      }
    }
    for (size_t i = 0; i < waiting.size();) {
      if (waiting[i]->open == 0) {
        publish(std::move(waiting[i]));
        waiting.erase(waiting.begin() + ptrdiff_t(i));
      } else {
        ++i;
      }
    }
  }
};

Scheduler::Scheduler(Model& model, const SchedulerOptions& options)
    : impl_(std::make_unique<Impl>(model, options)) {}
Scheduler::~Scheduler() = default;

RequestId Scheduler::submit(std::vector<int32_t> prompt, const RequestOptions& options,
                            EventCallback on_event) {
  Impl& m = *impl_;
  const ModelConfig& c = m.model.config();
  if (prompt.empty()) throw Error("the prompt is empty");
  for (int32_t id : prompt)
    if (id < 0 || id >= c.vocab_size)
      throw Error(fmt::format("prompt token id {} is outside the vocabulary (size {})", id,
                              c.vocab_size));
  if (m.max_ctx > 0 && int64_t(prompt.size()) > m.max_ctx)
    throw Error(fmt::format("the prompt has {} tokens; the context holds {} (prompt plus at "
                            "least one generated token)",
                            prompt.size(), m.max_ctx));
  if (options.n_samples < 1 || options.n_samples > 1024)
    throw Error("n_samples must be between 1 and 1024");
  if (options.logprobs < -1 || options.logprobs > 20)
    throw Error("logprobs must be between -1 (none) and 20");
  const Tokenizer* tok = m.model.tokenizer();
  if (!options.stop.stop_strings.empty() && !(tok && options.text))
    throw Error("stop strings need the model's tokenizer and text output");

  auto r = std::make_unique<Impl::Request>();
  r->options = options;
  r->on_event = std::move(on_event);
  r->prompt_tokens = int64_t(prompt.size());
  StopOptions stop = options.stop;
  if (options.stop_at_eos)
    stop.eos_ids.insert(stop.eos_ids.end(), m.eos_ids.begin(), m.eos_ids.end());
  for (int s = 0; s < options.n_samples; ++s) {
    auto sp = std::make_unique<Impl::Sample>();
    sp->req = r.get();
    sp->index = s;
    sp->tokens = prompt;
    SamplerOptions so = options.sampling;
    so.seed += uint64_t(s);
    sp->sampler.emplace(make_sampler(so));  // validates the options
    for (int32_t id : prompt) sp->sampler->accept(id);
    sp->stop.emplace(stop);
    if (tok && options.text) {
      sp->decoder.emplace(*tok, /*skip_special=*/true);
      for (int32_t id : prompt) sp->decoder->push(id);  // context for spacing; not printed
    }
    r->samples.push_back(std::move(sp));
  }
  r->open = options.n_samples;
  std::lock_guard<std::mutex> lock(m.mu);
  r->id = m.next_id++;
  const RequestId id = r->id;
  m.incoming.push_back(std::move(r));
  ++m.pending;
  return id;
}

void Scheduler::cancel(RequestId id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->cancels.push_back(id);
}

bool Scheduler::step() { return impl_->step(); }

void Scheduler::run() {
  int idle = 0;
  while (n_pending() > 0) {
    if (step()) {
      idle = 0;
    } else if (++idle > 2) {
      // Every pending request is finished, running or waiting; an idle step
      // with requests pending would be a scheduler bug, not a user error.
      throw Error("scheduler: requests are pending but none can run");
    }
  }
}

bool Scheduler::finished(RequestId id) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->results.count(id) != 0;
}

RequestResult Scheduler::take(RequestId id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->results.find(id);
  if (it == impl_->results.end())
    throw Error(fmt::format("request {} has not finished (or was already taken)", id));
  RequestResult r = std::move(it->second);
  impl_->results.erase(it);
  return r;
}

size_t Scheduler::n_pending() const { return impl_->pending.load(); }

Scheduler::Stats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

const PagedKvCache& Scheduler::cache() const { return *impl_->cache; }
Model& Scheduler::model() { return impl_->model; }

RequestResult generate(Model& model, std::vector<int32_t> prompt, const RequestOptions& options,
                       const SchedulerOptions& scheduler, EventCallback on_event) {
  Scheduler s(model, scheduler);
  const RequestId id = s.submit(std::move(prompt), options, std::move(on_event));
  s.run();
  return s.take(id);
}

std::vector<RequestResult> generate_batch(Model& model,
                                          const std::vector<std::vector<int32_t>>& prompts,
                                          const RequestOptions& options,
                                          const SchedulerOptions& scheduler) {
  Scheduler s(model, scheduler);
  std::vector<RequestId> ids;
  ids.reserve(prompts.size());
  for (const auto& p : prompts) ids.push_back(s.submit(p, options));
  s.run();
  std::vector<RequestResult> out;
  out.reserve(ids.size());
  for (RequestId id : ids) out.push_back(s.take(id));
  return out;
}

}  // namespace runnel

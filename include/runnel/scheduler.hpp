#pragma once
// The batching scheduler: many requests share one model and one paged KV
// cache.  Each step() runs a single batched forward pass over every running
// sequence (one token each) plus chunks of the prompts still being prefilled,
// so sequences join and leave between steps (continuous batching) and a long
// prompt never stalls the others for more than one chunk.
//
// Thread-safety: submit(), cancel() and the query functions may be called from
// any thread; step() / run() must be called from one thread at a time.  Event
// callbacks run on the thread that calls step(), inside it, and must not call
// step() themselves (they may call cancel()).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runnel/dtype.hpp"
#include "runnel/kv_cache.hpp"
#include "runnel/model.hpp"
#include "runnel/sampler.hpp"

namespace runnel {

using RequestId = int64_t;

enum class FinishReason : unsigned char {
  None,        // still running
  Eos,         // an end-of-sequence token
  StopString,  // one of StopOptions::stop_strings
  MaxTokens,   // StopOptions::max_tokens
  Cancelled,   // cancel() or a callback returning false
  Error,       // this sequence failed (context or cache full, bad prompt); see Completion::error
};
const char* to_string(FinishReason r);

struct RequestOptions {
  SamplerOptions sampling;  // temperature 0: greedy
  StopOptions stop;         // max_tokens < 0: until EOS or the context is full
  bool stop_at_eos = true;  // adds the model's and the tokenizer's EOS ids to stop.eos_ids
  int n_samples = 1;        // > 1: sequences forked from one prefill (sample s is seeded seed + s)
  bool text = true;         // detokenize into Event::text / Completion::text (needs a tokenizer)
  bool keep_logits = false;  // Completion::logits gets the logits of every sampling step
  // Start from the kept prefix (SchedulerOptions::keep_prefixes) that shares
  // the most leading tokens with the prompt; false: prefill the whole prompt.
  bool reuse_prefix = true;
  // >= 0: each token's Event carries its log-probability under the model
  // (the log-softmax of the raw logits, before any sampling stage) and that
  // many most likely alternatives (at most 20).
  int logprobs = -1;
};

// One streamed step of one sample.
struct Event {
  RequestId request = -1;
  int sample = 0;
  int32_t token = -1;  // -1 in the final event of a sample that ended without a token
  std::string text;    // text safe to print now (stop strings and EOS are never printed)
  FinishReason finish = FinishReason::None;  // set on the last event of this sample
  std::string error;                         // FinishReason::Error: why
  // RequestOptions::logprobs >= 0, events with a token: its log-probability
  // and the most likely tokens with theirs, most likely first.
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top_logprobs;
};
// Return false to cancel this sample.
using EventCallback = std::function<bool(const Event&)>;

// The outcome of one sample.
struct Completion {
  std::vector<int32_t> tokens;  // generated tokens (an EOS or stop-string token included)
  std::string text;             // printable text (without EOS / stop string)
  FinishReason finish = FinishReason::None;
  std::string error;
  std::vector<float> logits;  // keep_logits: [tokens.size(), vocab]
};

struct RequestResult {
  RequestId id = -1;
  int64_t prompt_tokens = 0;
  std::vector<Completion> samples;
  // Times this request was preempted for want of KV blocks (its blocks freed,
  // its tokens recomputed on readmission); also counted in Stats::preemptions.
  int64_t preemptions = 0;
};

struct SchedulerOptions {
  DType kv_dtype = DType::F32;  // f32 or f16
  int64_t block_size = 16;      // tokens per KV block
  // The context: the longest a sequence may grow (prompt and generated
  // tokens).  ctx_size when > 0; models with learned positions (OPT, below
  // max_position_embeddings) are limited by their table in any case.
  // The KV pool holds kv_cache_mb MiB when > 0, else ctx_size tokens when > 0
  // (shared by every sequence, as llama.cpp's -c), else the model's context
  // (or 4096 tokens) for each of max_sequences sequences, capped at 4 GiB.
  int64_t ctx_size = 0;
  int64_t kv_cache_mb = 0;
  int64_t max_batch_tokens = 512;  // tokens per forward pass (prompt chunks + decodes)
  int max_sequences = 64;          // sequences running at once
  // Finished sequences whose KV blocks stay in the pool (0: none).  A prompt
  // that starts with the tokens one of them holds forks its blocks and runs
  // only the rest, so a conversation that grows by appending costs only the
  // new turn.  They are freed oldest first when the pool runs out, before any
  // running request is preempted.
  int keep_prefixes = 0;
};

class Scheduler {
 public:
  explicit Scheduler(Model& model, const SchedulerOptions& options = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request.  A prompt that is empty, holds ids outside the vocabulary
  // or is longer than the model's context is refused by throwing runnel::Error
  // here.  Problems found later (cache full) end that request with
  // FinishReason::Error, never the process.
  RequestId submit(std::vector<int32_t> prompt, const RequestOptions& options = {},
                   EventCallback on_event = {});
  // Ends every sample of `id` with FinishReason::Cancelled at the next step
  // and frees its blocks.  Unknown or finished ids are ignored.
  void cancel(RequestId id);

  // One batched forward pass and the sampling that follows it.  Returns false
  // when there was nothing to do.
  bool step();
  // Steps until every submitted request has finished.
  void run();

  bool finished(RequestId id) const;
  // Takes the result of a finished request (throws runnel::Error otherwise).
  RequestResult take(RequestId id);
  size_t n_pending() const;  // requests not finished

  struct Stats {
    int64_t steps = 0;
    int64_t prompt_tokens = 0;     // prefilled
    int64_t generated_tokens = 0;  // sampled
    int64_t prefix_tokens = 0;     // prompt tokens found in a kept prefix (not prefilled)
    int64_t preemptions = 0;       // requests preempted for want of KV blocks
    int64_t kv_blocks_used = 0;    // after the last step (running and kept sequences)
    int64_t kv_blocks_kept = 0;    // of those, the distinct blocks kept prefixes hold
    int64_t kept_prefixes = 0;     // finished sequences kept (at most keep_prefixes)
    int64_t kv_blocks_total = 0;
    double forward_s = 0;          // inside Model::forward
    double total_s = 0;            // inside step()
  };
  Stats stats() const;
  const PagedKvCache& cache() const;
  Model& model();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Runs one request through a Scheduler of its own: the library's, and the
// CLI's, way to generate for one prompt.  `on_event` streams it as submit's does.
RequestResult generate(Model& model, std::vector<int32_t> prompt, const RequestOptions& options,
                       const SchedulerOptions& scheduler = {}, EventCallback on_event = {});

// Runs `prompts` together through a Scheduler and returns their results in order.
std::vector<RequestResult> generate_batch(Model& model,
                                          const std::vector<std::vector<int32_t>>& prompts,
                                          const RequestOptions& options,
                                          const SchedulerOptions& scheduler = {});

}  // namespace runnel

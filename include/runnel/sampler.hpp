#pragma once
// Token sampling as a chain of small stateful stages with one interface, and
// the stop conditions of a generation (EOS ids, stop strings, max tokens).
//
// Each stage transforms a set of candidates (id, logit, p): penalties and
// biases change logits, temperature scales them, top-k / top-p / min-p /
// typical-p drop candidates, and a final stage (greedy or dist) selects one.
// Stages run in the order given.  The RNG is owned by the sampler and all the
// distribution code is ours, so a seed gives the same tokens with every
// standard library and thread count.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace runnel {

// xoshiro256** seeded through splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { seed_with(seed); }
  void seed_with(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1), 53 random bits

 private:
  uint64_t s_[4];
};

struct Candidate {
  int32_t id;
  float logit;
  float p;  // valid only after Candidates::softmax()
};

// The working set of a sampling step.
struct Candidates {
  std::vector<Candidate> items;
  size_t n_vocab = 0;
  bool sorted = false;   // by logit, descending (ties: lower id first)
  bool indexed = false;  // items[i].id == i for every i (the full vocabulary, untouched order)
  int32_t selected = -1;

  // The full vocabulary from `logits` (throws runnel::Error on a NaN logit).
  void reset(std::span<const float> logits);
  void sort();              // by logit descending, ties by id: a total order
  void softmax();           // sorts, then p = softmax(logit) over the current items
  void truncate(size_t n);  // keeps the first n items
};

class SamplerStage {
 public:
  virtual ~SamplerStage() = default;
  virtual std::string name() const = 0;
  virtual void apply(Candidates& c, Rng& rng) = 0;
  // Sees every token that enters the context (prompt and chosen tokens).
  virtual void accept(int32_t /*token*/) {}
  virtual void reset() {}
  // True for a stage that sets Candidates::selected; it must come last.
  virtual bool selects() const { return false; }
  virtual std::unique_ptr<SamplerStage> clone() const = 0;
};

namespace sampler {

// Picks the largest logit (the lowest id among ties).
std::unique_ptr<SamplerStage> greedy();
// Draws from softmax(logits) of the remaining candidates.
std::unique_ptr<SamplerStage> dist();
// logit /= t.  t == 0 keeps only the largest logit; t < 0 is an error.
std::unique_ptr<SamplerStage> temperature(float t);
// Keeps the k largest logits; k <= 0 keeps everything.
std::unique_ptr<SamplerStage> top_k(int32_t k);
// Keeps the smallest set of most probable tokens whose mass reaches p (at least min_keep).
std::unique_ptr<SamplerStage> top_p(float p, size_t min_keep = 1);
// Keeps tokens with probability >= p * max probability (at least min_keep).
std::unique_ptr<SamplerStage> min_p(float p, size_t min_keep = 1);
// Locally typical sampling: keeps the tokens whose -log p is closest to the
// entropy until their mass reaches p (at least min_keep).
std::unique_ptr<SamplerStage> typical_p(float p, size_t min_keep = 1);
// Over the last `window` accepted tokens (window < 0: all of them), for a
// token seen `count` > 0 times: logit = logit > 0 ? logit / repeat : logit * repeat,
// then logit -= count * frequency + presence.
std::unique_ptr<SamplerStage> penalties(int32_t window, float repeat, float frequency,
                                        float presence);
// logit[id] += bias (-inf bans a token).  Ids outside the vocabulary are an error
// when the stage is applied.
std::unique_ptr<SamplerStage> logit_bias(std::unordered_map<int32_t, float> bias);

}  // namespace sampler

class Sampler {
 public:
  // The chain runs in the order given.  A selecting stage (greedy, dist) may
  // only come last; without one, the chain ends with dist.
  Sampler(std::vector<std::unique_ptr<SamplerStage>> stages, uint64_t seed);
  Sampler(const Sampler& other);  // clones the stages and the RNG state
  Sampler& operator=(const Sampler& other);
  Sampler(Sampler&&) noexcept = default;
  Sampler& operator=(Sampler&&) noexcept = default;

  // Runs the chain over `logits` [vocab], accepts the chosen token and returns it.
  int32_t sample(std::span<const float> logits);
  // Feeds a token to the stages' history without sampling (prompt tokens).
  void accept(int32_t token);
  void reset(uint64_t seed);  // clears every stage's history and reseeds

  const Candidates& candidates() const { return cand_; }  // the last step's survivors
  std::string describe() const;                           // "top_k -> temperature -> dist"

 private:
  std::vector<std::unique_ptr<SamplerStage>> stages_;
  Rng rng_;
  Candidates cand_;
};

// The usual knobs (llama.cpp's names and neutral values).
struct SamplerOptions {
  uint64_t seed = 0;
  float temperature = 0.8f;     // 0: greedy
  int32_t top_k = 40;           // <= 0: off
  float top_p = 0.95f;          // 1: off
  float min_p = 0.05f;          // 0: off
  float typical_p = 1.0f;       // 1: off
  int32_t penalty_last_n = 64;  // window; -1: the whole context; 0: off
  float repeat_penalty = 1.0f;  // 1: off
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  std::unordered_map<int32_t, float> logit_bias;
  // Stage order as names separated by ';' or ',': logit_bias, penalties,
  // top_k, typical_p, top_p, min_p, temperature.  Stages at their neutral
  // value are left out.
  std::string order = "logit_bias;penalties;top_k;typical_p;top_p;min_p;temperature";
};

// Builds the chain: the stages of `o.order`, then dist (or greedy when
// temperature is 0).  Throws runnel::Error naming the bad option or stage.
Sampler make_sampler(const SamplerOptions& o);

// ---------------------------------------------------------------------------
// Stop conditions

enum class StopReason : unsigned char { None, Eos, StopString, MaxTokens };

struct StopOptions {
  std::vector<int32_t> eos_ids;
  std::vector<std::string> stop_strings;  // non-empty, matched across token boundaries
  int64_t max_tokens = -1;                // < 0: no limit
};

// Watches the generated tokens and their detokenized text.  Text is released
// only once it can no longer be the start of a stop string, so a stop string
// is never printed; neither is an EOS token's text.
class StopCondition {
 public:
  explicit StopCondition(StopOptions options);

  struct Step {
    std::string text;  // safe to print now
    StopReason stop = StopReason::None;
  };
  // One generated token and its text.  After a stop, further calls are an error.
  Step push(int32_t token, std::string_view piece);
  // Releases the held-back text when generation ends for another reason.
  std::string flush();
  void reset();
  int64_t n_tokens() const { return n_; }
  StopReason reason() const { return reason_; }

 private:
  StopOptions o_;
  std::string held_;
  int64_t n_ = 0;
  StopReason reason_ = StopReason::None;
};

}  // namespace runnel

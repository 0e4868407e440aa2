// The sampler chain, its stages and the stop conditions.
#include "runnel/sampler.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <utility>

#include "runnel/error.hpp"

namespace runnel {

// ---------------------------------------------------------------------------
// RNG

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

}  // namespace

void Rng::seed_with(uint64_t seed) {
  for (uint64_t& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return double(next() >> 11) * 0x1.0p-53; }

// ---------------------------------------------------------------------------
// Candidates

void Candidates::reset(std::span<const float> logits) {
  if (logits.empty()) throw Error("sampler: empty logits");
  if (logits.size() > size_t(std::numeric_limits<int32_t>::max()))
    throw Error("sampler: vocabulary too large");
  items.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) throw Error(fmt::format("sampler: the logit of token {} is NaN", i));
    items[i] = {int32_t(i), logits[i], 0.0f};
  }
  n_vocab = logits.size();
  sorted = false;
  indexed = true;
  selected = -1;
}

namespace {
bool before(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}
}  // namespace

void Candidates::sort() {
  if (sorted) return;
  std::sort(items.begin(), items.end(), before);
  sorted = true;
  indexed = false;
}

void Candidates::softmax() {
  if (items.empty()) throw Error("sampler: no candidates left");
  float mx = kNegInf;
  for (const Candidate& c : items) mx = std::max(mx, c.logit);
  if (mx == kNegInf) throw Error("sampler: every candidate has a logit of -inf");
  double sum = 0;
  for (Candidate& c : items) sum += c.p = std::exp(c.logit - mx);
  const float inv = float(1.0 / sum);
  for (Candidate& c : items) c.p *= inv;
}

void Candidates::truncate(size_t n) {
  if (n >= items.size()) return;
  items.resize(n);
  indexed = false;
}

// ---------------------------------------------------------------------------
// Stages

namespace sampler {
namespace {

class Greedy final : public SamplerStage {
 public:
  std::string name() const override { return "greedy"; }
  bool selects() const override { return true; }
  void apply(Candidates& c, Rng&) override {
    if (c.items.empty()) throw Error("sampler: no candidates left");
    const Candidate* best = &c.items[0];
    for (const Candidate& x : c.items)
      if (before(x, *best)) best = &x;
    c.selected = best->id;
  }
  std::unique_ptr<SamplerStage> clone() const override { return std::make_unique<Greedy>(*this); }
};

class Dist final : public SamplerStage {
 public:
  std::string name() const override { return "dist"; }
  bool selects() const override { return true; }
  void apply(Candidates& c, Rng& rng) override {
    c.softmax();
    double total = 0;
    for (const Candidate& x : c.items) total += x.p;
    const double u = rng.uniform() * total;
    double acc = 0;
    int32_t last = -1;
    for (const Candidate& x : c.items) {
      if (x.p <= 0) continue;
      last = x.id;
      acc += x.p;
      if (u < acc) {
        c.selected = x.id;
        return;
      }
    }
    c.selected = last;  // rounding left u just above the sum
  }
  std::unique_ptr<SamplerStage> clone() const override { return std::make_unique<Dist>(*this); }
};

class Temperature final : public SamplerStage {
 public:
  explicit Temperature(float t) : t_(t) {}
  std::string name() const override { return "temperature"; }
  void apply(Candidates& c, Rng&) override {
    if (t_ == 0.0f) {
      if (c.items.empty()) throw Error("sampler: no candidates left");
      size_t best = 0;
      for (size_t i = 1; i < c.items.size(); ++i)
        if (before(c.items[i], c.items[best])) best = i;
      const Candidate keep = c.items[best];
      c.items.assign(1, keep);
      c.indexed = false;
      c.sorted = true;
      return;
    }
    for (Candidate& x : c.items) x.logit /= t_;
  }
  std::unique_ptr<SamplerStage> clone() const override {
    return std::make_unique<Temperature>(*this);
  }

 private:
  float t_;
};

class TopK final : public SamplerStage {
 public:
  explicit TopK(int32_t k) : k_(k) {}
  std::string name() const override { return "top_k"; }
  void apply(Candidates& c, Rng&) override {
    if (k_ <= 0 || size_t(k_) >= c.items.size()) return;
    if (!c.sorted) {
      std::partial_sort(c.items.begin(), c.items.begin() + k_, c.items.end(), before);
      c.sorted = true;
    }
    c.truncate(size_t(k_));
  }
  std::unique_ptr<SamplerStage> clone() const override { return std::make_unique<TopK>(*this); }

 private:
  int32_t k_;
};

class TopP final : public SamplerStage {
 public:
  TopP(float p, size_t min_keep) : p_(p), min_keep_(std::max<size_t>(min_keep, 1)) {}
  std::string name() const override { return "top_p"; }
  void apply(Candidates& c, Rng&) override {
    if (p_ >= 1.0f) return;
    c.softmax();
    // Sort only as much of the head as the mass needs: real distributions are
    // peaked, and a full sort of a large vocabulary costs milliseconds.
    const size_t n = c.items.size();
    for (size_t head = std::min<size_t>(n, 64);; head = std::min(n, head * 8)) {
      if (!c.sorted)
        std::partial_sort(c.items.begin(), c.items.begin() + ptrdiff_t(head), c.items.end(),
                          before);
      double acc = 0;
      for (size_t i = 0; i < head; ++i) {
        acc += c.items[i].p;
        if (acc >= p_ && i + 1 >= min_keep_) {
          c.sorted = true;  // the kept prefix is in order
          c.truncate(i + 1);
          return;
        }
      }
      if (head == n) {
        c.sorted = true;
        return;
      }
    }
  }
  std::unique_ptr<SamplerStage> clone() const override { return std::make_unique<TopP>(*this); }

 private:
  float p_;
  size_t min_keep_;
};

class MinP final : public SamplerStage {
 public:
  MinP(float p, size_t min_keep) : p_(p), min_keep_(std::max<size_t>(min_keep, 1)) {}
  std::string name() const override { return "min_p"; }
  void apply(Candidates& c, Rng&) override {
    if (p_ <= 0.0f) return;
    c.softmax();
    float p_max = 0.0f;
    for (const Candidate& x : c.items) p_max = std::max(p_max, x.p);
    const float threshold = p_max * p_;
    size_t keep = 0;
    for (const Candidate& x : c.items) keep += x.p >= threshold;
    if (keep < min_keep_) {
      c.sort();
      c.truncate(min_keep_);
      return;
    }
    // Order-preserving compaction: deterministic, and keeps `sorted`.
    size_t w = 0;
    for (size_t i = 0; i < c.items.size(); ++i)
      if (c.items[i].p >= threshold) c.items[w++] = c.items[i];
    c.truncate(w);
  }
  std::unique_ptr<SamplerStage> clone() const override { return std::make_unique<MinP>(*this); }

 private:
  float p_;
  size_t min_keep_;
};

class Typical final : public SamplerStage {
 public:
  Typical(float p, size_t min_keep) : p_(p), min_keep_(std::max<size_t>(min_keep, 1)) {}
  std::string name() const override { return "typical_p"; }
  void apply(Candidates& c, Rng&) override {
    if (p_ >= 1.0f) return;
    c.softmax();
    double entropy = 0;
    for (const Candidate& x : c.items)
      if (x.p > 0) entropy -= double(x.p) * std::log(double(x.p));
    scored_.clear();
    for (const Candidate& x : c.items) {
      const double surprise =
          x.p > 0 ? -std::log(double(x.p)) : std::numeric_limits<double>::infinity();
      scored_.push_back({std::fabs(surprise - entropy), x});
    }
    std::sort(scored_.begin(), scored_.end(), [](const Scored& a, const Scored& b) {
      return a.score < b.score || (a.score == b.score && a.c.id < b.c.id);
    });
    double acc = 0;
    size_t keep = scored_.size();
    for (size_t i = 0; i < scored_.size(); ++i) {
      acc += scored_[i].c.p;
      if (acc >= p_ && i + 1 >= min_keep_) {
        keep = i + 1;
        break;
      }
    }
    c.items.clear();
    for (size_t i = 0; i < keep; ++i) c.items.push_back(scored_[i].c);
    c.sorted = false;
    c.indexed = false;
  }
  std::unique_ptr<SamplerStage> clone() const override { return std::make_unique<Typical>(*this); }

 private:
  struct Scored {
    double score;
    Candidate c;
  };
  float p_;
  size_t min_keep_;
  std::vector<Scored> scored_;
};

class Penalties final : public SamplerStage {
 public:
  Penalties(int32_t window, float repeat, float frequency, float presence)
      : window_(window), repeat_(repeat), frequency_(frequency), presence_(presence) {}
  std::string name() const override { return "penalties"; }
  void accept(int32_t token) override {
    if (window_ == 0) return;
    history_.push_back(token);
    ++counts_[token];
    if (window_ > 0 && history_.size() > size_t(window_)) {
      const int32_t old = history_.front();
      history_.pop_front();
      if (--counts_[old] == 0) counts_.erase(old);
    }
  }
  void reset() override {
    history_.clear();
    counts_.clear();
  }
  void apply(Candidates& c, Rng&) override {
    if (counts_.empty()) return;
    if (c.indexed) {
      for (const auto& [id, n] : counts_)
        if (id >= 0 && size_t(id) < c.items.size()) penalise(c.items[size_t(id)], n);
    } else {
      for (Candidate& x : c.items)
        if (auto it = counts_.find(x.id); it != counts_.end()) penalise(x, it->second);
    }
    c.sorted = false;
  }
  std::unique_ptr<SamplerStage> clone() const override {
    return std::make_unique<Penalties>(*this);
  }

 private:
  void penalise(Candidate& x, int n) const {
    x.logit = x.logit > 0 ? x.logit / repeat_ : x.logit * repeat_;
    x.logit -= float(n) * frequency_ + presence_;
  }
  int32_t window_;
  float repeat_, frequency_, presence_;
  std::deque<int32_t> history_;
  std::unordered_map<int32_t, int> counts_;
};

class LogitBias final : public SamplerStage {
 public:
  explicit LogitBias(std::unordered_map<int32_t, float> bias) : bias_(std::move(bias)) {}
  std::string name() const override { return "logit_bias"; }
  void apply(Candidates& c, Rng&) override {
    if (bias_.empty()) return;
    for (const auto& [id, b] : bias_)
      if (id < 0 || size_t(id) >= c.n_vocab)
        throw Error(fmt::format("logit bias: token id {} is outside the vocabulary (size {})", id,
                                c.n_vocab));
    if (c.indexed) {
      for (const auto& [id, b] : bias_) c.items[size_t(id)].logit += b;
    } else {
      for (Candidate& x : c.items)
        if (auto it = bias_.find(x.id); it != bias_.end()) x.logit += it->second;
    }
    c.sorted = false;
  }
  std::unique_ptr<SamplerStage> clone() const override {
    return std::make_unique<LogitBias>(*this);
  }

 private:
  std::unordered_map<int32_t, float> bias_;
};

void check_unit(float p, const char* what, bool zero_ok) {
  if (!std::isfinite(p) || p < 0.0f || p > 1.0f || (!zero_ok && p == 0.0f))
    throw Error(fmt::format("{} must be in {}0, 1], got {}", what, zero_ok ? "[" : "(", p));
}

}  // namespace

std::unique_ptr<SamplerStage> greedy() { return std::make_unique<Greedy>(); }
std::unique_ptr<SamplerStage> dist() { return std::make_unique<Dist>(); }
std::unique_ptr<SamplerStage> temperature(float t) {
  if (!std::isfinite(t) || t < 0.0f)
    throw Error(fmt::format("sampler: temperature must be a finite number >= 0, got {}", t));
  return std::make_unique<Temperature>(t);
}
std::unique_ptr<SamplerStage> top_k(int32_t k) { return std::make_unique<TopK>(k); }
std::unique_ptr<SamplerStage> top_p(float p, size_t min_keep) {
  check_unit(p, "sampler: top_p", false);
  return std::make_unique<TopP>(p, min_keep);
}
std::unique_ptr<SamplerStage> min_p(float p, size_t min_keep) {
  check_unit(p, "sampler: min_p", true);
  return std::make_unique<MinP>(p, min_keep);
}
std::unique_ptr<SamplerStage> typical_p(float p, size_t min_keep) {
  check_unit(p, "sampler: typical_p", false);
  return std::make_unique<Typical>(p, min_keep);
}
std::unique_ptr<SamplerStage> penalties(int32_t window, float repeat, float frequency,
                                        float presence) {
  if (window < -1)
    throw Error(fmt::format("sampler: penalty window must be >= -1, got {}", window));
  if (!std::isfinite(repeat) || repeat <= 0.0f)
    throw Error(fmt::format("sampler: repeat penalty must be a finite number > 0, got {}", repeat));
  if (!std::isfinite(frequency) || !std::isfinite(presence))
    throw Error("sampler: frequency and presence penalties must be finite");
  return std::make_unique<Penalties>(window, repeat, frequency, presence);
}
std::unique_ptr<SamplerStage> logit_bias(std::unordered_map<int32_t, float> bias) {
  for (const auto& [id, b] : bias)
    if (std::isnan(b) || b == std::numeric_limits<float>::infinity())
      throw Error(fmt::format("logit bias for token {}: expected a finite number or -inf", id));
  return std::make_unique<LogitBias>(std::move(bias));
}

}  // namespace sampler

// ---------------------------------------------------------------------------
// Sampler

Sampler::Sampler(std::vector<std::unique_ptr<SamplerStage>> stages, uint64_t seed)
    : stages_(std::move(stages)), rng_(seed) {
  for (size_t i = 0; i < stages_.size(); ++i) {
    if (!stages_[i]) throw Error("sampler: null stage");
    if (stages_[i]->selects() && i + 1 != stages_.size())
      throw Error(fmt::format("sampler: stage \"{}\" selects the token and must be last",
                              stages_[i]->name()));
  }
  if (stages_.empty() || !stages_.back()->selects()) stages_.push_back(sampler::dist());
}

Sampler::Sampler(const Sampler& other) : rng_(other.rng_), cand_(other.cand_) {
  for (const auto& s : other.stages_) stages_.push_back(s->clone());
}

Sampler& Sampler::operator=(const Sampler& other) {
  if (this != &other) *this = Sampler(other);
  return *this;
}

int32_t Sampler::sample(std::span<const float> logits) {
  cand_.reset(logits);
  for (auto& s : stages_) s->apply(cand_, rng_);
  const int32_t id = cand_.selected;
  if (id < 0 || size_t(id) >= logits.size())
    throw Error("sampler: the chain selected no token");  // unreachable with a selecting stage
  accept(id);
  return id;
}

void Sampler::accept(int32_t token) {
  for (auto& s : stages_) s->accept(token);
}

void Sampler::reset(uint64_t seed) {
  for (auto& s : stages_) s->reset();
  rng_.seed_with(seed);
}

std::string Sampler::describe() const {
  std::string out;
  for (const auto& s : stages_) out += (out.empty() ? "" : " -> ") + s->name();
  return out;
}

Sampler make_sampler(const SamplerOptions& o) {
  using namespace sampler;
  if (!std::isfinite(o.temperature) || o.temperature < 0.0f)
    throw Error(fmt::format("--temp: expected a finite number >= 0, got {}", o.temperature));
  // Every knob is checked, also when its stage is absent from the order.
  check_unit(o.top_p, "--top-p", false);
  check_unit(o.min_p, "--min-p", true);
  check_unit(o.typical_p, "--typical", false);
  penalties(o.penalty_last_n, o.repeat_penalty, o.frequency_penalty, o.presence_penalty);
  logit_bias(o.logit_bias);
  std::vector<std::unique_ptr<SamplerStage>> chain;
  std::vector<std::string> seen;
  size_t pos = 0;
  const std::string& s = o.order;
  while (pos <= s.size()) {
    size_t end = s.find_first_of(";,", pos);
    if (end == std::string::npos) end = s.size();
    std::string name = s.substr(pos, end - pos);
    pos = end + 1;
    name.erase(0, name.find_first_not_of(" \t"));
    name.erase(name.find_last_not_of(" \t") + 1);
    if (name.empty()) continue;
    if (std::find(seen.begin(), seen.end(), name) != seen.end())
      throw Error(fmt::format("sampler order: stage \"{}\" is listed twice", name));
    seen.push_back(name);
    // Greedy: top_k, top_p and min_p always keep the largest logit and
    // temperature does not move it, so they are left out.
    const bool greedy_skips =
        name == "top_k" || name == "top_p" || name == "min_p" || name == "temperature";
    if (o.temperature == 0.0f && greedy_skips) continue;
    if (name == "logit_bias") {
      if (!o.logit_bias.empty()) chain.push_back(logit_bias(o.logit_bias));
    } else if (name == "penalties") {
      if (o.penalty_last_n != 0 &&
          (o.repeat_penalty != 1.0f || o.frequency_penalty != 0.0f || o.presence_penalty != 0.0f))
        chain.push_back(
            penalties(o.penalty_last_n, o.repeat_penalty, o.frequency_penalty, o.presence_penalty));
    } else if (name == "top_k") {
      if (o.top_k > 0) chain.push_back(top_k(o.top_k));
    } else if (name == "typical_p") {
      if (o.typical_p < 1.0f) chain.push_back(typical_p(o.typical_p));
    } else if (name == "top_p") {
      if (o.top_p < 1.0f) chain.push_back(top_p(o.top_p));
    } else if (name == "min_p") {
      if (o.min_p > 0.0f) chain.push_back(min_p(o.min_p));
    } else if (name == "temperature") {
      if (o.temperature > 0.0f && o.temperature != 1.0f)
        chain.push_back(temperature(o.temperature));
    } else {
      throw Error(
          fmt::format("sampler order: unknown stage \"{}\" (expected logit_bias, penalties, top_k, "
                      "typical_p, top_p, min_p, temperature)",
                      name));
    }
  }
  if (o.temperature == 0.0f)
    chain.push_back(greedy());
  else
    chain.push_back(dist());
  return Sampler(std::move(chain), o.seed);
}

// ---------------------------------------------------------------------------
// Stop conditions

StopCondition::StopCondition(StopOptions options) : o_(std::move(options)) {
  for (size_t i = 0; i < o_.stop_strings.size(); ++i)
    if (o_.stop_strings[i].empty()) throw Error(fmt::format("stop strings: entry {} is empty", i));
}

StopCondition::Step StopCondition::push(int32_t token, std::string_view piece) {
  if (reason_ != StopReason::None) throw Error("stop condition: token pushed after a stop");
  Step step;
  ++n_;
  if (std::find(o_.eos_ids.begin(), o_.eos_ids.end(), token) != o_.eos_ids.end()) {
    step.text = std::move(held_);
    held_.clear();
    step.stop = reason_ = StopReason::Eos;
    return step;
  }
  held_.append(piece);
  // The earliest complete match of any stop string.
  size_t match = std::string::npos;
  for (const std::string& s : o_.stop_strings) match = std::min(match, held_.find(s));
  if (match != std::string::npos) {
    step.text = held_.substr(0, match);
    held_.clear();
    step.stop = reason_ = StopReason::StopString;
    return step;
  }
  if (o_.max_tokens >= 0 && n_ >= o_.max_tokens) {
    step.text = std::move(held_);
    held_.clear();
    step.stop = reason_ = StopReason::MaxTokens;
    return step;
  }
  // Hold back the longest suffix that could still grow into a stop string.
  size_t keep_from = held_.size();
  for (size_t i = 0; i < held_.size() && keep_from == held_.size(); ++i) {
    const std::string_view tail = std::string_view(held_).substr(i);
    for (const std::string& s : o_.stop_strings)
      if (s.size() > tail.size() && s.compare(0, tail.size(), tail) == 0) {
        keep_from = i;
        break;
      }
  }
  step.text = held_.substr(0, keep_from);
  held_.erase(0, keep_from);
  return step;
}

std::string StopCondition::flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

void StopCondition::reset() {
  held_.clear();
  n_ = 0;
  reason_ = StopReason::None;
}

}  // namespace runnel

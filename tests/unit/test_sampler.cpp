// Sampler stages against their exact distributions, determinism of the seeded
// RNG, and stop conditions.
//
// Statistical tests: N = 20000 draws on a fixed vocabulary of 8 tokens; a
// Pearson chi-square goodness-of-fit test against the exact probabilities of
// the surviving tokens (every expected count >= 5) fails when its p-value is
// below 1e-4.  Tokens the stage must remove are checked to never appear.  The
// RNG seeds are fixed, so each test is deterministic; a wrong distribution is
// rejected (see ChiSquareHasPower).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "runnel/error.hpp"
#include "runnel/sampler.hpp"

namespace runnel {
namespace {

constexpr double kSignificance = 1e-4;
constexpr int kDraws = 20000;
const std::vector<float> kLogits = {2.0f, 1.5f, 1.2f, 0.7f, 0.3f, -0.4f, -1.0f, -2.5f};

// Regularised upper incomplete gamma Q(a, x): series for x < a + 1, Lentz's
// continued fraction otherwise.
double gamma_q(double a, double x) {
  if (x <= 0) return 1.0;
  const double lead = std::exp(-x + a * std::log(x) - std::lgamma(a));
  if (x < a + 1) {
    double term = 1.0 / a, sum = term;
    for (int n = 1; n < 1000; ++n) {
      term *= x / (a + n);
      sum += term;
      if (std::fabs(term) < std::fabs(sum) * 1e-16) break;
    }
    return 1.0 - sum * lead;
  }
  const double tiny = 1e-300;
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < 1e-16) break;
  }
  return lead * h;
}

template <class... S>
std::vector<std::unique_ptr<SamplerStage>> chain(S&&... stages) {
  std::vector<std::unique_ptr<SamplerStage>> v;
  (v.push_back(std::forward<S>(stages)), ...);
  return v;
}

double chi2_pvalue(double stat, int dof) { return gamma_q(dof / 2.0, stat / 2.0); }

std::vector<double> softmax(const std::vector<double>& l) {
  const double mx = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double s = 0;
  for (size_t i = 0; i < l.size(); ++i) s += p[i] = std::isinf(l[i]) ? 0.0 : std::exp(l[i] - mx);
  for (double& x : p) x /= s;
  return p;
}

std::vector<double> as_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Softmax restricted to `keep` (the other tokens get 0).
std::vector<double> restricted(const std::vector<double>& l, const std::vector<int>& keep) {
  std::vector<double> m(l.size(), -std::numeric_limits<double>::infinity());
  for (int i : keep) m[size_t(i)] = l[size_t(i)];
  return softmax(m);
}

// Draws kDraws tokens through `stages` followed by dist, without accepting them
// (so stateful stages stay put), and tests the counts against `expected`.
void expect_distribution(std::vector<SamplerStage*> stages, const std::vector<float>& logits,
                         const std::vector<double>& expected, uint64_t seed = 1234) {
  Rng rng(seed);
  auto final_stage = sampler::dist();
  std::vector<int> counts(logits.size(), 0);
  Candidates c;
  for (int i = 0; i < kDraws; ++i) {
    c.reset(logits);
    for (SamplerStage* s : stages) s->apply(c, rng);
    final_stage->apply(c, rng);
    ASSERT_GE(c.selected, 0);
    ASSERT_LT(size_t(c.selected), logits.size());
    ++counts[size_t(c.selected)];
  }
  double stat = 0;
  int bins = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (expected[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " must never be drawn";
      continue;
    }
    const double e = expected[i] * kDraws;
    ASSERT_GE(e, 5.0) << "test design: expected count of token " << i << " too small";
    stat += (counts[i] - e) * (counts[i] - e) / e;
    ++bins;
  }
  if (bins == 1) return;  // one possible token: the zero checks above are the test
  const double p = chi2_pvalue(stat, bins - 1);
  EXPECT_GT(p, kSignificance) << "chi-square " << stat << " with " << bins - 1 << " dof";
}

TEST(SamplerStats, IncompleteGammaMatchesTables) {
  // Critical values from standard chi-square tables.
  EXPECT_NEAR(chi2_pvalue(3.841459, 1), 0.05, 1e-6);
  EXPECT_NEAR(chi2_pvalue(18.307038, 10), 0.05, 1e-6);
  EXPECT_NEAR(chi2_pvalue(24.321886, 7), 0.001, 1e-7);
  EXPECT_NEAR(chi2_pvalue(16.266236, 3), 0.001, 1e-7);
  EXPECT_NEAR(chi2_pvalue(2.0, 2), std::exp(-1.0), 1e-12);  // Q(1, x) = e^-x
  EXPECT_NEAR(chi2_pvalue(100.0, 3), 0.0, 1e-15);
}

TEST(SamplerStats, ChiSquareHasPower) {
  // Draws at temperature 1 tested against the temperature-1.3 distribution:
  // the helper's statistic must reject it.
  Rng rng(7);
  auto d = sampler::dist();
  std::vector<int> counts(kLogits.size(), 0);
  Candidates c;
  for (int i = 0; i < kDraws; ++i) {
    c.reset(kLogits);
    d->apply(c, rng);
    ++counts[size_t(c.selected)];
  }
  std::vector<double> l = as_double(kLogits);
  for (double& x : l) x /= 1.3;
  const std::vector<double> wrong = softmax(l);
  double stat = 0;
  for (size_t i = 0; i < wrong.size(); ++i)
    stat += (counts[i] - wrong[i] * kDraws) * (counts[i] - wrong[i] * kDraws) / (wrong[i] * kDraws);
  EXPECT_LT(chi2_pvalue(stat, 7), kSignificance);
}

TEST(SamplerStats, Dist) { expect_distribution({}, kLogits, softmax(as_double(kLogits))); }

TEST(SamplerStats, Temperature) {
  // A cold temperature on a flatter vocabulary, so every expected count stays >= 5.
  const std::vector<float> flat = {1.0f, 0.6f, 0.2f, -0.3f, 0.0f};
  for (auto [t, logits] : {std::pair{0.5f, flat}, std::pair{1.7f, kLogits}}) {
    auto s = sampler::temperature(t);
    std::vector<double> l = as_double(logits);
    for (double& x : l) x /= t;
    expect_distribution({s.get()}, logits, softmax(l));
  }
}

TEST(SamplerStats, TemperatureZeroKeepsTheMaximum) {
  auto s = sampler::temperature(0.0f);
  std::vector<double> e(kLogits.size(), 0.0);
  e[0] = 1.0;
  expect_distribution({s.get()}, kLogits, e);
  EXPECT_THROW(sampler::temperature(-1.0f), Error);
}

TEST(SamplerStats, TopK) {
  auto s = sampler::top_k(3);
  expect_distribution({s.get()}, kLogits, restricted(as_double(kLogits), {0, 1, 2}));
  auto off = sampler::top_k(0);
  expect_distribution({off.get()}, kLogits, softmax(as_double(kLogits)));
}

TEST(SamplerStats, TopP) {
  // Sorted probabilities 0.376, 0.228, 0.169, 0.102, ...: the cumulative mass
  // first reaches 0.8 at the fourth token (0.874).
  auto s = sampler::top_p(0.8f);
  expect_distribution({s.get()}, kLogits, restricted(as_double(kLogits), {0, 1, 2, 3}));
  // min_keep wins over a tiny p.
  auto k = sampler::top_p(0.01f, 2);
  expect_distribution({k.get()}, kLogits, restricted(as_double(kLogits), {0, 1}));
}

TEST(SamplerStats, MinP) {
  // Threshold 0.2 * 0.376 = 0.075: tokens 0..3 (0.102 passes, 0.069 does not).
  auto s = sampler::min_p(0.2f);
  expect_distribution({s.get()}, kLogits, restricted(as_double(kLogits), {0, 1, 2, 3}));
}

TEST(SamplerStats, TypicalP) {
  // Entropy 1.635 nats; |-log p - H| orders the tokens 2, 1, 3, 0, 4, ...
  // with cumulative mass 0.169, 0.397, 0.499: p = 0.45 keeps {2, 1, 3}.
  auto s = sampler::typical_p(0.45f);
  expect_distribution({s.get()}, kLogits, restricted(as_double(kLogits), {1, 2, 3}));
}

TEST(SamplerStats, Penalties) {
  // History (window 4): 1 (ignored, falls out of the window), then 0, 3, 3, 6.
  auto s = sampler::penalties(4, 1.5f, 0.25f, 0.5f);
  for (int32_t t : {1, 0, 3, 3, 6}) s->accept(t);
  std::vector<double> l = as_double(kLogits);
  auto pen = [&](int id, int count) {
    l[size_t(id)] = l[size_t(id)] > 0 ? l[size_t(id)] / 1.5 : l[size_t(id)] * 1.5;
    l[size_t(id)] -= count * 0.25 + 0.5;
  };
  pen(0, 1);
  pen(3, 2);
  pen(6, 1);
  expect_distribution({s.get()}, kLogits, softmax(l));

  // The exact logits, on an unsorted and on a sorted candidate set.
  for (bool sorted : {false, true}) {
    Candidates c;
    c.reset(kLogits);
    if (sorted) c.sort();
    Rng rng(0);
    s->apply(c, rng);
    for (const Candidate& x : c.items) EXPECT_FLOAT_EQ(x.logit, float(l[size_t(x.id)])) << x.id;
  }
}

TEST(SamplerStats, LogitBias) {
  auto s =
      sampler::logit_bias({{1, 1.0f}, {0, -std::numeric_limits<float>::infinity()}, {7, 2.0f}});
  std::vector<double> l = as_double(kLogits);
  l[1] += 1.0;
  l[0] = -std::numeric_limits<double>::infinity();
  l[7] += 2.0;
  expect_distribution({s.get()}, kLogits, softmax(l));
  auto bad = sampler::logit_bias({{8, 1.0f}});
  Candidates c;
  c.reset(kLogits);
  Rng rng(0);
  EXPECT_THROW(bad->apply(c, rng), Error);
}

TEST(SamplerStats, OrderMatters) {
  // temperature 3 then min_p 0.5: flattened probabilities keep more tokens
  // than min_p 0.5 then temperature 3.
  auto t = sampler::temperature(3.0f);
  auto m = sampler::min_p(0.5f);
  std::vector<double> flat = as_double(kLogits);
  for (double& x : flat) x /= 3.0;
  // p_i / p_max >= 0.5 <=> l_max - l_i <= 3 ln 2 = 2.08 (after) or ln 2 = 0.69 (before).
  expect_distribution({t.get(), m.get()}, kLogits, restricted(flat, {0, 1, 2, 3, 4}));
  expect_distribution({m.get(), t.get()}, kLogits, restricted(flat, {0, 1}));
}

TEST(SamplerStats, ChainOfEveryStage) {
  auto bias = sampler::logit_bias({{2, 0.5f}});
  auto pen = sampler::penalties(-1, 1.3f, 0.0f, 0.0f);
  pen->accept(0);
  auto k = sampler::top_k(6);
  auto p = sampler::top_p(0.9f);
  auto t = sampler::temperature(1.5f);
  std::vector<double> l = as_double(kLogits);
  l[2] += 0.5;  // 1.7
  l[0] /= 1.3;  // 1.538...
  // top_k 6 drops ids 6, 7; top_p 0.9 over the remaining six.
  std::vector<double> p6 = restricted(l, {0, 1, 2, 3, 4, 5});
  std::vector<int> order = {0, 1, 2, 3, 4, 5};
  std::sort(order.begin(), order.end(), [&](int a, int b) { return l[size_t(a)] > l[size_t(b)]; });
  std::vector<int> keep;
  double acc = 0;
  for (int i : order) {
    keep.push_back(i);
    acc += p6[size_t(i)];
    if (acc >= 0.9) break;
  }
  for (double& x : l) x /= 1.5;
  expect_distribution({bias.get(), pen.get(), k.get(), p.get(), t.get()}, kLogits,
                      restricted(l, keep));
}

TEST(Sampler, GreedyPicksLowestIdAmongTies) {
  Sampler s(chain(sampler::greedy()), 0);
  EXPECT_EQ(s.sample(std::vector<float>{0.5f, 2.0f, 2.0f, 1.0f}), 1);
  EXPECT_EQ(s.sample(kLogits), 0);
  EXPECT_THROW(Sampler(chain(sampler::greedy(), sampler::top_k(2)), 0), Error);
  EXPECT_THROW(s.sample(std::vector<float>{0.0f, std::nanf("")}), Error);
  Sampler banned(chain(sampler::logit_bias({{0, -std::numeric_limits<float>::infinity()}})), 0);
  EXPECT_THROW(banned.sample(std::vector<float>{1.0f}), Error);
}

TEST(Sampler, RngGoldenValues) {
  // xoshiro256** seeded by splitmix64, computed independently.
  Rng a(0), b(42);
  EXPECT_EQ(a.next(), 0x99ec5f36cb75f2b4ull);
  EXPECT_EQ(a.next(), 0xbf6e1f784956452aull);
  EXPECT_EQ(a.next(), 0x1a5f849d4933e6e0ull);
  EXPECT_EQ(b.next(), 0x15780b2e0c2ec716ull);
  EXPECT_EQ(b.next(), 0x6104d9866d113a7eull);
  Rng u(3);
  for (int i = 0; i < 1000; ++i) {
    const double x = u.uniform();
    ASSERT_GE(x, 0.0);
    ASSERT_LT(x, 1.0);
  }
}

std::vector<int32_t> run(Sampler s, int n) {
  // Logits that depend on the previous token, like a model's.
  std::vector<int32_t> out;
  std::vector<float> logits(64);
  int32_t prev = 0;
  for (int i = 0; i < n; ++i) {
    for (size_t j = 0; j < logits.size(); ++j)
      logits[j] = std::sin(float(j * 7 + size_t(prev) * 3)) * 2.0f;
    prev = s.sample(logits);
    out.push_back(prev);
  }
  return out;
}

TEST(Sampler, SameSeedSameTokens) {
  SamplerOptions o;
  o.seed = 1234;
  o.repeat_penalty = 1.1f;
  o.frequency_penalty = 0.1f;
  o.top_k = 20;
  o.top_p = 0.9f;
  o.min_p = 0.02f;
  o.typical_p = 0.95f;
  o.temperature = 0.9f;
  const auto a = run(make_sampler(o), 300);
  const auto b = run(make_sampler(o), 300);
  EXPECT_EQ(a, b);
  o.seed = 1235;
  const auto c = run(make_sampler(o), 300);
  EXPECT_NE(a, c);
  // Enough distinct tokens that "different" is meaningful.
  std::vector<int32_t> u = a;
  std::sort(u.begin(), u.end());
  EXPECT_GT(std::unique(u.begin(), u.end()) - u.begin(), 10);
}

TEST(Sampler, CopyContinuesIdentically) {
  SamplerOptions o;
  o.seed = 99;
  o.repeat_penalty = 1.2f;
  Sampler s = make_sampler(o);
  std::vector<float> logits(kLogits);
  for (int i = 0; i < 17; ++i) s.sample(logits);
  Sampler copy(s);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(logits), copy.sample(logits)) << i;
  s.reset(5);
  Sampler fresh = make_sampler(o);
  fresh.reset(5);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(logits), fresh.sample(logits)) << i;
}

TEST(Sampler, MakeSamplerOrderAndValidation) {
  SamplerOptions o;
  EXPECT_EQ(make_sampler(o).describe(), "top_k -> top_p -> min_p -> temperature -> dist");
  o.temperature = 0.0f;
  o.repeat_penalty = 1.1f;
  EXPECT_EQ(make_sampler(o).describe(), "penalties -> greedy");
  o.typical_p = 0.5f;  // typical sampling can drop the most likely token: it stays
  EXPECT_EQ(make_sampler(o).describe(), "penalties -> typical_p -> greedy");
  o.typical_p = 1.0f;
  o.temperature = 0.7f;
  o.order = "temperature; min_p,top_k";
  EXPECT_EQ(make_sampler(o).describe(), "temperature -> min_p -> top_k -> dist");
  o.order = "top_k;top_x";
  EXPECT_THROW(make_sampler(o), Error);
  o.order = "top_k;top_k";
  EXPECT_THROW(make_sampler(o), Error);
  o.order = "top_k";
  o.top_p = 1.5f;
  EXPECT_THROW(make_sampler(o), Error);
  o.top_p = 0.9f;
  o.repeat_penalty = 0.0f;
  EXPECT_THROW(make_sampler(o), Error);
  o.repeat_penalty = 1.0f;
  o.temperature = -0.1f;
  EXPECT_THROW(make_sampler(o), Error);
}

TEST(Sampler, PenaltyWindowSlides) {
  // Greedy with a strong presence penalty over the last 2 tokens cycles
  // through the three best tokens.
  Sampler s(chain(sampler::penalties(2, 1.0f, 0.0f, 10.0f), sampler::greedy()), 0);
  std::vector<int32_t> got;
  for (int i = 0; i < 6; ++i) got.push_back(s.sample(kLogits));
  EXPECT_EQ(got, (std::vector<int32_t>{0, 1, 2, 0, 1, 2}));
  // Prompt tokens count too.
  Sampler t(chain(sampler::penalties(2, 1.0f, 0.0f, 10.0f), sampler::greedy()), 0);
  t.accept(0);
  EXPECT_EQ(t.sample(kLogits), 1);
}

// ---------------------------------------------------------------------------
// Stop conditions

struct Emitted {
  std::string text;
  StopReason stop = StopReason::None;
};

Emitted feed(StopCondition& sc, const std::vector<std::pair<int32_t, std::string>>& tokens) {
  Emitted e;
  for (const auto& [id, piece] : tokens) {
    StopCondition::Step s = sc.push(id, piece);
    e.text += s.text;
    if (s.stop != StopReason::None) {
      e.stop = s.stop;
      return e;
    }
  }
  e.text += sc.flush();
  return e;
}

TEST(StopCondition, StopStringAcrossThreeTokens) {
  StopCondition sc({{}, {"</end>"}, -1});
  auto s1 = sc.push(1, "Hello <");
  EXPECT_EQ(s1.text, "Hello ");  // "<" may start the stop string
  auto s2 = sc.push(2, "/e");
  EXPECT_EQ(s2.text, "");
  auto s3 = sc.push(3, "nd>tail");
  EXPECT_EQ(s3.text, "");
  EXPECT_EQ(s3.stop, StopReason::StopString);
  EXPECT_THROW(sc.push(4, "x"), Error);
}

TEST(StopCondition, AbandonedPartialMatchIsReleased) {
  StopCondition sc({{}, {"###"}, -1});
  auto s1 = sc.push(1, "a#");
  EXPECT_EQ(s1.text, "a");
  auto s2 = sc.push(2, "#");
  EXPECT_EQ(s2.text, "");
  auto s3 = sc.push(3, "b#");
  EXPECT_EQ(s3.text, "##b");  // the partial match broke; the last '#' waits again
  EXPECT_EQ(s3.stop, StopReason::None);
  EXPECT_EQ(sc.flush(), "#");
}

TEST(StopCondition, OverlappingAndMultipleStrings) {
  StopCondition a({{}, {"abc"}, -1});
  Emitted e = feed(a, {{1, "aab"}, {2, "c d"}});
  EXPECT_EQ(e.text, "a");
  EXPECT_EQ(e.stop, StopReason::StopString);
  StopCondition b({{}, {"yz", "x"}, -1});
  e = feed(b, {{1, "wy"}, {2, "xyz"}});
  EXPECT_EQ(e.text, "wy");  // "x" at 2 comes before "yz" at 3
  StopCondition c({{}, {"stop"}, -1});
  e = feed(c, {{1, "no s"}, {2, "to"}, {3, "p"}});
  EXPECT_EQ(e.text, "no ");
  EXPECT_THROW(StopCondition({{}, {""}, -1}), Error);
}

TEST(StopCondition, EosAndMaxTokens) {
  StopCondition a({{2, 7}, {"END"}, -1});
  Emitted e = feed(a, {{1, "x E"}, {7, "<eos>"}});
  EXPECT_EQ(e.text, "x E");  // held "E" released, EOS text never printed
  EXPECT_EQ(e.stop, StopReason::Eos);
  StopCondition b({{}, {"END"}, 3});
  e = feed(b, {{1, "a"}, {1, "b"}, {1, "cE"}, {1, "ND"}});
  EXPECT_EQ(e.text, "abcE");
  EXPECT_EQ(e.stop, StopReason::MaxTokens);
  EXPECT_EQ(b.n_tokens(), 3);
  StopCondition c({{}, {"END"}, 2});
  e = feed(c, {{1, "a"}, {1, "END"}});
  EXPECT_EQ(e.stop, StopReason::StopString);  // the stop string wins on the last token
  EXPECT_EQ(e.text, "a");
  c.reset();
  e = feed(c, {{1, "q"}});
  EXPECT_EQ(e.text, "q");
}

}  // namespace
}  // namespace runnel

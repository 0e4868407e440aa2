// The batched forward pass and the scheduler: results must equal running each
// sequence alone, whatever joins, leaves, is chunked, forked or preempted.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "runnel/config.hpp"
#include "runnel/kv_cache.hpp"
#include "runnel/model.hpp"
#include "runnel/scheduler.hpp"
#include "test_util.hpp"

namespace runnel {
namespace {

namespace fs = std::filesystem;

// The batched pass mixes rows of several sequences in one product, so the
// matmul path (small-batch kernel or blocked) can differ from the solo run.
constexpr double kTol = 2e-5;

std::unique_ptr<Model> load(const std::string& variant) {
  LoadOptions o;
  o.threads = 2;
  return Model::load((fs::path(RUNNEL_TEST_DATA_DIR) / "models" / variant).string(), o);
}

std::vector<int32_t> tokens(size_t n, uint32_t seed, int32_t vocab) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = int32_t(rng() % uint32_t(vocab));
  return t;
}

struct Solo {
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // [tokens.size(), vocab]
};

// Greedy generation of one sequence alone, through Sequence.
Solo solo_greedy(Model& m, const std::vector<int32_t>& prompt, int n, DType kv = DType::F32) {
  Sequence seq(m, kv);
  Solo out;
  std::vector<float> logits = seq.prefill(prompt);
  for (int i = 0; i < n; ++i) {
    out.logits.insert(out.logits.end(), logits.begin(), logits.end());
    const int32_t t = argmax(logits);
    out.tokens.push_back(t);
    if (i + 1 < n) logits = seq.decode(t);
  }
  return out;
}

RequestOptions greedy(int n) {
  RequestOptions o;
  o.sampling.temperature = 0.0f;
  o.stop.max_tokens = n;
  o.stop_at_eos = false;
  o.keep_logits = true;
  o.text = false;
  return o;
}

class Batched : public ::testing::TestWithParam<const char*> {};

TEST_P(Batched, ForwardOfManyItemsEqualsSeparateForwards) {
  auto m = load(GetParam());
  const int32_t V = int32_t(m->config().vocab_size);
  const std::vector<std::vector<int32_t>> ids = {tokens(5, 1, V), tokens(1, 2, V),
                                                 tokens(19, 3, V)};
  // Separate: each sequence from position 0, all logits and hidden states.
  std::vector<std::vector<float>> want_l(ids.size()), want_h(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    auto c = m->new_cache();
    Model::BatchItem it;
    it.cache = c.get();
    it.ids = ids[i];
    it.which = Logits::All;
    it.logits = &want_l[i];
    it.hidden = &want_h[i];
    m->forward(std::span<const Model::BatchItem>(&it, 1));
    ASSERT_EQ(want_h[i].size(), ids[i].size() * size_t(m->config().embed_dim));
  }
  // Together, with a mix of All, Last and nothing wanted.
  std::vector<std::unique_ptr<KvCache>> caches;
  std::vector<std::vector<float>> got_l(ids.size()), got_h(ids.size());
  std::vector<Model::BatchItem> items(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    caches.push_back(m->new_cache());
    items[i].cache = caches.back().get();
    items[i].ids = ids[i];
    items[i].which = i == 0 ? Logits::All : Logits::Last;
    items[i].logits = &got_l[i];
    items[i].hidden = i == 1 ? nullptr : &got_h[i];
  }
  m->forward(items);
  const size_t Vs = size_t(V), E = size_t(m->config().embed_dim);
  EXPECT_LT(test::norm_err(got_l[0], want_l[0]), kTol);
  EXPECT_LT(test::norm_err(got_h[0], want_h[0]), kTol);
  for (size_t i = 1; i < ids.size(); ++i) {
    ASSERT_EQ(got_l[i].size(), Vs);
    const std::vector<float> last(want_l[i].end() - ptrdiff_t(Vs), want_l[i].end());
    EXPECT_LT(test::norm_err(got_l[i], last), kTol) << "item " << i;
  }
  EXPECT_TRUE(got_h[1].empty());
  const std::vector<float> last_h(want_h[2].end() - ptrdiff_t(E), want_h[2].end());
  EXPECT_LT(test::norm_err(got_h[2], last_h), kTol);
}

void scheduler_equals_each_sequence_alone(const char* variant, DType kv) {
  auto m = load(variant);
  const int32_t V = int32_t(m->config().vocab_size);
  const int n_new = 10;
  const std::vector<size_t> lengths = {3, 17, 40, 1, 9, 26};
  std::vector<std::vector<int32_t>> prompts;
  std::vector<Solo> want;
  for (size_t i = 0; i < lengths.size(); ++i) {
    prompts.push_back(tokens(lengths[i], 100 + uint32_t(i), V));
    want.push_back(solo_greedy(*m, prompts.back(), n_new, kv));
  }
  SchedulerOptions so;
  so.kv_dtype = kv;
  so.max_batch_tokens = 8;  // prompts of 17, 26 and 40 tokens are chunked
  // Dynamic NTK scaling rotates each pass's keys with frequencies of the
  // length reached in that pass (as transformers does), so results depend on
  // how a prompt is split: compare it without chunking, and with a pool large
  // enough that nothing is preempted and recomputed (its 16-token trained
  // context would give a default pool of 4 blocks).
  if (m->config().rope.scaling == RopeScaling::Dynamic) {
    so.max_batch_tokens = 4096;
    so.kv_cache_mb = 16;
  }
  so.max_sequences = 4;     // the last two wait for a free slot
  Scheduler s(*m, so);
  std::vector<RequestId> ids;
  // Two join first; the others join while those run.
  for (size_t i = 0; i < 2; ++i) ids.push_back(s.submit(prompts[i], greedy(n_new)));
  for (int k = 0; k < 3; ++k) ASSERT_TRUE(s.step());
  for (size_t i = 2; i < prompts.size(); ++i) {
    ids.push_back(s.submit(prompts[i], greedy(n_new)));
    s.step();
  }
  s.run();
  EXPECT_EQ(s.n_pending(), 0u);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const RequestResult r = s.take(ids[i]);
    ASSERT_EQ(r.samples.size(), 1u);
    const Completion& c = r.samples[0];
    EXPECT_EQ(c.finish, FinishReason::MaxTokens);
    EXPECT_EQ(c.tokens, want[i].tokens) << "prompt " << i;
    EXPECT_LT(test::norm_err(c.logits, want[i].logits), kTol) << "prompt " << i;
    EXPECT_EQ(r.prompt_tokens, int64_t(prompts[i].size()));
  }
  EXPECT_EQ(s.cache().free_blocks(), s.cache().n_blocks());
  s.cache().check_consistency();
  const Scheduler::Stats st = s.stats();
  EXPECT_EQ(st.generated_tokens, int64_t(prompts.size()) * n_new);
  EXPECT_GT(st.forward_s, 0.0);
  EXPECT_GE(st.total_s, st.forward_s);
}

// With an f32 and with an f16 KV cache (each against a solo run with the
// same cache dtype).
TEST_P(Batched, SchedulerEqualsEachSequenceAlone) {
  for (DType kv : {DType::F32, DType::F16}) {
    SCOPED_TRACE(kv == DType::F16 ? "f16 KV cache" : "f32 KV cache");
    scheduler_equals_each_sequence_alone(GetParam(), kv);
  }
}

TEST_P(Batched, PreemptionUnderATinyCacheKeepsResults) {
  auto m = load(GetParam());
  if (m->config().rope.scaling == RopeScaling::Dynamic)
    GTEST_SKIP() << "dynamic NTK scaling depends on how tokens are split into passes, and a "
                    "preempted sequence recomputes its tokens in one pass";
  const int32_t V = int32_t(m->config().vocab_size);
  const int n_new = 24;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<Solo> want;
  for (uint32_t i = 0; i < 5; ++i) {
    prompts.push_back(tokens(12 + 5 * i, 200 + i, V));
    want.push_back(solo_greedy(*m, prompts.back(), n_new));
  }
  SchedulerOptions so;
  so.block_size = 4;
  so.ctx_size = 96;  // 24 blocks: the five sequences need up to 17 blocks each
  so.max_batch_tokens = 16;
  Scheduler s(*m, so);
  std::vector<RequestId> ids;
  for (const auto& p : prompts) ids.push_back(s.submit(p, greedy(n_new)));
  s.run();
  for (size_t i = 0; i < prompts.size(); ++i) {
    const RequestResult r = s.take(ids[i]);
    const Completion& c = r.samples[0];
    EXPECT_EQ(c.finish, FinishReason::MaxTokens) << c.error;
    EXPECT_EQ(c.tokens, want[i].tokens) << "prompt " << i;
    EXPECT_LT(test::norm_err(c.logits, want[i].logits), kTol) << "prompt " << i;
  }
  EXPECT_EQ(s.cache().free_blocks(), s.cache().n_blocks());
  EXPECT_GT(s.stats().preemptions, 0);  // the pool is too small for all five at once
  s.cache().check_consistency();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Batched,
                         ::testing::Values("llama-gqa-tied-llama3", "llama-dynamic-headdim",
                                           "bloom-6heads", "opt-350m-style"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

TEST(Scheduler, ForkedSamplesEqualSeparateRequests) {
  auto m = load("llama-mha");
  const int32_t V = int32_t(m->config().vocab_size);
  const std::vector<int32_t> prompt = tokens(21, 7, V);
  RequestOptions o;
  o.sampling.temperature = 1.5f;
  o.sampling.top_k = 0;
  o.sampling.top_p = 1.0f;
  o.sampling.min_p = 0.0f;
  o.sampling.seed = 42;
  o.stop.max_tokens = 12;
  o.stop_at_eos = false;
  o.text = false;
  o.n_samples = 3;
  SchedulerOptions so;
  so.block_size = 8;  // the prompt ends inside a shared block: copy-on-write
  Scheduler s(*m, so);
  const RequestId forked = s.submit(prompt, o);
  std::vector<RequestId> alone;
  for (int k = 0; k < 3; ++k) {
    RequestOptions one = o;
    one.n_samples = 1;
    one.sampling.seed = o.sampling.seed + uint64_t(k);
    alone.push_back(s.submit(prompt, one));
  }
  s.run();
  const RequestResult f = s.take(forked);
  ASSERT_EQ(f.samples.size(), 3u);
  std::set<std::vector<int32_t>> distinct;
  for (int k = 0; k < 3; ++k) {
    const RequestResult a = s.take(alone[size_t(k)]);
    EXPECT_EQ(f.samples[size_t(k)].tokens, a.samples[0].tokens) << "sample " << k;
    EXPECT_EQ(f.samples[size_t(k)].tokens.size(), 12u);
    distinct.insert(f.samples[size_t(k)].tokens);
  }
  EXPECT_GT(distinct.size(), 1u) << "different seeds should give different samples";
  EXPECT_EQ(s.cache().free_blocks(), s.cache().n_blocks());
}

// Forked samples that lose their blocks: a forked request (3 samples at
// temperature 1.5) and a greedy one share a pool too small for both, the
// forked one is preempted, and each sample recomputes alone.  Every sample
// still equals its own request run alone in a large pool (seed + k).
TEST(Scheduler, ForkedSamplesSurvivePreemption) {
  auto m = load("llama-mha");
  const int32_t V = int32_t(m->config().vocab_size);
  const std::vector<int32_t> prompt = tokens(12, 9, V), other = tokens(20, 10, V);
  RequestOptions o;
  o.sampling.temperature = 1.5f;
  o.sampling.top_k = 0;
  o.sampling.top_p = 1.0f;
  o.sampling.min_p = 0.0f;
  o.sampling.seed = 7;
  o.stop.max_tokens = 20;
  o.stop_at_eos = false;
  o.text = false;
  o.n_samples = 3;
  auto alone = [&](const std::vector<int32_t>& p, const RequestOptions& ro) {
    SchedulerOptions big;
    big.block_size = 4;
    Scheduler s(*m, big);
    const RequestId id = s.submit(p, ro);
    s.run();
    const RequestResult r = s.take(id);
    EXPECT_EQ(r.preemptions, 0);
    return r.samples.at(0).tokens;
  };
  std::vector<std::vector<int32_t>> want;
  for (int k = 0; k < 3; ++k) {
    RequestOptions one = o;
    one.n_samples = 1;
    one.sampling.seed = o.sampling.seed + uint64_t(k);
    want.push_back(alone(prompt, one));
  }
  const std::vector<int32_t> want_other = alone(other, greedy(20));

  SchedulerOptions so;
  so.block_size = 4;
  so.ctx_size = 96;  // 24 blocks: the forked request needs up to 3 + 3 * 5, the other 10
  so.max_batch_tokens = 16;
  Scheduler s(*m, so);
  const RequestId g = s.submit(other, greedy(20));
  const RequestId f = s.submit(prompt, o);
  s.run();
  const RequestResult rf = s.take(f), rg = s.take(g);
  EXPECT_GT(rf.preemptions, 0);
  EXPECT_EQ(s.stats().preemptions, rf.preemptions + rg.preemptions);
  ASSERT_EQ(rf.samples.size(), 3u);
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(rf.samples[size_t(k)].finish, FinishReason::MaxTokens) << rf.samples[size_t(k)].error;
    EXPECT_EQ(rf.samples[size_t(k)].tokens, want[size_t(k)]) << "sample " << k;
  }
  EXPECT_EQ(rg.samples[0].tokens, want_other);
  EXPECT_EQ(s.cache().free_blocks(), s.cache().n_blocks());
  s.cache().check_consistency();
}

TEST(Scheduler, CancelStreamingAndPerSequenceErrors) {
  auto m = load("llama-mha");
  const int32_t V = int32_t(m->config().vocab_size);
  SchedulerOptions so;
  so.ctx_size = 64;     // the context: 64 tokens per sequence
  so.kv_cache_mb = 1;   // the pool: room for all of them
  Scheduler s(*m, so);

  // A prompt longer than the context is refused at once.
  EXPECT_THROW(s.submit(tokens(65, 1, V), greedy(4)), Error);
  EXPECT_THROW(s.submit({}, greedy(4)), Error);
  EXPECT_THROW(s.submit({V}, greedy(4)), Error);

  // Streaming: events arrive in order; a callback returning false cancels.
  std::vector<int32_t> streamed;
  FinishReason last = FinishReason::None;
  const RequestId a = s.submit(tokens(5, 2, V), greedy(50), [&](const Event& e) {
    if (e.token >= 0 && e.finish == FinishReason::None) streamed.push_back(e.token);
    if (e.finish != FinishReason::None) last = e.finish;
    return streamed.size() < 6;
  });
  // Runs into the end of the context: an error for this sequence only.
  const RequestId b = s.submit(tokens(60, 3, V), greedy(-1));
  // Cancelled from outside after a few steps.
  const RequestId c = s.submit(tokens(4, 4, V), greedy(100));
  const RequestId d = s.submit(tokens(4, 5, V), greedy(8));
  for (int k = 0; k < 3; ++k) s.step();
  s.cancel(c);
  s.run();

  const RequestResult ra = s.take(a);
  EXPECT_EQ(ra.samples[0].finish, FinishReason::Cancelled);
  EXPECT_EQ(last, FinishReason::Cancelled);
  EXPECT_EQ(streamed.size(), 6u);
  EXPECT_EQ(ra.samples[0].tokens, streamed);

  const RequestResult rb = s.take(b);
  EXPECT_EQ(rb.samples[0].finish, FinishReason::Error);
  EXPECT_NE(rb.samples[0].error.find("context"), std::string::npos) << rb.samples[0].error;
  EXPECT_EQ(rb.samples[0].tokens.size(), 5u);  // 60 + 5 = 65 > 64: the fifth cannot be fed

  const RequestResult rc = s.take(c);
  EXPECT_EQ(rc.samples[0].finish, FinishReason::Cancelled);
  EXPECT_LT(rc.samples[0].tokens.size(), 100u);

  const RequestResult rd = s.take(d);
  EXPECT_EQ(rd.samples[0].finish, FinishReason::MaxTokens);
  EXPECT_EQ(rd.samples[0].tokens.size(), 8u);

  EXPECT_THROW(s.take(d), Error);  // taken already
  EXPECT_EQ(s.cache().free_blocks(), s.cache().n_blocks());
}

// A kept prefix: a prompt that extends the last request's tokens runs only
// what it adds and gives the tokens of that prompt run alone; a kept prefix
// gives way to a request that needs its blocks; reuse_prefix = false ignores it.
TEST(Scheduler, KeptPrefixIsReusedAndGivesWay) {
  auto m = load("llama-gqa-tied-llama3");
  const int32_t V = int32_t(m->config().vocab_size);
  SchedulerOptions so;
  so.block_size = 4;
  so.ctx_size = 40;  // 10 blocks
  so.keep_prefixes = 1;
  Scheduler s(*m, so);
  const std::vector<int32_t> a = tokens(20, 7, V);
  const RequestId ra = s.submit(a, greedy(8));
  s.run();
  const Completion ca = s.take(ra).samples[0];
  ASSERT_EQ(ca.tokens.size(), 8u);
  EXPECT_EQ(s.stats().prefix_tokens, 0);
  // 27 positions (the prompt and all but the last token) stay: 7 blocks.
  EXPECT_EQ(s.cache().free_blocks(), 3);
  EXPECT_EQ(s.stats().kv_blocks_used, 7);
  EXPECT_EQ(s.stats().kv_blocks_kept, 7);
  EXPECT_EQ(s.stats().kept_prefixes, 1);
  EXPECT_EQ(s.stats().kv_blocks_total, 10);

  std::vector<int32_t> b = a;
  b.insert(b.end(), ca.tokens.begin(), ca.tokens.end());  // 28: one more than cached
  b.push_back(5);
  const int64_t prompt_before = s.stats().prompt_tokens;
  const RequestId rb = s.submit(b, greedy(6));
  s.run();
  const Completion cb = s.take(rb).samples[0];
  EXPECT_EQ(s.stats().prefix_tokens, 27);
  EXPECT_EQ(s.stats().prompt_tokens - prompt_before, 2);
  const Solo want_b = solo_greedy(*m, b, 6);
  EXPECT_EQ(cb.tokens, want_b.tokens);
  EXPECT_LT(test::norm_err(cb.logits, want_b.logits), kTol);
  s.cache().check_consistency();

  // An unrelated 30-token prompt needs 9 of the 10 blocks: the kept prefix goes.
  const std::vector<int32_t> c = tokens(30, 8, V);
  const RequestId rc = s.submit(c, greedy(4));
  s.run();
  const Completion cc = s.take(rc).samples[0];
  EXPECT_EQ(cc.finish, FinishReason::MaxTokens) << cc.error;
  EXPECT_EQ(cc.tokens, solo_greedy(*m, c, 4).tokens);
  EXPECT_EQ(s.stats().preemptions, 0);
  s.cache().check_consistency();

  // Asked not to, a request starts from nothing even when a prefix matches.
  RequestOptions fresh = greedy(2);
  fresh.reuse_prefix = false;
  const int64_t reused = s.stats().prefix_tokens;
  const RequestId rd = s.submit(c, fresh);
  s.run();
  EXPECT_EQ(s.take(rd).samples[0].finish, FinishReason::MaxTokens);
  EXPECT_EQ(s.stats().prefix_tokens, reused);
  s.cache().check_consistency();
}

// A cancel between steps ends the request at the next step, and its blocks
// are free after that one step (what the server needs when a client goes).
TEST(Scheduler, CancelReturnsBlocksInOneStep) {
  auto m = load("llama-mha");
  const int32_t V = int32_t(m->config().vocab_size);
  SchedulerOptions so;
  so.ctx_size = 64;
  so.keep_prefixes = 0;
  Scheduler s(*m, so);
  int events = 0;
  FinishReason last = FinishReason::None;
  const RequestId a = s.submit(tokens(20, 9, V), greedy(40), [&](const Event& e) {
    ++events;
    last = e.finish;
    return true;
  });
  for (int k = 0; k < 4; ++k) ASSERT_TRUE(s.step());
  EXPECT_GT(s.stats().kv_blocks_used, 0);
  const int before = events;
  s.cancel(a);
  s.step();
  EXPECT_EQ(events, before + 1);  // only the final event
  EXPECT_EQ(last, FinishReason::Cancelled);
  EXPECT_EQ(s.cache().free_blocks(), s.cache().n_blocks());
  EXPECT_EQ(s.stats().kv_blocks_used, 0);
  EXPECT_EQ(s.n_pending(), 0u);
  EXPECT_EQ(s.take(a).samples[0].finish, FinishReason::Cancelled);
}

// A request cancelled while it still waits for a slot ends at the next step
// with no token and one final event, never holds a block, and the running
// request is not disturbed.
TEST(Scheduler, CancelWhileQueued) {
  auto m = load("llama-mha");
  const int32_t V = int32_t(m->config().vocab_size);
  SchedulerOptions so;
  so.ctx_size = 64;
  so.max_sequences = 1;  // one runs, the next waits
  so.keep_prefixes = 0;
  Scheduler s(*m, so);
  const RequestId a = s.submit(tokens(6, 11, V), greedy(12));
  std::vector<Event> got;
  const RequestId b = s.submit(tokens(6, 12, V), greedy(12), [&](const Event& e) {
    got.push_back(e);
    return true;
  });
  ASSERT_TRUE(s.step());
  ASSERT_TRUE(s.step());
  EXPECT_TRUE(got.empty()) << "b should still be queued behind a";
  const int64_t used = s.stats().kv_blocks_used;
  s.cancel(b);
  ASSERT_TRUE(s.step());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].token, -1);
  EXPECT_EQ(got[0].finish, FinishReason::Cancelled);
  EXPECT_TRUE(s.finished(b));
  EXPECT_EQ(s.stats().kv_blocks_used, used) << "only a's blocks";
  s.run();
  const RequestResult rb = s.take(b);
  EXPECT_EQ(rb.samples[0].finish, FinishReason::Cancelled);
  EXPECT_TRUE(rb.samples[0].tokens.empty());
  const RequestResult ra = s.take(a);
  EXPECT_EQ(ra.samples[0].finish, FinishReason::MaxTokens);
  // a alone, on a fresh scheduler: the same tokens.
  Scheduler solo(*m, so);
  const RequestId a2 = solo.submit(tokens(6, 11, V), greedy(12));
  solo.run();
  EXPECT_EQ(solo.take(a2).samples[0].tokens, ra.samples[0].tokens);
  EXPECT_EQ(s.cache().free_blocks(), s.cache().n_blocks());
}

// cancel() from another thread while this one is inside step(), as the
// header allows (the server's connection threads do this): at its k-th
// event the callback lets the other thread cancel and waits until that
// cancel() has returned (at most 5 s, so a lock held across callbacks shows
// as a failure, not a hang).  The request ends cancelled at the next step,
// the other request is untouched, and every block comes back.
TEST(Scheduler, CancelFromAnotherThread) {
  auto m = load("llama-mha");
  const int32_t V = int32_t(m->config().vocab_size);
  SchedulerOptions so;
  so.ctx_size = 64;
  so.keep_prefixes = 0;
  Scheduler s(*m, so);
  for (int round = 0; round < 10; ++round) {
    const int k = 1 + round % 5;
    std::atomic<bool> go{false}, done{false};
    int events = 0;
    RequestId a = -1;
    std::thread t([&] {
      while (!go.load()) std::this_thread::yield();
      s.cancel(a);
      done = true;
    });
    a = s.submit(tokens(4, uint32_t(20 + round), V), greedy(56), [&](const Event& e) {
      if (e.token >= 0 && ++events == k) {
        go = true;
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!done.load() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
      }
      return true;
    });
    const RequestId other = s.submit(tokens(4, uint32_t(40 + round), V), greedy(8));
    s.run();
    t.join();
    EXPECT_TRUE(done.load());
    const RequestResult r = s.take(a);
    EXPECT_EQ(r.samples[0].finish, FinishReason::Cancelled) << "round " << round;
    EXPECT_LE(r.samples[0].tokens.size(), size_t(k + 1)) << "round " << round;
    EXPECT_EQ(s.take(other).samples[0].finish, FinishReason::MaxTokens);
    EXPECT_EQ(s.cache().free_blocks(), s.cache().n_blocks());
  }
}

// Log-probabilities are the log-softmax of the raw logits at each sampled
// token, whatever the sampler does; the alternatives are the most likely
// tokens, most likely first.
TEST(Scheduler, LogprobsAreTheLogSoftmaxOfTheLogits) {
  auto m = load("llama-gqa-tied-llama3");
  const int32_t V = int32_t(m->config().vocab_size);
  Scheduler s(*m, SchedulerOptions{});
  RequestOptions o = greedy(6);
  o.sampling.temperature = 0.8f;  // sampled, with penalties: logprobs still come from the raw logits
  o.sampling.top_k = 5;
  o.sampling.seed = 11;
  o.sampling.presence_penalty = 1.0f;
  o.logprobs = 3;
  std::vector<Event> got;
  const RequestId r = s.submit(tokens(9, 10, V), o, [&](const Event& e) {
    if (e.token >= 0) got.push_back(e);
    return true;
  });
  s.run();
  const Completion c = s.take(r).samples[0];
  ASSERT_EQ(c.tokens.size(), 6u);
  ASSERT_EQ(got.size(), 6u);
  ASSERT_EQ(c.logits.size(), size_t(6) * size_t(V));
  for (size_t i = 0; i < got.size(); ++i) {
    const float* lg = c.logits.data() + i * size_t(V);
    double mx = -INFINITY, sum = 0;
    for (int32_t j = 0; j < V; ++j) mx = std::max(mx, double(lg[j]));
    for (int32_t j = 0; j < V; ++j) sum += std::exp(double(lg[j]) - mx);
    const double norm = mx + std::log(sum);
    EXPECT_EQ(got[i].token, c.tokens[i]);
    EXPECT_NEAR(got[i].logprob, double(lg[c.tokens[i]]) - norm, 1e-5);
    ASSERT_EQ(got[i].top_logprobs.size(), 3u);
    std::vector<int32_t> order(static_cast<size_t>(V));
    for (int32_t j = 0; j < V; ++j) order[size_t(j)] = j;
    std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return lg[x] > lg[y]; });
    for (size_t k = 0; k < 3; ++k) {
      EXPECT_EQ(got[i].top_logprobs[k].first, order[k]);
      EXPECT_NEAR(got[i].top_logprobs[k].second, double(lg[order[k]]) - norm, 1e-5);
    }
  }
  RequestOptions bad = greedy(2);
  bad.logprobs = 21;
  EXPECT_THROW(s.submit(tokens(3, 1, V), bad), Error);
}

TEST(Scheduler, RequestLargerThanThePoolFailsAlone) {
  auto m = load("llama-mha");
  const int32_t V = int32_t(m->config().vocab_size);
  SchedulerOptions so;
  so.block_size = 4;
  so.ctx_size = 16;  // 4 blocks; and a context of 16 tokens
  so.kv_cache_mb = 0;
  Scheduler s(*m, so);
  const RequestId ok = s.submit(tokens(6, 1, V), greedy(4));
  const RequestId too_long = s.submit(tokens(16, 2, V), greedy(4));
  s.run();
  EXPECT_EQ(s.take(ok).samples[0].finish, FinishReason::MaxTokens);
  const RequestResult r = s.take(too_long);
  EXPECT_EQ(r.samples[0].finish, FinishReason::Error);
  EXPECT_FALSE(r.samples[0].error.empty());
}

TEST(Scheduler, GenerateBatchMatchesSequences) {
  auto m = load("opt-prenorm");
  const int32_t V = int32_t(m->config().vocab_size);
  std::vector<std::vector<int32_t>> prompts = {tokens(4, 1, V), tokens(11, 2, V)};
  const auto results = generate_batch(*m, prompts, greedy(6));
  ASSERT_EQ(results.size(), 2u);
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(results[i].samples[0].tokens, solo_greedy(*m, prompts[i], 6).tokens);
}

TEST(RandomModel, DeterministicAcrossThreadsAndSized) {
  ModelConfig c = load("llama-gqa-tied-llama3")->config();
  RandomOptions o;
  o.dtype = DType::F32;
  o.seed = 5;
  o.threads = 1;
  double last_progress = -1;
  o.progress = [&](double p) {
    EXPECT_GE(p, last_progress);
    last_progress = p;
  };
  auto a = Model::random(c, o);
  EXPECT_EQ(last_progress, 1.0);
  o.threads = 2;
  o.progress = {};
  auto b = Model::random(c, o);
  o.seed = 6;
  auto d = Model::random(c, o);
  const std::vector<int32_t> ids = {1, 5, 9, 2};
  std::vector<float> la, lb, ld;
  auto ca = a->new_cache(), cb = b->new_cache(), cd = d->new_cache();
  a->forward(*ca, ids, 0, Logits::All, la);
  b->forward(*cb, ids, 0, Logits::All, lb);
  d->forward(*cd, ids, 0, Logits::All, ld);
  EXPECT_EQ(la, lb);
  EXPECT_NE(la, ld);
  EXPECT_EQ(a->format(), "random");
  EXPECT_EQ(a->tokenizer(), nullptr);
  // f32 weights: 4 bytes per parameter.
  int64_t params = c.vocab_size * c.hidden_size;  // tied embeddings
  const int64_t H = c.hidden_size, QD = c.n_heads * c.head_dim, KD = c.n_kv_heads * c.head_dim;
  params += H;  // final norm
  params += c.n_layers * (2 * H + H * QD + 2 * H * KD + QD * H + 3 * H * c.ffn_dim);
  EXPECT_EQ(Model::weight_bytes(c, DType::F32), 4 * params);
  const int64_t vec = H + c.n_layers * 2 * H;  // norms stay f32
  EXPECT_EQ(Model::weight_bytes(c, DType::F16), 4 * vec + 2 * (params - vec));
}

TEST(RandomModel, RejectsBlockMisfitAndBadConfig) {
  ModelConfig c = load("llama-gqa-tied-llama3")->config();
  RandomOptions o;
  o.dtype = DType::Q8_0;  // hidden 32 fits blocks of 32; intermediate 96 too
  EXPECT_NO_THROW(Model::random(c, o));
  // Rows of 32 (hidden) and 96 (intermediate) are no whole Q4_K super-block
  // of 256: refused, naming the first tensor, its row length and the block.
  o.dtype = DType::Q4_K;
  try {
    Model::random(c, o);
    ADD_FAILURE() << "Q4_K rows of 32 were accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("has rows of 32 values, not a multiple of q4_k's block of 256"), std::string::npos) << m;
  }
  o.dtype = DType::Q8_0;
  c.hidden_size = 0;
  EXPECT_THROW(Model::random(c, o), Error);
}

}  // namespace
}  // namespace runnel

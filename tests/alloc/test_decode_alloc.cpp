// A decode step allocates nothing once warmed up: 50 steps at batch 1 and 8
// over the scheduler's paged cache (and at batch 1 over a contiguous cache
// reserved up front) make no call to operator new on any thread, and the
// KV pools stay where they are.  Its own binary, since it replaces the global
// operator new to count.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>
#include <vector>

#include "runnel/runnel.hpp"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};
}  // namespace

void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t al) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  const std::size_t a = static_cast<std::size_t>(al);
  if (void* p = std::aligned_alloc(a, (n + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t al) { return operator new(n, al); }
// operator new above takes its memory from malloc, so free() releases it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace runnel {
namespace {

namespace fs = std::filesystem;

struct Counter {
  Counter() {
    g_allocs = 0;
    g_counting = true;
  }
  ~Counter() { g_counting = false; }
  long count() const { return g_allocs.load(); }
};

// The counter sees allocations: a step that builds a vector is caught.
TEST(DecodeAlloc, CounterCounts) {
  Counter c;
  std::vector<int>* v = new std::vector<int>(10);
  delete v;
  EXPECT_GE(c.count(), 2);
}

std::unique_ptr<Model> fixture(const std::string& name) {
  LoadOptions o;
  o.threads = 2;
  return Model::load((fs::path(RUNNEL_TEST_DATA_DIR) / "models" / name).string(), o);
}

// Prefills `batch` prompts of different lengths, warms up one decode step,
// then counts allocations over 50 decode steps (reserve + forward).
void paged_decode(Model& m, int batch) {
  const ModelConfig& c = m.config();
  KvCacheOptions ko = KvCacheOptions::for_model(c, DType::F16, 16);
  ko.max_seq_tokens = 128;
  ko.n_blocks = int64_t(batch) * ko.blocks_for_tokens(128);
  PagedKvCache cache(ko);
  std::vector<std::unique_ptr<PagedSequenceCache>> views;
  std::vector<std::vector<float>> logits(static_cast<size_t>(batch));
  std::vector<int32_t> next(static_cast<size_t>(batch));
  std::vector<int64_t> len(static_cast<size_t>(batch));
  for (int b = 0; b < batch; ++b) {
    views.push_back(std::make_unique<PagedSequenceCache>(cache, cache.add_sequence()));
    std::vector<int32_t> prompt;
    for (int i = 0; i < 3 + b; ++i) prompt.push_back(int32_t((7 * i + b) % c.vocab_size));
    m.forward(*views.back(), prompt, 0, Logits::Last, logits[size_t(b)]);
    len[size_t(b)] = int64_t(prompt.size());
  }
  std::vector<Model::BatchItem> items(static_cast<size_t>(batch));
  auto step = [&] {
    for (int b = 0; b < batch; ++b) {
      next[size_t(b)] = argmax(logits[size_t(b)]);
      Model::BatchItem& it = items[size_t(b)];
      it.cache = views[size_t(b)].get();
      it.ids = std::span<const int32_t>(&next[size_t(b)], 1);
      it.pos0 = len[size_t(b)];
      it.which = Logits::Last;
      it.logits = &logits[size_t(b)];
      cache.reserve(views[size_t(b)]->seq(), len[size_t(b)] + 1);
    }
    m.forward(items);
    for (int b = 0; b < batch; ++b) ++len[size_t(b)];
  };
  step();  // warm-up: the workspace and scratch reach this batch's size
  const void* pool_k = cache.pool(0).k.data();
  long allocs = 0;
  {
    Counter counter;
    for (int s = 0; s < 50; ++s) step();
    allocs = counter.count();
  }
  EXPECT_EQ(allocs, 0) << c.family << " batch " << batch;
  EXPECT_EQ(cache.pool(0).k.data(), pool_k);
  for (int b = 0; b < batch; ++b) EXPECT_EQ(len[size_t(b)], 3 + b + 51);
}

class DecodeAlloc : public ::testing::TestWithParam<std::string> {};

TEST_P(DecodeAlloc, PagedBatch1) {
  auto m = fixture(GetParam());
  paged_decode(*m, 1);
}

TEST_P(DecodeAlloc, PagedBatch8) {
  auto m = fixture(GetParam());
  paged_decode(*m, 8);
}

// A contiguous cache reserved for the whole length keeps its storage.
TEST_P(DecodeAlloc, ContiguousBatch1) {
  auto m = fixture(GetParam());
  auto cache = m->new_cache();
  std::vector<int32_t> prompt = {1, 2, 3, 4};
  std::vector<float> logits;
  cache->reserve(64);
  m->forward(*cache, prompt, 0, Logits::Last, logits);
  int32_t id = argmax(logits);
  m->forward(*cache, std::span<const int32_t>(&id, 1), 4, Logits::Last, logits);
  const void* k = cache->pool(0).k.data();
  long allocs = 0;
  {
    Counter counter;
    for (int64_t s = 0; s < 50; ++s) {
      id = argmax(logits);
      m->forward(*cache, std::span<const int32_t>(&id, 1), 5 + s, Logits::Last, logits);
    }
    allocs = counter.count();
  }
  EXPECT_EQ(allocs, 0);
  EXPECT_EQ(cache->pool(0).k.data(), k);
}

// Every family and attention layout: separate, fused blocks (OPT has
// separate q/k/v; BLOOM fuses per head), GQA, learned positions, dynamic RoPE
// within its context.
INSTANTIATE_TEST_SUITE_P(Fixtures, DecodeAlloc,
                         ::testing::Values("llama-gqa-tied-llama3", "llama-mha", "opt-prenorm",
                                           "opt-350m-style", "bloom-6heads",
                                           // dynamic RoPE, past its 16 trained positions
                                           "llama-dynamic-headdim"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace runnel

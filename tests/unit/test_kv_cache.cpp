// The paged KV-cache manager: incremental decoding over the paged cache
// against a full forward, forks and shared prefixes against independent
// sequences, pool accounting under random operations, and out-of-blocks
// errors that stay with one sequence.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "runnel/backend.hpp"
#include "runnel/error.hpp"
#include "runnel/kv_cache.hpp"
#include "runnel/model.hpp"
#include "test_util.hpp"

namespace runnel {
namespace {

namespace fs = std::filesystem;

// Against a full forward (one batch), incremental decoding runs the
// small-batch matmul kernels instead of the blocked ones, so the logits differ
// by rounding; with an f16 cache the keys and values computed by the two paths
// can also round to neighbouring f16 values (worst seen: 8.3e-5).
constexpr double kTolF32 = 1e-5;
constexpr double kTolF16 = 5e-4;

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

std::vector<float> row(const std::vector<float>& all, int64_t r, int64_t vocab) {
  return {all.begin() + r * vocab, all.begin() + (r + 1) * vocab};
}

PagedKvCache make_pool(const Model& m, int64_t n_blocks, int64_t block_size,
                       DType dtype = DType::F32) {
  KvCacheOptions o = KvCacheOptions::for_model(m.config(), dtype, block_size);
  o.n_blocks = n_blocks;
  return PagedKvCache(o);
}

// Runs `ids` on sequence `seq` from its current length.
std::vector<float> run(Model& m, PagedKvCache& pool, PagedKvCache::SeqId seq,
                       const std::vector<int32_t>& ids, Logits which = Logits::Last) {
  PagedSequenceCache c(pool, seq);
  std::vector<float> logits;
  m.forward(c, ids, pool.n_tokens(seq), which, logits);
  return logits;
}

class PagedModel : public ::testing::TestWithParam<const char*> {};

TEST_P(PagedModel, IncrementalEqualsFullForward) {
  auto m = load(GetParam());
  const int64_t V = m->config().vocab_size;
  const std::vector<int32_t> ids = tokens(45, 11, int32_t(V));
  for (DType dt : {DType::F32, DType::F16}) {
    // Reference: one batch over a contiguous cache.
    auto ref_cache = m->new_cache(dt);
    std::vector<float> full;
    m->forward(*ref_cache, ids, 0, Logits::All, full);
    for (int64_t bs : {1, 4, 16}) {
      SCOPED_TRACE("dtype " + std::string(dtype_name(dt)) + ", block size " + std::to_string(bs));
      PagedKvCache pool = make_pool(*m, 64, bs, dt);
      const auto seq = pool.add_sequence();
      // The same schedule over a contiguous cache runs the same kernels on
      // the same data, so the paged logits must match it exactly.
      auto same = m->new_cache(dt);
      auto step = [&](const std::vector<int32_t>& part, size_t pos) {
        std::vector<float> got = run(*m, pool, seq, part, Logits::All), want;
        m->forward(*same, part, int64_t(pos), Logits::All, want);
        EXPECT_EQ(got, want) << "positions from " << pos;
        for (size_t i = 0; i < part.size(); ++i)
          EXPECT_LT(test::norm_err(row(got, int64_t(i), V), row(full, int64_t(pos + i), V)),
                    dt == DType::F32 ? kTolF32 : kTolF16)
              << "position " << pos + i;
      };
      // A prompt of 7, a chunk of 13 (crosses blocks), then one token at a time.
      size_t pos = 0;
      for (size_t chunk : {size_t(7), size_t(13)}) {
        step({ids.begin() + ptrdiff_t(pos), ids.begin() + ptrdiff_t(pos + chunk)}, pos);
        pos += chunk;
      }
      for (; pos < ids.size(); ++pos) step({ids[pos]}, pos);
      EXPECT_EQ(pool.n_tokens(seq), int64_t(ids.size()));
      EXPECT_EQ(int64_t(pool.block_table(seq).size()), (int64_t(ids.size()) + bs - 1) / bs);
      pool.free(seq);
      EXPECT_EQ(pool.free_blocks(), pool.n_blocks());
    }
  }
}

TEST_P(PagedModel, ForkedAndSharedEqualIndependent) {
  auto m = load(GetParam());
  const int64_t V = m->config().vocab_size;
  const std::vector<int32_t> prompt = tokens(10, 21, int32_t(V));  // 2.5 blocks of 4
  const std::vector<int32_t> xa = tokens(9, 22, int32_t(V)), xb = tokens(9, 23, int32_t(V));
  const std::vector<int32_t> q = tokens(5, 24, int32_t(V));

  // Independent sequences, one pool each.
  auto alone = [&](const std::vector<int32_t>& pre, const std::vector<int32_t>& gen) {
    PagedKvCache pool = make_pool(*m, 32, 4);
    const auto s = pool.add_sequence();
    std::vector<std::vector<float>> out{run(*m, pool, s, pre)};
    for (int32_t t : gen) out.push_back(run(*m, pool, s, {t}));
    return out;
  };
  const auto ref_a = alone(prompt, xa), ref_b = alone(prompt, xb);
  std::vector<int32_t> prefix(prompt.begin(), prompt.begin() + 6);
  prefix.insert(prefix.end(), q.begin(), q.end());
  const auto ref_c = alone(prefix, xa);

  PagedKvCache pool = make_pool(*m, 32, 4);
  const auto a = pool.add_sequence();
  const std::vector<float> first = run(*m, pool, a, prompt);
  EXPECT_LT(test::norm_err(first, ref_a[0]), 1e-6);
  const int64_t used = pool.n_blocks() - pool.free_blocks();
  EXPECT_EQ(used, 3);
  const auto b = pool.fork(a);     // n > 1 samples: shares all 3 blocks
  const auto c = pool.fork(a, 6);  // a shared prompt prefix: 2 blocks
  EXPECT_EQ(pool.n_blocks() - pool.free_blocks(), used) << "forks must not copy";
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(pool.block_table(b)[size_t(i)], pool.block_table(a)[size_t(i)]);
  EXPECT_EQ(pool.ref_count(pool.block_table(a)[0]), 3);
  EXPECT_EQ(pool.ref_count(pool.block_table(a)[1]), 3);
  EXPECT_EQ(pool.ref_count(pool.block_table(a)[2]), 2);

  // c continues its own prompt inside the shared second block: copy-on-write.
  const std::vector<float> c0 = run(*m, pool, c, q);
  EXPECT_LT(test::norm_err(c0, ref_c[0]), 1e-6);
  EXPECT_EQ(pool.block_table(c)[0], pool.block_table(a)[0]);
  EXPECT_NE(pool.block_table(c)[1], pool.block_table(a)[1]);
  // Interleaved decoding of a, b and c.
  for (size_t i = 0; i < xa.size(); ++i) {
    EXPECT_LT(test::norm_err(run(*m, pool, b, {xb[i]}), ref_b[i + 1]), 1e-6) << "b " << i;
    EXPECT_LT(test::norm_err(run(*m, pool, a, {xa[i]}), ref_a[i + 1]), 1e-6) << "a " << i;
    EXPECT_LT(test::norm_err(run(*m, pool, c, {xa[i]}), ref_c[i + 1]), 1e-6) << "c " << i;
  }
  EXPECT_NE(pool.block_table(b)[2], pool.block_table(a)[2]);
  EXPECT_EQ(pool.block_table(b)[0], pool.block_table(a)[0]);
  pool.check_consistency();
  pool.free(a);
  pool.free(b);
  pool.free(c);
  EXPECT_EQ(pool.free_blocks(), pool.n_blocks());
  pool.check_consistency();
}

TEST_P(PagedModel, OutOfBlocksIsPerSequence) {
  auto m = load(GetParam());
  const int32_t V = int32_t(m->config().vocab_size);
  PagedKvCache pool = make_pool(*m, 7, 4);
  const auto a = pool.add_sequence(), b = pool.add_sequence(), c = pool.add_sequence();
  run(*m, pool, a, tokens(12, 31, V));  // 3 blocks
  const std::vector<int32_t> pb = tokens(12, 32, V);
  run(*m, pool, b, pb);  // 3 blocks, 1 left
  EXPECT_EQ(pool.free_blocks(), 1);
  try {
    run(*m, pool, c, tokens(8, 33, V));  // needs 2
    ADD_FAILURE() << "expected KvCacheFull";
  } catch (const KvCacheFull& e) {
    EXPECT_EQ(e.seq(), c);
    EXPECT_EQ(e.needed(), 2);
    EXPECT_NE(std::string(e.what()).find("KV cache full"), std::string::npos);
  }
  EXPECT_EQ(pool.n_tokens(c), 0);
  EXPECT_EQ(pool.free_blocks(), 1);
  pool.check_consistency();

  // b goes on, unaffected, with the last block.
  PagedKvCache solo = make_pool(*m, 8, 4);
  const auto s = solo.add_sequence();
  run(*m, solo, s, pb);
  const int32_t next = 5;
  EXPECT_LT(test::norm_err(run(*m, pool, b, {next}), run(*m, solo, s, {next})), 1e-6);
  EXPECT_EQ(pool.free_blocks(), 0);
  // A fork of b shares the partly filled block; writing into it needs a copy
  // and there is no block left.
  const auto f = pool.fork(b);
  EXPECT_THROW(run(*m, pool, f, {next}), KvCacheFull);
  EXPECT_EQ(pool.n_tokens(f), 13);
  pool.check_consistency();
  // Cancelling a frees its blocks for c.
  pool.free(a);
  run(*m, pool, c, tokens(8, 33, V));
  EXPECT_EQ(pool.n_tokens(c), 8);
  pool.free(b);
  pool.free(c);
  pool.free(f);
  EXPECT_EQ(pool.free_blocks(), pool.n_blocks());
  pool.check_consistency();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PagedModel,
                         ::testing::Values("llama-gqa-tied-llama3", "bloom-6heads", "opt-prenorm"),
                         [](const auto& info) {
                           std::string s = info.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

TEST(PagedKvCache, ContextLimitAndBudgets) {
  KvCacheOptions o;
  o.n_layers = 2;
  o.n_kv_heads = 2;
  o.head_dim = 8;
  o.block_size = 16;
  o.max_seq_tokens = 40;
  EXPECT_EQ(o.block_bytes(), 2 * 2 * 16 * 2 * 8 * 4);
  EXPECT_EQ(o.blocks_for_tokens(40), 3);
  EXPECT_EQ(o.blocks_for_tokens(48), 3);
  EXPECT_EQ(o.blocks_for_bytes(1 << 20), (1 << 20) / 4096);
  EXPECT_THROW(o.blocks_for_bytes(100), Error);
  EXPECT_THROW(o.blocks_for_tokens(0), Error);
  o.n_blocks = o.blocks_for_tokens(1000);
  PagedKvCache pool(o);
  const auto s = pool.add_sequence();
  pool.reserve(s, 40);
  EXPECT_THROW(pool.reserve(s, 41), ContextFull);
  EXPECT_EQ(pool.n_tokens(s), 40);
  EXPECT_THROW(pool.free(s + 1), Error);
  pool.free(s);
  EXPECT_THROW(pool.free(s), Error);
  EXPECT_THROW(pool.n_tokens(s), Error);
  o.dtype = DType::BF16;
  EXPECT_THROW(PagedKvCache{o}, Error);
  o.dtype = DType::F32;
  o.n_blocks = 0;
  EXPECT_THROW(PagedKvCache{o}, Error);
}

// Thousands of random operations on a small pool, against a shadow copy of
// what every sequence must read back at every position.
TEST(PagedKvCache, RandomOperationsNeverLeak) {
  KvCacheOptions o;
  o.n_layers = 2;
  o.n_kv_heads = 1;
  o.head_dim = 4;
  o.block_size = 4;
  o.n_blocks = 48;
  PagedKvCache pool(o);
  Context ctx(1);
  std::mt19937 rng(2024);
  std::map<PagedKvCache::SeqId, std::vector<float>> shadow;  // tag of each stored position
  float next_tag = 1.0f;
  int full_errors = 0, forks = 0, cows = 0;

  auto write = [&](PagedKvCache::SeqId s, int64_t pos0, int64_t n) {
    std::vector<float> k(size_t(n * 4)), v(size_t(n * 4));
    for (int64_t i = 0; i < n; ++i) {
      for (int j = 0; j < 4; ++j) {
        k[size_t(i * 4 + j)] = next_tag;
        v[size_t(i * 4 + j)] = -next_tag;
      }
      shadow[s][size_t(pos0 + i)] = next_tag;
      next_tag += 1.0f;
    }
    for (int64_t l = 0; l < o.n_layers; ++l)
      pool.store(ctx, s, l, pos0, Tensor::view(k.data(), DType::F32, {n, 1, 4}),
                 Tensor::view(v.data(), DType::F32, {n, 1, 4}));
  };
  auto verify = [&](PagedKvCache::SeqId s) {
    const std::vector<float>& want = shadow[s];
    ASSERT_EQ(pool.n_tokens(s), int64_t(want.size()));
    for (int64_t l = 0; l < o.n_layers; ++l) {
      const ops::KvPool kv = pool.pool(l);
      const std::span<const int32_t> table = pool.block_table(s);
      for (size_t p = 0; p < want.size(); ++p) {
        const int32_t b = table[p / 4];
        const float* kr = static_cast<const float*>(kv.k.select(0, b).row(int64_t(p % 4)));
        const float* vr = static_cast<const float*>(kv.v.select(0, b).row(int64_t(p % 4)));
        ASSERT_EQ(kr[0], want[p]) << "seq " << s << " layer " << l << " pos " << p;
        ASSERT_EQ(vr[3], -want[p]) << "seq " << s << " layer " << l << " pos " << p;
      }
    }
  };

  for (int step = 0; step < 5000; ++step) {
    const int op = int(rng() % 100);
    std::vector<PagedKvCache::SeqId> live;
    for (const auto& [id, _] : shadow) live.push_back(id);
    const PagedKvCache::SeqId pick = live.empty() ? -1 : live[rng() % live.size()];
    if (op < 10 || live.empty()) {
      const auto s = pool.add_sequence();
      ASSERT_FALSE(shadow.count(s));
      shadow[s] = {};
    } else if (op < 25) {
      const int64_t n = int64_t(rng() % uint32_t(pool.n_tokens(pick) + 1));
      const auto f = pool.fork(pick, n);
      ASSERT_FALSE(shadow.count(f));
      shadow[f] = std::vector<float>(shadow[pick].begin(), shadow[pick].begin() + n);
      ++forks;
    } else if (op < 65) {
      // Append: reserve then write, as the model does.
      const int64_t len = pool.n_tokens(pick), n = 1 + int64_t(rng() % 9);
      const std::vector<int32_t> before(pool.block_table(pick).begin(),
                                        pool.block_table(pick).end());
      const int64_t free_before = pool.free_blocks();
      try {
        pool.reserve(pick, len + n);
      } catch (const KvCacheFull& e) {
        ++full_errors;
        EXPECT_EQ(e.seq(), pick);
        ASSERT_EQ(pool.n_tokens(pick), len);
        ASSERT_EQ(pool.free_blocks(), free_before);
        ASSERT_TRUE(std::equal(before.begin(), before.end(), pool.block_table(pick).begin(),
                               pool.block_table(pick).end()));
        continue;
      }
      if (!before.empty() && pool.block_table(pick)[before.size() - 1] != before.back()) ++cows;
      shadow[pick].resize(size_t(len + n));
      write(pick, len, n);
    } else if (op < 75) {
      // Overwrite stored positions: reserve them for writing (which copies
      // shared blocks, all or nothing), then write.
      const int64_t len = pool.n_tokens(pick);
      if (len == 0) continue;
      const int64_t pos0 = int64_t(rng() % uint32_t(len));
      const int64_t n = 1 + int64_t(rng() % uint32_t(std::min<int64_t>(len - pos0, 6)));
      const int64_t free_before = pool.free_blocks();
      const std::vector<int32_t> before(pool.block_table(pick).begin(),
                                        pool.block_table(pick).end());
      try {
        pool.reserve(pick, pos0 + n, pos0);
      } catch (const KvCacheFull&) {
        ++full_errors;
        ASSERT_EQ(pool.free_blocks(), free_before);
        continue;
      }
      if (!std::equal(before.begin(), before.end(), pool.block_table(pick).begin(),
                      pool.block_table(pick).end()))
        ++cows;
      write(pick, pos0, n);
    } else if (op < 82) {
      const int64_t n = int64_t(rng() % uint32_t(pool.n_tokens(pick) + 1));
      pool.truncate(pick, n);
      shadow[pick].resize(size_t(n));
    } else {
      pool.free(pick);
      shadow.erase(pick);
    }
    if (step % 50 == 0) {
      ASSERT_NO_THROW(pool.check_consistency()) << "step " << step;
      for (const auto& [id, _] : shadow) verify(id);
    }
  }
  pool.check_consistency();
  for (const auto& [id, _] : shadow) verify(id);
  for (const auto& [id, _] : shadow) pool.free(id);
  EXPECT_EQ(pool.free_blocks(), pool.n_blocks());
  EXPECT_EQ(pool.n_sequences(), 0u);
  pool.check_consistency();
  for (int32_t b = 0; b < pool.n_blocks(); ++b) EXPECT_EQ(pool.ref_count(b), 0);
  // The run exercised what it claims to.
  EXPECT_GT(full_errors, 10);
  EXPECT_GT(forks, 300);
  EXPECT_GT(cows, 20);
}

// Copy-on-write happens in reserve(), never in an accessor or a write: after
// a fork, reading the pool and the tables changes no count, a write into the
// shared block is refused, and reserving the range for writing copies it.
TEST(PagedKvCache, CopyOnWriteOnlyInReserve) {
  KvCacheOptions o;
  o.n_layers = 1;
  o.n_kv_heads = 1;
  o.head_dim = 4;
  o.block_size = 4;
  o.n_blocks = 8;
  PagedKvCache pool(o);
  Context ctx(1);
  const auto a = pool.add_sequence();
  pool.reserve(a, 6);
  std::vector<float> k(24, 1.0f), v(24, 2.0f);
  pool.store(ctx, a, 0, 0, Tensor::view(k.data(), DType::F32, {6, 1, 4}),
             Tensor::view(v.data(), DType::F32, {6, 1, 4}));
  const auto b = pool.fork(a);
  const int32_t shared = pool.block_table(b)[1];
  EXPECT_EQ(pool.ref_count(shared), 2);
  const ops::KvPool p = pool.pool(0);
  const std::vector<int32_t> before(pool.block_table(b).begin(), pool.block_table(b).end());
  EXPECT_EQ(pool.ref_count(shared), 2);
  EXPECT_EQ(pool.free_blocks(), 6);
  // Overwriting position 5 of b without reserving it is an error, and changes nothing.
  EXPECT_THROW(pool.store(ctx, b, 0, 5, Tensor::view(k.data(), DType::F32, {1, 1, 4}),
                          Tensor::view(v.data(), DType::F32, {1, 1, 4})),
               Error);
  EXPECT_EQ(pool.ref_count(shared), 2);
  // Reserving position 5 for writing copies block 1 (its rows come along).
  pool.reserve(b, 6, 5);
  const int32_t fresh = pool.block_table(b)[1];
  EXPECT_NE(fresh, shared);
  EXPECT_EQ(pool.block_table(b)[0], before[0]);
  EXPECT_EQ(pool.ref_count(shared), 1);
  EXPECT_EQ(pool.ref_count(fresh), 1);
  const float* row = static_cast<const float*>(p.k.select(0, fresh).row(1));
  EXPECT_EQ(row[0], 1.0f);
  std::vector<float> k2(4, 9.0f);
  pool.store(ctx, b, 0, 5, Tensor::view(k2.data(), DType::F32, {1, 1, 4}),
             Tensor::view(k2.data(), DType::F32, {1, 1, 4}));
  EXPECT_EQ(static_cast<const float*>(p.k.select(0, fresh).row(1))[0], 9.0f);
  EXPECT_EQ(static_cast<const float*>(p.k.select(0, shared).row(1))[0], 1.0f);  // a is untouched
  pool.check_consistency();
}

// The pools come from the backend the options name (the model's Context's),
// and every copy of cache memory goes through it.
class CountingBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  std::string name() const override { return "counting"; }
  std::shared_ptr<Buffer> allocate(size_t bytes) override {
    ++allocations;
    return cpu_backend().allocate(bytes);
  }
  void copy(void* dst, Device dd, const void* src, Device sd, size_t bytes) override {
    ++copies;
    cpu_backend().copy(dst, dd, src, sd, bytes);
  }
  void synchronize() override {}
  bool supports(Op op, DType dtype) const override { return cpu_backend().supports(op, dtype); }
  int allocations = 0, copies = 0;
};

TEST(PagedKvCache, MemoryComesFromTheBackend) {
  CountingBackend be;
  KvCacheOptions o;
  o.n_layers = 3;
  o.n_kv_heads = 1;
  o.head_dim = 4;
  o.block_size = 4;
  o.n_blocks = 8;
  o.backend = &be;
  PagedKvCache pool(o);
  EXPECT_EQ(be.allocations, 6);  // K and V of each layer, once
  const auto a = pool.add_sequence();
  pool.reserve(a, 6);
  const auto b = pool.fork(a);
  EXPECT_EQ(be.copies, 0);
  pool.reserve(b, 6, 5);  // copy-on-write of the shared block, per layer, K and V
  EXPECT_EQ(be.copies, 6);
  EXPECT_EQ(be.allocations, 6);

  ContiguousKvCache c(2, 1, 4, DType::F32, 0, &be);
  c.reserve(10);
  EXPECT_EQ(be.allocations, 6 + 4);
  EXPECT_EQ(c.pool(1).k.device(), Device::CPU);
  c.reserve(100);  // grows: new storage, the old rows copied over
  EXPECT_EQ(be.allocations, 6 + 8);
  EXPECT_EQ(be.copies, 6 + 4);
}

}  // namespace
}  // namespace runnel

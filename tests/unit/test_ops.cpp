// Op fronts: shape and dtype checks, threading, oneDNN vs runnel's kernels.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "cpu/half.hpp"
#include "cpu/kernels.hpp"
#include "runnel/runnel.hpp"
#include "test_util.hpp"

namespace runnel {
namespace {

using test::norm_err;
using test::poisoned;
using test::random_floats;

Tensor T(std::vector<float>& v, std::initializer_list<int64_t> shape) {
  return Tensor::view(v.data(), DType::F32, shape);
}

Tensor I(std::vector<int32_t>& v) { return Tensor::view(v.data(), DType::I32, {int64_t(v.size())}); }
Tensor F(std::vector<float>& v) { return Tensor::view(v.data(), DType::F32, {int64_t(v.size())}); }

// One sequence's attention: queries at positions pos0 .. pos0 + n_q - 1.
void attend(Context& ctx, const Tensor& q, const ops::KvPool& pool, std::vector<int32_t> table,
            int64_t pos0, float scale, const Tensor& out) {
  std::vector<int32_t> lens = {int32_t(pos0 + q.dim(0))}, starts = {0, int32_t(q.dim(0))};
  ops::KvBatch b{Tensor::view(table.data(), DType::I32, {1, int64_t(table.size())}), I(lens), I(starts)};
  ops::attention(ctx, q, pool, b, scale, nullptr, out);
}

// A reference product in double.
std::vector<float> ref_matmul(const std::vector<float>& x, const std::vector<float>& w, const float* b,
                              int64_t m, int64_t n, int64_t k) {
  std::vector<float> y(size_t(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = b ? b[j] : 0.0;
      for (int64_t q = 0; q < k; ++q) s += double(x[size_t(i * k + q)]) * w[size_t(j * k + q)];
      y[size_t(i * n + j)] = float(s);
    }
  return y;
}

class MatmulPaths : public ::testing::TestWithParam<int> {};

// Every path (small batch, oneDNN, blocked fallback) for every weight dtype
// and thread counts 1..3 agrees with a double-precision reference.
TEST_P(MatmulPaths, AgreeWithReference) {
  const int threads = GetParam();
  Context ctx(threads);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t m : {1, 5, 16, 33}) {
      const int64_t n = 67, k = 129;
      auto x = random_floats(size_t(m * k), 1);
      auto wf = random_floats(size_t(n * k), 2);
      auto b = random_floats(size_t(n), 3);
      // Round the weights through the dtype so the reference sees the same values.
      std::vector<uint16_t> wh(wf.size());
      std::vector<float> wr = wf;
      for (size_t i = 0; i < wf.size(); ++i) {
        if (dt == DType::F16) { wh[i] = cpu::f32_to_f16(wf[i]); wr[i] = cpu::f16_to_f32(wh[i]); }
        if (dt == DType::BF16) { wh[i] = cpu::f32_to_bf16(wf[i]); wr[i] = cpu::bf16_to_f32(wh[i]); }
      }
      const auto yr = ref_matmul(x, wr, b.data(), m, n, k);
      Tensor w = dt == DType::F32 ? T(wf, {n, k}) : Tensor::view(wh.data(), dt, {n, k});
      for (bool dnnl : {true, false}) {
        ctx.cpu.use_dnnl = dnnl;
        auto y = poisoned(size_t(m * n));
        Tensor bt = T(b, {n});
        ops::matmul(ctx, T(x, {m, k}), w, &bt, T(y, {m, n}));
        EXPECT_LE(norm_err(y, yr), 1e-5) << dtype_name(dt) << " m=" << m << " dnnl=" << dnnl;
      }
    }
  }
}
INSTANTIATE_TEST_SUITE_P(Threads, MatmulPaths, ::testing::Values(1, 2, 3));

TEST(Ops, MatmulRejectsMismatches) {
  Context ctx(1);
  std::vector<float> x(12), w(12), y(16), b(3);
  EXPECT_THROW(ops::matmul(ctx, T(x, {3, 4}), T(w, {4, 3}), nullptr, T(y, {3, 4})), Error);  // k mismatch
  EXPECT_THROW(ops::matmul(ctx, T(x, {3, 4}), T(w, {3, 4}), nullptr, T(y, {4, 4})), Error);  // y rows
  Tensor bt = T(b, {3});
  EXPECT_THROW(ops::matmul(ctx, T(x, {3, 4}), T(w, {4, 3}).reshape({3, 4}), &bt, T(y, {4, 4})), Error);
  std::vector<int32_t> xi(12);
  EXPECT_THROW(ops::matmul(ctx, Tensor::view(xi.data(), DType::I32, {3, 4}), T(w, {3, 4}), nullptr, T(y, {3, 3})),
               Error);
  try {
    ops::matmul(ctx, T(x, {3, 4}), T(w, {2, 6}), nullptr, T(y, {3, 2}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("weight"), std::string::npos) << e.what();
  }
}

TEST(Ops, RowOpsCheckShapes) {
  Context ctx(2);
  std::vector<float> x(12, 1.0f), y(12), w(4, 1.0f), w3(3);
  EXPECT_THROW(ops::rmsnorm(ctx, T(x, {3, 4}), T(w3, {3}), T(y, {3, 4}), 1e-5f), Error);
  EXPECT_THROW(ops::rmsnorm(ctx, T(x, {3, 4}), T(w, {4}), T(y, {4, 3}), 1e-5f), Error);
  EXPECT_THROW(ops::add(ctx, T(x, {3, 4}), T(y, {2, 6}), T(y, {3, 4})), Error);
  EXPECT_THROW(ops::softmax(ctx, T(x, {3, 4}), T(y, {12}), 1.0f), Error);
  ops::rmsnorm(ctx, T(x, {3, 4}), T(w, {4}), T(y, {3, 4}), 0.0f);
  for (float v : y) EXPECT_FLOAT_EQ(v, 1.0f);
}

TEST(Ops, StridedViewsAndCausalSoftmax) {
  Context ctx(2);
  // A [4, 5] view with rows 8 floats apart; padding must stay untouched.
  const int64_t rows = 4, n = 5, ld = 8;
  auto x = random_floats(size_t(rows * ld), 4, -3, 3);
  auto y = poisoned(size_t(rows * ld));
  Tensor xv = T(x, {rows, ld}).slice(1, 0, n), yv = T(y, {rows, ld}).slice(1, 0, n);
  ops::softmax(ctx, xv, yv, 0.5f, /*causal=*/true, /*offset=*/1);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t valid = std::min<int64_t>(n, r + 2);
    double s = 0;
    for (int64_t j = 0; j < n; ++j) {
      const float v = y[size_t(r * ld + j)];
      if (j < valid) s += v;
      else EXPECT_EQ(v, 0.0f);
    }
    EXPECT_NEAR(s, 1.0, 1e-6);
    for (int64_t j = n; j < ld; ++j) EXPECT_TRUE(std::isnan(y[size_t(r * ld + j)]));
  }
}

TEST(Ops, EmbeddingGathersAndChecksIds) {
  Context ctx(2);
  auto table = random_floats(10 * 6, 5);
  std::vector<uint16_t> th(table.size());
  for (size_t i = 0; i < table.size(); ++i) th[i] = cpu::f32_to_bf16(table[i]);
  std::vector<int32_t> ids = {3, 0, 9, 3};
  auto y = poisoned(4 * 6);
  ops::embedding(ctx, Tensor::view(th.data(), DType::BF16, {10, 6}), I(ids), T(y, {4, 6}));
  for (size_t i = 0; i < ids.size(); ++i)
    for (size_t d = 0; d < 6; ++d) EXPECT_EQ(y[i * 6 + d], cpu::bf16_to_f32(th[size_t(ids[i]) * 6 + d]));
  std::vector<int32_t> bad = {1, 10};
  EXPECT_THROW(ops::embedding(ctx, T(table, {10, 6}), I(bad), T(y, {2, 6})), Error);
  std::vector<int32_t> neg = {-1};
  EXPECT_THROW(ops::embedding(ctx, T(table, {10, 6}), I(neg), T(y, {1, 6})), Error);
  std::vector<float> fids = {1.0f};
  EXPECT_THROW(ops::embedding(ctx, T(table, {10, 6}), F(fids), T(y, {1, 6})), Error);  // not i32
}

TEST(Ops, AlibiSlopesMatchBloom) {
  // Powers of two: 2^(-8i/n).
  const auto s8 = ops::alibi_slopes(8);
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(s8[size_t(i)], std::pow(2.0f, -float(i + 1)));
  // Six heads: the four of n=4 (2^-2i) then slopes 1 and 3 of n=8.
  const auto s6 = ops::alibi_slopes(6);
  const float expect6[] = {0.25f, 0.0625f, 0.015625f, 0.00390625f, 0.5f, 0.125f};
  ASSERT_EQ(s6.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(s6[size_t(i)], expect6[i]);
  EXPECT_THROW(ops::alibi_slopes(0), Error);
}

TEST(Ops, RopeFrequencies) {
  RopeConfig c;
  c.rot_dim = 8;
  c.theta = 10000.0f;
  auto f = ops::rope_inv_freq(c, 1);
  ASSERT_EQ(f.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(f[size_t(i)], std::pow(10000.0, -2.0 * i / 8), 1e-7);
  c.scaling = RopeScaling::Linear;
  c.factor = 4.0f;
  auto fl = ops::rope_inv_freq(c, 1);
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(fl[size_t(i)], f[size_t(i)] / 4.0f);
  // llama3: the highest frequency is kept, the lowest divided by factor.
  c.scaling = RopeScaling::Llama3;
  c.factor = 8.0f;
  c.low_freq_factor = 1.0f;
  c.high_freq_factor = 4.0f;
  c.original_max_positions = 64;
  auto f3 = ops::rope_inv_freq(c, 1);
  EXPECT_FLOAT_EQ(f3[0], f[0]);
  EXPECT_FLOAT_EQ(f3[3], f[3] / 8.0f);
  // dynamic: unchanged up to max_positions, then a larger base (lower frequencies).
  c.scaling = RopeScaling::Dynamic;
  c.factor = 2.0f;
  c.max_positions = 16;
  EXPECT_EQ(ops::rope_inv_freq(c, 16), f);
  auto fd = ops::rope_inv_freq(c, 40);
  EXPECT_FLOAT_EQ(fd[0], 1.0f);
  EXPECT_LT(fd[3], f[3]);
  c.rot_dim = 7;
  EXPECT_THROW(ops::rope_inv_freq(c, 1), Error);
}

TEST(Ops, RopeRotatesEachTokenAtItsPosition) {
  Context ctx(2);
  // Token at position 0 is unchanged; the norm of every rotated pair is kept.
  const int64_t n_tok = 3, n_heads = 2, hd = 6;
  auto x = random_floats(size_t(n_tok * n_heads * hd), 6);
  auto x0 = x;
  std::vector<int32_t> pos = {0, 5, 1000};
  std::vector<float> inv = {1.0f, 0.1f};  // rot_dim 4 < head_dim 6
  ops::rope(ctx, T(x, {n_tok, n_heads, hd}), I(pos), F(inv), RopeStyle::NeoX);
  for (int64_t i = 0; i < n_heads * hd; ++i) EXPECT_EQ(x[size_t(i)], x0[size_t(i)]);
  for (int64_t t = 1; t < n_tok; ++t)
    for (int64_t h = 0; h < n_heads; ++h) {
      const float* a = &x[size_t((t * n_heads + h) * hd)];
      const float* b = &x0[size_t((t * n_heads + h) * hd)];
      for (int i = 0; i < 2; ++i)
        EXPECT_NEAR(a[i] * a[i] + a[i + 2] * a[i + 2], b[i] * b[i] + b[i + 2] * b[i + 2], 1e-5);
      EXPECT_NEAR(a[0], b[0] * std::cos(float(pos[size_t(t)])) - b[2] * std::sin(float(pos[size_t(t)])), 1e-5);
      EXPECT_EQ(a[4], b[4]);
      EXPECT_EQ(a[5], b[5]);
    }
  std::vector<int32_t> short_pos = {0};
  EXPECT_THROW(ops::rope(ctx, T(x, {n_tok, n_heads, hd}), I(short_pos), F(inv), RopeStyle::NeoX), Error);
}

// With theta_scale the angles are built by repeated multiplication from the
// position (llama.cpp's form): for a unit pair (1, 0) the rotated pair is
// exactly (cos a_i, sin a_i) with a_0 = p, a_i+1 = a_i * theta_scale.
TEST(Ops, RopeAnglesByRepeatedMultiplication) {
  RopeConfig c;
  c.rot_dim = 8;
  c.theta = 10000.0f;
  const float ts = ops::rope_theta_scale(c);
  EXPECT_EQ(ts, std::pow(10000.0f, -2.0f / 8.0f));
  Context ctx(1);
  const int64_t hd = 8;
  std::vector<float> x(hd, 0.0f);
  for (int i = 0; i < 4; ++i) x[size_t(i)] = 1.0f;  // NeoX pairs (i, i + 4)
  std::vector<int32_t> pos = {777};
  auto inv = ops::rope_inv_freq(c, 1);
  ops::rope(ctx, T(x, {1, 1, hd}), I(pos), F(inv), RopeStyle::NeoX, ts);
  float a = 777.0f;
  for (int i = 0; i < 4; ++i, a *= ts) {
    EXPECT_EQ(x[size_t(i)], std::cos(a)) << i;
    EXPECT_EQ(x[size_t(i + 4)], std::sin(a)) << i;
  }
  // Scaled or factored frequencies keep p * inv_freq[i].
  c.scaling = RopeScaling::Linear;
  c.factor = 2.0f;
  EXPECT_EQ(ops::rope_theta_scale(c), 0.0f);
  c.scaling = RopeScaling::None;
  c.freq_factors = {1.0f, 1.0f, 2.0f, 4.0f};
  EXPECT_EQ(ops::rope_theta_scale(c), 0.0f);
}

// Attention through the op equals a naive computation with masked softmax, for
// a contiguous cache and for the same cache split into shuffled pages.
TEST(Ops, AttentionContiguousEqualsPaged) {
  Context ctx(2);
  const int64_t n_heads = 4, n_kv = 2, hd = 8, n_q = 5, pos0 = 7, n_tok = pos0 + n_q, bs = 4;
  auto q = random_floats(size_t(n_q * n_heads * hd), 7);
  auto kc = random_floats(size_t(n_tok * n_kv * hd), 8);
  auto vc = random_floats(kc.size(), 9);
  auto out = poisoned(q.size());
  ops::KvPool kv{T(kc, {1, n_tok, n_kv, hd}), T(vc, {1, n_tok, n_kv, hd})};
  attend(ctx, T(q, {n_q, n_heads, hd}), kv, {0}, pos0, 0.35f, T(out, {n_q, n_heads, hd}));
  // Naive reference.
  for (int64_t i = 0; i < n_q; ++i)
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t kh = h / (n_heads / n_kv), nk = pos0 + i + 1;
      std::vector<double> s(static_cast<size_t>(nk));
      double mx = -1e30, sum = 0;
      for (int64_t t = 0; t < nk; ++t) {
        double d = 0;
        for (int64_t e = 0; e < hd; ++e) d += q[size_t((i * n_heads + h) * hd + e)] * kc[size_t((t * n_kv + kh) * hd + e)];
        s[size_t(t)] = d * 0.35;
        mx = std::max(mx, s[size_t(t)]);
      }
      for (auto& v : s) sum += (v = std::exp(v - mx));
      for (int64_t e = 0; e < hd; ++e) {
        double o = 0;
        for (int64_t t = 0; t < nk; ++t) o += s[size_t(t)] / sum * vc[size_t((t * n_kv + kh) * hd + e)];
        EXPECT_NEAR(out[size_t((i * n_heads + h) * hd + e)], o, 1e-5);
      }
    }
  // Paged: blocks of 4 tokens stored in reverse order in a pool of 5 blocks.
  const int64_t n_blocks = 5;
  std::vector<float> kp(size_t(n_blocks * bs * n_kv * hd), test::kPoison), vp(kp.size(), test::kPoison);
  std::vector<int32_t> table = {4, 2, 0};
  for (int64_t t = 0; t < n_tok; ++t)
    for (int64_t e = 0; e < n_kv * hd; ++e) {
      const size_t dst = size_t((table[size_t(t / bs)] * bs + t % bs) * n_kv * hd + e);
      kp[dst] = kc[size_t(t * n_kv * hd + e)];
      vp[dst] = vc[size_t(t * n_kv * hd + e)];
    }
  auto out2 = poisoned(q.size());
  ops::KvPool pkv{T(kp, {n_blocks, bs, n_kv, hd}), T(vp, {n_blocks, bs, n_kv, hd})};
  attend(ctx, T(q, {n_q, n_heads, hd}), pkv, table, pos0, 0.35f, T(out2, {n_q, n_heads, hd}));
  EXPECT_LE(norm_err(out2, out), 1e-6);
  // A block table that is too short or points outside the pool is refused.
  EXPECT_THROW(attend(ctx, T(q, {n_q, n_heads, hd}), pkv, {4, 2}, pos0, 0.35f, T(out2, {n_q, n_heads, hd})), Error);
  EXPECT_THROW(attend(ctx, T(q, {n_q, n_heads, hd}), pkv, {4, 2, 5}, pos0, 0.35f, T(out2, {n_q, n_heads, hd})), Error);
  EXPECT_THROW(attend(ctx, T(q, {n_q, n_heads, hd}), pkv, {4, -1, 0}, pos0, 0.35f, T(out2, {n_q, n_heads, hd})), Error);
  // Heads that are not a multiple of kv heads.
  std::vector<float> q3(size_t(n_q * 3 * hd)), o3(q3.size());
  EXPECT_THROW(attend(ctx, T(q3, {n_q, 3, hd}), kv, {0}, pos0, 0.35f, T(o3, {n_q, 3, hd})), Error);
}

// One batched call over sequences of different lengths in one paged pool
// gives the same bits as one call per sequence, and a strided q (heads
// interleaved with k and v, as BLOOM's fused product lays them out) the same
// bits as a contiguous copy.
TEST(Ops, AttentionBatchEqualsPerSequence) {
  for (DType dt : {DType::F32, DType::F16}) {
    Context ctx(3);
    const int64_t n_heads = 4, n_kv = 2, hd = 64, bs = 4, n_blocks = 12;
    const size_t row = size_t(n_kv * hd), esz = dt == DType::F16 ? 2 : 4;
    std::vector<uint8_t> kp(size_t(n_blocks * bs) * row * esz), vp(kp.size());
    auto kf = random_floats(size_t(n_blocks * bs) * row, 21), vf = random_floats(kf.size(), 22);
    ops::convert(ctx, T(kf, {n_blocks * bs, int64_t(row)}), Tensor::view(kp.data(), dt, {n_blocks * bs, int64_t(row)}));
    ops::convert(ctx, T(vf, {n_blocks * bs, int64_t(row)}), Tensor::view(vp.data(), dt, {n_blocks * bs, int64_t(row)}));
    const ops::KvPool pool{Tensor::view(kp.data(), dt, {n_blocks, bs, n_kv, hd}),
                           Tensor::view(vp.data(), dt, {n_blocks, bs, n_kv, hd})};
    // Three sequences: a prompt of 5 after 2 cached, one decode token at 9,
    // one decode token at 0.  Tables of up to 3 blocks.
    std::vector<std::vector<int32_t>> tables = {{7, 1}, {3, 11, 5}, {9}};
    const std::vector<int64_t> nq = {5, 1, 1}, len = {7, 10, 1};
    const int64_t n_q = 7;
    // q as BLOOM's [n, heads, 3, head_dim] product holds it.
    auto qkv = random_floats(size_t(n_q * n_heads * 3 * hd), 23);
    const Tensor qs = Tensor::view(qkv.data(), DType::F32, {n_q, n_heads, hd})
                          .with_strides({n_heads * 3 * hd * 4, 3 * hd * 4, 4});
    std::vector<float> qc(size_t(n_q * n_heads * hd));
    for (int64_t i = 0; i < n_q * n_heads; ++i)
      std::copy_n(&qkv[size_t(i * 3 * hd)], hd, &qc[size_t(i * hd)]);
    std::vector<int32_t> packed(9, 0), lens, starts = {0};
    for (size_t b = 0; b < 3; ++b) {
      std::copy(tables[b].begin(), tables[b].end(), packed.begin() + ptrdiff_t(3 * b));
      lens.push_back(int32_t(len[b]));
      starts.push_back(starts.back() + int32_t(nq[b]));
    }
    ops::KvBatch batch{Tensor::view(packed.data(), DType::I32, {3, 3}), I(lens), I(starts)};
    auto out = poisoned(qc.size());
    ops::attention(ctx, qs, pool, batch, 0.125f, nullptr, T(out, {n_q, n_heads, hd}));
    auto one = poisoned(qc.size());
    int64_t r = 0;
    for (size_t b = 0; b < 3; ++b) {
      const Tensor qb = T(qc, {n_q, n_heads, hd}).slice(0, r, r + nq[b]);
      attend(ctx, qb, pool, tables[b], len[b] - nq[b], 0.125f, T(one, {n_q, n_heads, hd}).slice(0, r, r + nq[b]));
      r += nq[b];
    }
    for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], one[i]) << dtype_name(dt) << " " << i;
    // Lengths that do not cover the queries, or starts that do not cover q.
    lens[1] = 0;
    EXPECT_THROW(ops::attention(ctx, qs, pool, batch, 0.125f, nullptr, T(out, {n_q, n_heads, hd})), Error);
    lens[1] = 10;
    starts[3] = 6;
    EXPECT_THROW(ops::attention(ctx, qs, pool, batch, 0.125f, nullptr, T(out, {n_q, n_heads, hd})), Error);
  }
}

// kv_store puts each token's rows at its slot, converted to the pool's dtype
// as ops::convert converts them, and leaves every other row alone.
TEST(Ops, KvStoreWritesSlots) {
  Context ctx(2);
  const int64_t n_kv = 2, hd = 8, bs = 4, n_blocks = 3, n = 3;
  std::vector<uint16_t> kp(size_t(n_blocks * bs * n_kv * hd), 0x7e00), vp(kp.size(), 0x7e00);
  const ops::KvPool pool{Tensor::view(kp.data(), DType::F16, {n_blocks, bs, n_kv, hd}),
                         Tensor::view(vp.data(), DType::F16, {n_blocks, bs, n_kv, hd})};
  auto k = random_floats(size_t(n * n_kv * hd), 31), v = random_floats(k.size(), 32);
  std::vector<int32_t> slots = {9, 0, 5};
  ops::kv_store(ctx, T(k, {n, n_kv, hd}), T(v, {n, n_kv, hd}), pool, I(slots));
  std::vector<uint16_t> kh(k.size()), vh(v.size());
  ops::convert(ctx, T(k, {n, n_kv, hd}), Tensor::view(kh.data(), DType::F16, {n, n_kv, hd}));
  ops::convert(ctx, T(v, {n, n_kv, hd}), Tensor::view(vh.data(), DType::F16, {n, n_kv, hd}));
  for (int64_t s = 0; s < n_blocks * bs; ++s) {
    const auto it = std::find(slots.begin(), slots.end(), int32_t(s));
    for (int64_t e = 0; e < n_kv * hd; ++e) {
      const size_t at = size_t(s * n_kv * hd + e);
      if (it == slots.end()) {
        EXPECT_EQ(kp[at], 0x7e00);
        EXPECT_EQ(vp[at], 0x7e00);
      } else {
        const size_t src = size_t((it - slots.begin()) * n_kv * hd + e);
        EXPECT_EQ(kp[at], kh[src]);
        EXPECT_EQ(vp[at], vh[src]);
      }
    }
  }
  std::vector<int32_t> wild = {0, 12, 1};
  EXPECT_THROW(ops::kv_store(ctx, T(k, {n, n_kv, hd}), T(v, {n, n_kv, hd}), pool, I(wild)), Error);
  std::vector<int32_t> two = {0, 1};
  EXPECT_THROW(ops::kv_store(ctx, T(k, {n, n_kv, hd}), T(v, {n, n_kv, hd}), pool, I(two)), Error);
}

// The fronts check that every operand is on one device before anything is
// read, and a device without an implementation is an error naming it.
TEST(Ops, DispatchChecksTheDevice) {
  Context ctx(1);
  std::vector<float> x(8, 1.0f), y(8, 0.0f), w(4, 1.0f);
  // Device pointers are never dereferenced by the front: these point at host
  // memory but claim to be on the GPU.
  const Tensor xg = Tensor::view(x.data(), DType::F32, {2, 4}, Device::CUDA);
  const Tensor yg = Tensor::view(y.data(), DType::F32, {2, 4}, Device::CUDA);
  const Tensor wg = Tensor::view(w.data(), DType::F32, {4}, Device::CUDA);
  try {
    ops::add(ctx, T(x, {2, 4}), xg, T(y, {2, 4}));
    ADD_FAILURE() << "mixed devices accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("add: a is on cpu but b is on cuda"), std::string::npos)
        << e.what();
  }
  try {
    ops::rmsnorm(ctx, xg, wg, yg, 1e-5f);
    ADD_FAILURE() << "cuda tensors accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rmsnorm: no implementation on cuda"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(y, std::vector<float>(8, 0.0f));
  // An absent bias does not count; host tensors run on the CPU.
  std::vector<float> wm(16, 0.5f);
  ops::matmul(ctx, T(x, {2, 4}), T(wm, {4, 4}), nullptr, T(y, {2, 4}));
  EXPECT_EQ(y[0], 2.0f);
}

TEST(Ops, ConvertRoundTrips) {
  Context ctx(2);
  auto x = random_floats(37 * 3, 10, -5, 5);
  std::vector<uint16_t> h(x.size());
  auto y = poisoned(x.size());
  ops::convert(ctx, T(x, {3, 37}), Tensor::view(h.data(), DType::F16, {3, 37}));
  ops::convert(ctx, Tensor::view(h.data(), DType::F16, {3, 37}), T(y, {3, 37}));
  EXPECT_LE(norm_err(y, x), 1e-3);
  std::vector<uint16_t> b(x.size());
  ops::convert(ctx, Tensor::view(h.data(), DType::F16, {3, 37}), Tensor::view(b.data(), DType::BF16, {3, 37}));
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(b[i], cpu::f32_to_bf16(cpu::f16_to_f32(h[i])));
}

TEST(ThreadPool, RunsEveryChunkOnce) {
  for (int n : {1, 2, 3, 7}) {
    ThreadPool pool(n);
    for (int64_t total : {0, 1, 5, 1000, 1001}) {
      std::vector<int> hits(size_t(total), 0);
      pool.parallel_for(total, 4, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
      });
      for (int h : hits) ASSERT_EQ(h, 1) << "threads " << n << " total " << total;
    }
    std::vector<int> seen(size_t(n), 0);
    for (int rep = 0; rep < 100; ++rep) pool.run([&](int t, int nt) { EXPECT_EQ(nt, n); ++seen[size_t(t)]; });
    for (int s : seen) EXPECT_EQ(s, 100);
  }
  EXPECT_THROW(ThreadPool(0), Error);
}

TEST(Tensor, ViewsAndErrors) {
  std::vector<float> buf(24);
  std::iota(buf.begin(), buf.end(), 0.0f);
  Tensor t = Tensor::view(buf.data(), DType::F32, {2, 3, 4});
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.rows(), 6);
  EXPECT_EQ(t.row_stride_bytes(), 16);
  Tensor s = t.slice(2, 1, 3);
  EXPECT_FALSE(s.is_contiguous());
  EXPECT_EQ(s.data_as<float>()[0], 1.0f);
  EXPECT_EQ(static_cast<float*>(s.row(1))[0], 5.0f);
  Tensor sel = t.select(0, 1);
  EXPECT_EQ(sel.ndim(), 2);
  EXPECT_EQ(sel.data_as<float>()[0], 12.0f);
  Tensor tr = t.reshape({6, 4}).transpose(0, 1);
  EXPECT_EQ(tr.dim(0), 4);
  EXPECT_EQ(tr.stride_bytes(1), 16);
  EXPECT_THROW(t.slice(0, 1, 3), Error);
  EXPECT_THROW(t.select(3, 0), Error);
  EXPECT_THROW(t.reshape({5, 5}), Error);
  EXPECT_THROW(s.reshape({12}), Error);
  EXPECT_THROW(t.slice(1, 0, 2).row_stride_bytes(), Error);  // [2, 2, 4]: outer dims do not collapse
  EXPECT_EQ(t.shape_str(), "[2, 3, 4] f32");
  EXPECT_THROW(parse_dtype("f8", "--dtype"), Error);
  EXPECT_EQ(parse_dtype("bfloat16", "--dtype"), DType::BF16);
  EXPECT_THROW(row_bytes(DType::F32, -1), Error);
}

TEST(Backend, CpuBackendAllocatesAlignedAndCopies) {
  Backend& b = cpu_backend();
  EXPECT_EQ(b.device(), Device::CPU);
  auto buf = b.allocate(1000);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buf->data()) % kHostAlignment, 0u);
  std::vector<char> src(1000, 'x');
  b.copy(buf->data(), Device::CPU, src.data(), Device::CPU, 1000);
  EXPECT_EQ(static_cast<char*>(buf->data())[999], 'x');
  EXPECT_THROW(b.copy(buf->data(), Device::CUDA, src.data(), Device::CPU, 10), Error);
  EXPECT_TRUE(b.supports(Op::MatMul, DType::BF16));
  EXPECT_FALSE(b.supports(Op::MatMul, DType::I32));
  EXPECT_FALSE(b.supports(Op::RmsNorm, DType::F16));
  b.synchronize();
}

TEST(Backend, MappedFileRangesAreChecked) {
  const std::string path = ::testing::TempDir() + "/runnel_mapped.bin";
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("0123456789", f);
  std::fclose(f);
  MappedFile m(path);
  EXPECT_EQ(m.size(), 10u);
  EXPECT_EQ(*m.range(3, 2, "field"), '3');
  EXPECT_NO_THROW(m.range(10, 0, "end"));
  EXPECT_THROW(m.range(9, 2, "tensor x"), Error);
  EXPECT_THROW(m.range(~uint64_t(0), 2, "tensor x"), Error);
  try {
    m.range(5, 100, "tensor w");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor w"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
  EXPECT_THROW(MappedFile("/nonexistent/file"), Error);
  EXPECT_THROW(MappedFile("/tmp"), Error);
}

TEST(Isa, SelectionAndVersion) {
  EXPECT_TRUE(cpu::isa_supported(cpu::Isa::Scalar));
  const cpu::Isa before = cpu::selected_isa();
  cpu::select_isa(cpu::Isa::Scalar);
  EXPECT_STREQ(cpu_isa(), "scalar");
  cpu::select_isa(before);
  const std::string v = version_string();
  EXPECT_NE(v.find("runnel "), std::string::npos);
  EXPECT_NE(v.find("backends: cpu"), std::string::npos);
  EXPECT_NE(v.find(std::string("cpu isa: ") + cpu_isa()), std::string::npos);
}

// The CLI: --version, RUNNEL_CPU_ISA forcing, and bad flags.
int run_cli(const std::string& args, std::string* out) {
  const std::string cmd = std::string(RUNNEL_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  out->clear();
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  const int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(Cli, VersionAndIsaOverride) {
  std::string out;
  ASSERT_EQ(run_cli("--version", &out), 0) << out;
  EXPECT_NE(out.find("runnel " RUNNEL_VERSION), std::string::npos) << out;
  ASSERT_EQ(run_cli("", &out), 0);
  ASSERT_EQ(run_cli("--bogus-flag", &out), 2) << out;
  EXPECT_NE(out.find("bogus-flag"), std::string::npos) << out;
  ASSERT_EQ(run_cli("", &out), 0);
  setenv("RUNNEL_CPU_ISA", "scalar", 1);
  ASSERT_EQ(run_cli("--version", &out), 0) << out;
  EXPECT_NE(out.find("cpu isa: scalar"), std::string::npos) << out;
  setenv("RUNNEL_CPU_ISA", "sse9", 1);
  EXPECT_NE(run_cli("--version", &out), 0);
  EXPECT_NE(out.find("RUNNEL_CPU_ISA"), std::string::npos) << out;
  unsetenv("RUNNEL_CPU_ISA");
}

}  // namespace
}  // namespace runnel

namespace runnel {
namespace {

// The CUDA backend round-trips host data through device memory.  Skips when the
// build has no CUDA or no GPU is visible.
TEST(CudaBackend, RoundTripThroughDeviceMemory) {
  Backend* cuda = cuda_backend();
  if (!cuda) {
    const auto b = compiled_backends();
    GTEST_SKIP() << (std::find(b.begin(), b.end(), "cuda") == b.end() ? "built without CUDA"
                                                                       : "no CUDA device visible");
  }
  EXPECT_EQ(cuda->device(), Device::CUDA);
  std::vector<float> src = test::random_floats(1000, 1), back(1000, 0.0f);
  auto dev = cuda->allocate(src.size() * sizeof(float));
  cuda->copy(dev->data(), Device::CUDA, src.data(), Device::CPU, src.size() * sizeof(float));
  cuda->copy(back.data(), Device::CPU, dev->data(), Device::CUDA, src.size() * sizeof(float));
  cuda->synchronize();
  EXPECT_EQ(src, back);
  EXPECT_FALSE(cuda->supports(Op::MatMul, DType::F32));
}

// A Context names its device, the backend holding that device's memory and
// the device's own resources; a device the build or machine lacks is refused
// when the context (or a model on it) is made.
TEST(Context, NamesItsDeviceBackendAndResources) {
  Context cpu(2);
  EXPECT_EQ(cpu.device(), Device::CPU);
  EXPECT_EQ(&cpu.backend(), &cpu_backend());
  EXPECT_EQ(cpu.resources(), nullptr);
  EXPECT_EQ(cpu.pool.size(), 2);
  if (cuda_backend()) {
    Context gpu(Device::CUDA, 1);
    EXPECT_EQ(gpu.device(), Device::CUDA);
    EXPECT_EQ(&gpu.backend(), cuda_backend());
    EXPECT_NE(gpu.resources(), nullptr);  // a stream and the cuBLAS handles
    return;
  }
  const auto b = compiled_backends();
  const bool built = std::find(b.begin(), b.end(), "cuda") != b.end();
  const std::string want = built ? "device cuda: no CUDA device found"
                                 : "device cuda: this build of runnel has no CUDA backend";
  try {
    Context gpu(Device::CUDA, 1);
    ADD_FAILURE() << "a CUDA context without a CUDA backend";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), want);
  }
  LoadOptions lo;
  lo.device = Device::CUDA;
  try {
    Model::load(std::string(RUNNEL_TEST_DATA_DIR) + "/models/llama-mha", lo);
    ADD_FAILURE() << "a model loaded onto a missing CUDA device";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), want);
  }
}

}  // namespace
}  // namespace runnel

// Every SIMD kernel against the scalar reference, for every ISA this CPU runs,
// on random inputs of awkward sizes with poisoned outputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/half.hpp"
#include "cpu/kernels.hpp"
#include "test_util.hpp"

namespace runnel::cpu {
namespace {

using test::norm_err;
using test::poisoned;
using test::random_floats;

const int64_t kSizes[] = {1, 3, 17, 33, 4095, 4097};

// Tolerances, as normalised errors against the scalar (double-accumulating) reference.
constexpr double kTolF32 = 2e-6;       // reductions over f32
constexpr double kTolTranscend = 2e-6; // exp / erf / tanh approximations

class KernelTest : public ::testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    if (!isa_supported(GetParam())) GTEST_SKIP() << isa_name(GetParam()) << " is not supported by this CPU";
    k = kernels_for(GetParam());
    ref = kernels_for(Isa::Scalar);
  }
  const KernelTable* k = nullptr;
  const KernelTable* ref = nullptr;
};

TEST(Half, RoundTripsAndRoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);
  EXPECT_EQ(f32_to_f16(5.9604644775390625e-08f), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(2.98023223876953125e-08f), 0x0000);  // half of it: ties to even (0)
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);         // tie between 1 and 1+2^-10: even
  EXPECT_EQ(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(NAN))));
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), h) << "f16 bits " << h;
  }
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f808000u)), 0x3f80);  // tie: even
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f818000u)), 0x3f82);
  EXPECT_EQ(bf16_to_f32(0x4049), bits_to_f32(0x40490000u));
}

TEST_P(KernelTest, Convert) {
  for (int64_t n : kSizes) {
    const auto x = random_floats(size_t(n), 1, -100, 100);
    for (DType dt : {DType::F16, DType::BF16}) {
      std::vector<uint16_t> h(size_t(n), 0xffff), hr(size_t(n), 0);
      k->from_f32[int(dt)](x.data(), h.data(), n);
      ref->from_f32[int(dt)](x.data(), hr.data(), n);
      EXPECT_EQ(h, hr) << dtype_name(dt) << " n=" << n;
      auto y = poisoned(size_t(n)), yr = poisoned(size_t(n));
      k->to_f32[int(dt)](h.data(), y.data(), n);
      ref->to_f32[int(dt)](h.data(), yr.data(), n);
      EXPECT_EQ(0.0, norm_err(y, yr)) << dtype_name(dt) << " n=" << n;
    }
  }
}

// Weight dtype x matmul: every m from 1 to 9 (tiles of 4 plus remainders),
// awkward k and n, strided x and y rows.
TEST_P(KernelTest, MatmulSmallBatch) {
  struct Case { int64_t m, n, k; };
  const Case cases[] = {{1, 1, 1}, {1, 17, 33}, {3, 5, 4095}, {4, 9, 17}, {5, 33, 4097}, {9, 7, 3}, {2, 4, 64}};
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    const double tol = kTolF32;
    for (const Case& c : cases) {
      const int64_t ldx = c.k + 3, ldy = c.n + 5;
      const auto x = random_floats(size_t(c.m * ldx), 2);
      auto wf = random_floats(size_t(c.n * c.k), 3);
      const auto bias = random_floats(size_t(c.n), 4);
      std::vector<uint8_t> w(size_t(c.n * c.k) * traits(dt).type_size);
      ref->from_f32[int(dt)](wf.data(), w.data(), c.n * c.k);
      for (bool with_bias : {false, true}) {
        auto y = poisoned(size_t(c.m * ldy)), yr = poisoned(size_t(c.m * ldy));
        MatmulArgs a{x.data(), ldx, w.data(), c.k * traits(dt).type_size, with_bias ? bias.data() : nullptr,
                     y.data(), ldy, c.m, c.k};
        // Split n in two ranges to check the range arguments.
        const int64_t mid = c.n / 2;
        k->matmul[int(dt)](a, 0, mid);
        k->matmul[int(dt)](a, mid, c.n);
        a.y = yr.data();
        ref->matmul[int(dt)](a, 0, c.n);
        for (int64_t i = 0; i < c.m; ++i) {
          EXPECT_LE(norm_err(y.data() + i * ldy, yr.data() + i * ldy, size_t(c.n)), tol)
              << dtype_name(dt) << " m=" << c.m << " n=" << c.n << " k=" << c.k << " row " << i;
          // Padding between rows stays untouched.
          for (int64_t j = c.n; j < ldy && i + 1 < c.m; ++j) EXPECT_TRUE(std::isnan(y[size_t(i * ldy + j)]));
        }
      }
    }
  }
}

TEST_P(KernelTest, GemmF32) {
  struct Case { int64_t m, n, k; };
  const Case cases[] = {{1, 3, 17}, {17, 33, 300}, {70, 9, 513}, {33, 17, 4097}, {5, 5, 0}};
  for (const Case& c : cases) {
    const auto x = random_floats(size_t(c.m * c.k), 5);
    const auto w = random_floats(size_t(c.n * c.k), 6);
    const auto bias = random_floats(size_t(c.n), 7);
    auto y = poisoned(size_t(c.m * c.n)), yr = poisoned(size_t(c.m * c.n));
    MatmulArgs a{x.data(), c.k, w.data(), c.k * 4, bias.data(), y.data(), c.n, c.m, c.k};
    k->gemm_f32(a, 0, c.n);
    a.y = yr.data();
    ref->matmul[int(DType::F32)](a, 0, c.n);
    EXPECT_LE(norm_err(y, yr), kTolF32) << "m=" << c.m << " n=" << c.n << " k=" << c.k;
  }
}

TEST_P(KernelTest, Norms) {
  for (int64_t n : kSizes) {
    const auto x = random_floats(size_t(n), 8, -3, 5);
    const auto w = random_floats(size_t(n), 9);
    const auto b = random_floats(size_t(n), 10);
    auto y = poisoned(size_t(n)), yr = poisoned(size_t(n));
    k->rmsnorm(x.data(), w.data(), y.data(), n, 1e-5f);
    ref->rmsnorm(x.data(), w.data(), yr.data(), n, 1e-5f);
    EXPECT_LE(norm_err(y, yr), kTolF32) << "rmsnorm n=" << n;
    for (bool affine : {false, true}) {
      y = poisoned(size_t(n));
      yr = poisoned(size_t(n));
      k->layernorm(x.data(), affine ? w.data() : nullptr, affine ? b.data() : nullptr, y.data(), n, 1e-5f);
      ref->layernorm(x.data(), affine ? w.data() : nullptr, affine ? b.data() : nullptr, yr.data(), n, 1e-5f);
      // n = 1 normalises to exactly 0 (+ bias); the error is absolute there.
      EXPECT_LE(norm_err(y, yr), n == 1 ? 1e-6 : 1e-5) << "layernorm n=" << n << " affine=" << affine;
    }
  }
}

TEST_P(KernelTest, Rope) {
  for (RopeStyle style : {RopeStyle::NeoX, RopeStyle::GptJ}) {
    for (int64_t rot : {2, 6, 34, 128}) {
      const int64_t n_heads = 3, head_stride = rot + 5;
      const auto x0 = random_floats(size_t(n_heads * head_stride), 11);
      const auto ang = random_floats(size_t(rot / 2), 12, -3, 3);
      std::vector<float> c(ang.size()), s(ang.size());
      for (size_t i = 0; i < ang.size(); ++i) {
        c[i] = std::cos(ang[i]);
        s[i] = std::sin(ang[i]);
      }
      auto x = x0, xr = x0;
      k->rope(x.data(), n_heads, head_stride, rot, c.data(), s.data(), style);
      ref->rope(xr.data(), n_heads, head_stride, rot, c.data(), s.data(), style);
      EXPECT_LE(norm_err(x, xr), 1e-6) << "rot=" << rot;
      // The dims past rot_dim are untouched.
      for (int64_t h = 0; h < n_heads; ++h)
        for (int64_t d = rot; d < head_stride; ++d)
          EXPECT_EQ(x[size_t(h * head_stride + d)], x0[size_t(h * head_stride + d)]);
    }
  }
}

TEST(KernelRef, RopeLayouts) {
  // A 4-dim head rotated by angles {a, b}: NeoX pairs (0, 2) and (1, 3), GPT-J (0, 1) and (2, 3).
  const KernelTable* ref = kernels_for(Isa::Scalar);
  const float c[2] = {0.0f, 1.0f}, s[2] = {1.0f, 0.0f};  // a = 90 degrees, b = 0
  float neox[4] = {1, 2, 3, 4}, gptj[4] = {1, 2, 3, 4};
  ref->rope(neox, 1, 4, 4, c, s, RopeStyle::NeoX);
  ref->rope(gptj, 1, 4, 4, c, s, RopeStyle::GptJ);
  EXPECT_FLOAT_EQ(neox[0], -3); EXPECT_FLOAT_EQ(neox[2], 1);
  EXPECT_FLOAT_EQ(neox[1], 2);  EXPECT_FLOAT_EQ(neox[3], 4);
  EXPECT_FLOAT_EQ(gptj[0], -2); EXPECT_FLOAT_EQ(gptj[1], 1);
  EXPECT_FLOAT_EQ(gptj[2], 3);  EXPECT_FLOAT_EQ(gptj[3], 4);
}

TEST_P(KernelTest, Softmax) {
  for (int64_t n : kSizes) {
    const auto x = random_floats(size_t(n), 13, -20, 20);
    for (int64_t valid : {n, (n + 1) / 2, int64_t(1)}) {
      for (float slope : {0.0f, -0.0625f}) {
        auto y = poisoned(size_t(n)), yr = poisoned(size_t(n));
        k->softmax(x.data(), y.data(), n, valid, 0.7f, slope);
        ref->softmax(x.data(), yr.data(), n, valid, 0.7f, slope);
        EXPECT_LE(norm_err(y, yr), kTolTranscend) << "n=" << n << " valid=" << valid;
        double sum = 0;
        for (int64_t j = 0; j < valid; ++j) sum += y[size_t(j)];
        EXPECT_NEAR(sum, 1.0, 1e-5);
        for (int64_t j = valid; j < n; ++j) EXPECT_EQ(y[size_t(j)], 0.0f);
      }
    }
  }
  // Large logits must not overflow.
  std::vector<float> big = {1000.0f, 999.0f, -1000.0f}, y(3);
  k->softmax(big.data(), y.data(), 3, 3, 1.0f, 0.0f);
  EXPECT_NEAR(y[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
  EXPECT_EQ(y[2], 0.0f);
}

TEST_P(KernelTest, Activations) {
  for (int64_t n : kSizes) {
    const auto x = random_floats(size_t(n), 14, -12, 12);
    for (Activation a : {Activation::Relu, Activation::Gelu, Activation::GeluTanh, Activation::Silu}) {
      auto y = poisoned(size_t(n)), yr = poisoned(size_t(n));
      k->activation(a, x.data(), y.data(), n);
      ref->activation(a, x.data(), yr.data(), n);
      EXPECT_LE(norm_err(y, yr), kTolTranscend) << "act " << int(a) << " n=" << n;
    }
    const auto up = random_floats(size_t(n), 15);
    auto y = poisoned(size_t(n)), yr = poisoned(size_t(n));
    k->swiglu(x.data(), up.data(), y.data(), n);
    ref->swiglu(x.data(), up.data(), yr.data(), n);
    EXPECT_LE(norm_err(y, yr), kTolTranscend) << "swiglu n=" << n;
    y = poisoned(size_t(n));
    yr = poisoned(size_t(n));
    k->add(x.data(), up.data(), y.data(), n);
    ref->add(x.data(), up.data(), yr.data(), n);
    EXPECT_EQ(norm_err(y, yr), 0.0) << "add n=" << n;
  }
}

TEST(KernelRef, ActivationValues) {
  const KernelTable* ref = kernels_for(Isa::Scalar);
  const float x[4] = {-1.0f, 0.0f, 0.5f, 2.0f};
  float y[4];
  ref->activation(Activation::Gelu, x, y, 4);
  EXPECT_NEAR(y[0], -0.15865525393145707, 1e-7);
  EXPECT_NEAR(y[3], 1.9544997361036416, 1e-6);
  ref->activation(Activation::GeluTanh, x, y, 4);
  EXPECT_NEAR(y[0], -0.15880800939172324, 1e-7);
  ref->activation(Activation::Silu, x, y, 4);
  EXPECT_NEAR(y[2], 0.5 / (1 + std::exp(-0.5)), 1e-7);
  ref->activation(Activation::Relu, x, y, 4);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[3], 2.0f);
}

// Attention with GQA, ALiBi, f32/f16 caches, contiguous and paged layouts.
TEST_P(KernelTest, Attention) {
  struct Case { int64_t n_heads, n_kv, head_dim, n_q, pos0, block; bool paged; };
  const Case cases[] = {{4, 4, 17, 1, 0, 64, false}, {8, 2, 64, 3, 30, 16, true}, {6, 3, 33, 17, 0, 5, true},
                        {2, 1, 128, 1, 4096, 4097, false}, {3, 1, 16, 5, 2, 1, true}};
  for (const Case& c : cases) {
    for (DType kvt : {DType::F32, DType::F16}) {
      for (bool alibi : {false, true}) {
        const int64_t n_kv_tok = c.pos0 + c.n_q;
        const int64_t n_blocks = (n_kv_tok + c.block - 1) / c.block + 2;
        const int64_t es = traits(kvt).type_size;
        const int64_t tok_stride = c.n_kv * c.head_dim * es;
        std::vector<int32_t> table;
        for (int64_t b = 0; b < n_blocks; ++b) table.push_back(int32_t(n_blocks - 1 - b));  // reversed
        const auto kf = random_floats(size_t(n_blocks * c.block * c.n_kv * c.head_dim), 16);
        const auto vf = random_floats(kf.size(), 17);
        std::vector<uint8_t> kb(kf.size() * size_t(es)), vb(kb.size());
        ref->from_f32[int(kvt)](kf.data(), kb.data(), int64_t(kf.size()));
        ref->from_f32[int(kvt)](vf.data(), vb.data(), int64_t(vf.size()));
        const auto q = random_floats(size_t(c.n_q * c.n_heads * c.head_dim), 18, -2, 2);
        std::vector<float> slopes;
        for (int64_t h = 0; h < c.n_heads; ++h) slopes.push_back(-0.5f / float(h + 1));
        AttentionArgs a{};
        a.q = q.data();
        a.q_tok_stride = c.n_heads * c.head_dim;
        a.q_head_stride = c.head_dim;
        a.out_tok_stride = c.n_heads * c.head_dim;
        a.k = kb.data();
        a.v = vb.data();
        a.kv_dtype = kvt;
        a.kv_tok_stride = tok_stride;
        a.kv_head_stride = c.head_dim * es;
        a.block_size = c.block;
        a.block_stride = c.block * tok_stride;
        a.block_table = c.paged ? table.data() : nullptr;
        a.n_q = c.n_q;
        a.n_heads = c.n_heads;
        a.n_kv_heads = c.n_kv;
        a.head_dim = c.head_dim;
        a.pos0 = c.pos0;
        a.scale = 1.0f / std::sqrt(float(c.head_dim));
        a.alibi_slopes = alibi ? slopes.data() : nullptr;
        auto out = poisoned(q.size()), outr = poisoned(q.size());
        std::vector<float> scratch(static_cast<size_t>(n_kv_tok));
        a.out = out.data();
        k->attention(a, 0, 1, scratch.data());
        k->attention(a, 1, c.n_heads, scratch.data());
        a.out = outr.data();
        ref->attention(a, 0, c.n_heads, scratch.data());
        // AVX-512 with an f16 cache and head_dim 64 or 128 rounds q and the
        // probabilities to f16, as llama.cpp does (see F16OnAvx512SumsInLlamaCppOrder).
        const bool f16_rounding =
            kvt == DType::F16 && k->isa == Isa::Avx512 && (c.head_dim == 64 || c.head_dim == 128);
        EXPECT_LE(norm_err(out, outr), f16_rounding ? 1e-3 : 1e-5)
            << "heads " << c.n_heads << "/" << c.n_kv << " d=" << c.head_dim << " n_q=" << c.n_q
            << " pos0=" << c.pos0 << " " << dtype_name(kvt) << " alibi=" << alibi;
      }
    }
  }
}

// ggml's vector expf (kernels' exp_ggml), one lane.
float exp_ggml_scalar(float x) {
  const float n = std::fma(x, 0x1.715476p+0f, 0x1.8p23f) - 0x1.8p23f;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                           std::fma(0x1.ffffecp-1f, b, 1.0f));
  if (std::fabs(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
  return std::ldexp(j, int(n));
}

// Lane tree: pairs (i, i + 8), (i, i + 4), (i, i + 2), (0, 1).
float lane_tree(std::vector<float> v) {
  for (size_t w = 8; w >= 1; w /= 2)
    for (size_t i = 0; i < w; ++i) v[i] = v[i] + v[i + w];
  return v[0];
}

float round_f16(float x) { return f16_to_f32(f32_to_f16(x)); }

// One query of llama.cpp's f16 attention, written out one addition at a time
// (see kernels/cpu/attention.cpp): `block` is the order of a block of queries.
std::vector<float> ggml_attention_one(const float* q, const std::vector<float>& K, const std::vector<float>& V,
                                      int64_t n_kv, int64_t D, float scale, bool block) {
  const int64_t NV = D / 16;
  std::vector<float> qh(static_cast<size_t>(D)), s(static_cast<size_t>(n_kv));
  for (int64_t d = 0; d < D; ++d) qh[size_t(d)] = round_f16(q[d]);
  for (int64_t t = 0; t < n_kv; ++t) {
    const float* k = &K[size_t(t * D)];
    std::vector<float> lane(16);
    for (int l = 0; l < 16; ++l) {
      if (block) {
        float acc = qh[size_t(l)] * k[l];
        for (int64_t c = 1; c < NV; ++c) acc = std::fma(qh[size_t(16 * c + l)], k[16 * c + l], acc);
        lane[size_t(l)] = acc;
      } else {
        float acc[4];
        for (int u = 0; u < 4; ++u) acc[u] = qh[size_t(16 * u + l)] * k[16 * u + l];
        for (int64_t c = 4; c < NV; ++c) acc[c % 4] = std::fma(qh[size_t(16 * c + l)], k[16 * c + l], acc[c % 4]);
        lane[size_t(l)] = (acc[0] + acc[2]) + (acc[1] + acc[3]);
      }
    }
    s[size_t(t)] = lane_tree(lane) * scale;
  }
  float mx = -INFINITY;
  for (float x : s) mx = std::max(mx, x);
  std::vector<float> e(size_t((n_kv + 15) / 16 * 16), 0.0f);
  for (int64_t t = 0; t < n_kv; ++t) e[size_t(t)] = exp_ggml_scalar(s[size_t(t)] - mx);
  double sum = 0;
  for (size_t c = 0; c < e.size(); c += 16) sum += double(lane_tree(std::vector<float>(e.begin() + long(c), e.begin() + long(c) + 16)));
  const float inv = float(1.0 / sum);
  const int64_t slots = block ? 16 : 64;
  std::vector<float> out(static_cast<size_t>(D));
  for (int64_t d = 0; d < D; ++d) {
    std::vector<float> slot(static_cast<size_t>(slots), 0.0f);
    for (int64_t t = 0; t < n_kv; ++t) {
      const float p = round_f16(e[size_t(t)] * inv);
      slot[size_t(t % slots)] = std::fma(p, V[size_t(t * D + d)], slot[size_t(t % slots)]);
    }
    std::vector<float> lane(16);
    for (int l = 0; l < 16; ++l)
      lane[size_t(l)] = block ? slot[size_t(l)]
                              : (slot[size_t(l)] + slot[size_t(32 + l)]) + (slot[size_t(16 + l)] + slot[size_t(48 + l)]);
    out[size_t(d)] = lane_tree(lane);
  }
  return out;
}

// With an f16 cache and head_dim 64 or 128, the AVX-512 attention gives the
// bits of llama.cpp's computation (emulated above), for one query and for a
// block, over fewer and more than 64 keys and a partial last chunk of 16.
TEST(Attention, F16OnAvx512SumsInLlamaCppOrder) {
  if (!isa_supported(Isa::Avx512)) GTEST_SKIP() << "AVX-512 is not supported by this CPU";
  const KernelTable* k = kernels_for(Isa::Avx512);
  for (int64_t D : {64, 128}) {
    for (int64_t n_q : {1, 4}) {
      const int64_t n_heads = 6, n_kv_heads = 2, pos0 = 147, n_tok = pos0 + n_q;
      auto kf = random_floats(size_t(n_tok * n_kv_heads * D), 31, -2, 2);
      auto vf = random_floats(kf.size(), 32, -2, 2);
      std::vector<uint16_t> kb(kf.size()), vb(kf.size());
      for (size_t i = 0; i < kf.size(); ++i) {
        kb[i] = f32_to_f16(kf[i]);
        vb[i] = f32_to_f16(vf[i]);
        kf[i] = f16_to_f32(kb[i]);
        vf[i] = f16_to_f32(vb[i]);
      }
      const auto q = random_floats(size_t(n_q * n_heads * D), 33, -3, 3);
      AttentionArgs a{};
      a.q = q.data();
      a.q_tok_stride = n_heads * D;
      a.q_head_stride = D;
      a.out_tok_stride = n_heads * D;
      a.k = kb.data();
      a.v = vb.data();
      a.kv_dtype = DType::F16;
      a.kv_tok_stride = n_kv_heads * D * 2;
      a.kv_head_stride = D * 2;
      a.block_size = n_tok;
      a.block_stride = n_tok * a.kv_tok_stride;
      a.n_q = n_q;
      a.n_heads = n_heads;
      a.n_kv_heads = n_kv_heads;
      a.head_dim = D;
      a.pos0 = pos0;
      a.scale = 0.125f;
      a.block_order = n_q > 1;
      auto out = poisoned(q.size());
      std::vector<float> scratch(static_cast<size_t>(n_tok));
      a.out = out.data();
      k->attention(a, 0, n_heads, scratch.data());
      int mismatches = 0;
      for (int64_t i = 0; i < n_q; ++i)
        for (int64_t h = 0; h < n_heads; ++h) {
          const int64_t kh = h / (n_heads / n_kv_heads), n_kv = pos0 + i + 1;
          std::vector<float> K(size_t(n_kv * D)), V(K.size());
          for (int64_t t = 0; t < n_kv; ++t)
            for (int64_t d = 0; d < D; ++d) {
              K[size_t(t * D + d)] = kf[size_t((t * n_kv_heads + kh) * D + d)];
              V[size_t(t * D + d)] = vf[size_t((t * n_kv_heads + kh) * D + d)];
            }
          const auto want = ggml_attention_one(&q[size_t((i * n_heads + h) * D)], K, V, n_kv, D, a.scale, n_q > 1);
          for (int64_t d = 0; d < D; ++d) mismatches += out[size_t((i * n_heads + h) * D + d)] != want[size_t(d)];
        }
      EXPECT_EQ(mismatches, 0) << "D=" << D << " n_q=" << n_q;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, KernelTest, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

}  // namespace
}  // namespace runnel::cpu

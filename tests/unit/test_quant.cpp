// Quantized weight types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): bit-exact dequantization of
// hand-made blocks, the reference quantizers, every ISA's matmul against the
// scalar reference, and a GGUF model with quantized weights against f32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/half.hpp"
#include "cpu/kernels.hpp"
#include "cpu/quant.hpp"
#include "runnel/dtype.hpp"
#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "runnel/model.hpp"
#include "test_gguf_util.hpp"
#include "test_util.hpp"

namespace runnel {
namespace {

using cpu::f16_to_f32;
using cpu::f32_to_f16;
using test::norm_err;
using test::poisoned;
using test::random_floats;

const DType kQuantTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1};

std::vector<float> dequant(DType dt, const void* blocks, int64_t n) {
  std::vector<float> y = poisoned(size_t(n));
  traits(dt).to_float(blocks, y.data(), n);
  return y;
}

std::vector<uint8_t> quantize(DType dt, const std::vector<float>& x) {
  std::vector<uint8_t> q(row_bytes(dt, int64_t(x.size())), 0xa5);
  traits(dt).from_float(x.data(), q.data(), int64_t(x.size()));
  return q;
}

TEST(QuantTraits, RowsFollowGgmlLayouts) {
  struct Row {
    DType dt;
    const char* name;
    int64_t bytes;
    gguf::GgmlType g;
    DType act;
  };
  for (const Row& r : {Row{DType::Q8_0, "q8_0", 34, gguf::GgmlType::Q8_0, DType::Q8_0},
                       Row{DType::Q4_0, "q4_0", 18, gguf::GgmlType::Q4_0, DType::Q8_0},
                       Row{DType::Q4_1, "q4_1", 20, gguf::GgmlType::Q4_1, DType::Q8_1},
                       Row{DType::Q5_0, "q5_0", 22, gguf::GgmlType::Q5_0, DType::Q8_0},
                       Row{DType::Q5_1, "q5_1", 24, gguf::GgmlType::Q5_1, DType::Q8_1}}) {
    const DTypeTraits& t = traits(r.dt);
    EXPECT_EQ(t.name, r.name);
    EXPECT_EQ(t.block_size, 32);
    EXPECT_EQ(t.type_size, r.bytes);
    EXPECT_TRUE(t.is_float);
    EXPECT_NE(t.to_float, nullptr);
    EXPECT_NE(t.from_float, nullptr);
    EXPECT_EQ(t.vec_dot_type, r.act);
    EXPECT_EQ(row_bytes(r.dt, 4096), size_t(128 * r.bytes));
    EXPECT_THROW(row_bytes(r.dt, 48), Error);
    EXPECT_EQ(gguf::ggml_type_of(r.dt), r.g);
    const gguf::GgmlTypeInfo* info = gguf::ggml_type_info(uint32_t(r.g));
    ASSERT_NE(info, nullptr);
    ASSERT_TRUE(info->dtype.has_value());
    EXPECT_EQ(*info->dtype, r.dt);
    EXPECT_EQ(info->block_size, t.block_size);
    EXPECT_EQ(info->type_size, t.type_size);
  }
}

// ---------------------------------------------------------------------------
// Dequantization of hand-made blocks

TEST(QuantDequant, Q8_0HandBlocks) {
  // Two blocks: d = -0.5 with q = -128 .. -97, d = 3 with q = 0, 1, ..., 31 (odd ones negated).
  uint8_t raw[68];
  const uint16_t d0 = 0xb800, d1 = 0x4200;  // -0.5, 3.0
  std::memcpy(raw, &d0, 2);
  std::memcpy(raw + 34, &d1, 2);
  for (int j = 0; j < 32; ++j) {
    raw[2 + j] = uint8_t(int8_t(-128 + j));
    raw[36 + j] = uint8_t(int8_t(j % 2 ? -j : j));
  }
  const auto y = dequant(DType::Q8_0, raw, 64);
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(y[size_t(j)], float(-128 + j) * -0.5f) << j;
    EXPECT_EQ(y[size_t(32 + j)], float(j % 2 ? -j : j) * 3.0f) << j;
  }
  EXPECT_EQ(y[0], 64.0f);
  EXPECT_EQ(y[63], -93.0f);
}

TEST(QuantDequant, Q4_0HandBlocks) {
  // Low nibbles are elements 0..15, high nibbles 16..31; value (q - 8) * d.
  uint8_t raw[36];
  const uint16_t d0 = 0x3c00, d1 = 0xc000;  // 1.0, -2.0
  std::memcpy(raw, &d0, 2);
  std::memcpy(raw + 18, &d1, 2);
  for (int j = 0; j < 16; ++j) {
    raw[2 + j] = uint8_t(j | ((15 - j) << 4));
    raw[20 + j] = uint8_t(((j * 7) & 15) | (((j * 3 + 1) & 15) << 4));
  }
  const auto y = dequant(DType::Q4_0, raw, 64);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[size_t(j)], float(j - 8)) << j;
    EXPECT_EQ(y[size_t(16 + j)], float(15 - j - 8)) << j;
    EXPECT_EQ(y[size_t(32 + j)], float(((j * 7) & 15) - 8) * -2.0f) << j;
    EXPECT_EQ(y[size_t(48 + j)], float(((j * 3 + 1) & 15) - 8) * -2.0f) << j;
  }
  EXPECT_EQ(y[0], -8.0f);
  EXPECT_EQ(y[16], 7.0f);
  EXPECT_EQ(y[32], 16.0f);
}

TEST(QuantDequant, Q4_1HandBlocks) {
  // value q * d + m, with a negative minimum and then a negative scale.
  uint8_t raw[40];
  const uint16_t d0 = 0x3800, m0 = 0xbc00;  // 0.5, -1.0
  const uint16_t d1 = 0xb400, m1 = 0x4500;  // -0.25, 5.0
  std::memcpy(raw, &d0, 2);
  std::memcpy(raw + 2, &m0, 2);
  std::memcpy(raw + 20, &d1, 2);
  std::memcpy(raw + 22, &m1, 2);
  for (int j = 0; j < 16; ++j) {
    raw[4 + j] = uint8_t(j | ((15 - j) << 4));
    raw[24 + j] = uint8_t(15 | (j << 4));
  }
  const auto y = dequant(DType::Q4_1, raw, 64);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[size_t(j)], float(j) * 0.5f - 1.0f) << j;
    EXPECT_EQ(y[size_t(16 + j)], float(15 - j) * 0.5f - 1.0f) << j;
    EXPECT_EQ(y[size_t(32 + j)], 15 * -0.25f + 5.0f) << j;
    EXPECT_EQ(y[size_t(48 + j)], float(j) * -0.25f + 5.0f) << j;
  }
  EXPECT_EQ(y[0], -1.0f);
  EXPECT_EQ(y[31], -1.0f);
}

// ---------------------------------------------------------------------------
// The reference quantizers

TEST(QuantQuantize, ExactGridsGiveExactBlocks) {
  // Q8_0: amax 31.75 = 127 * 0.25, values on the 0.25 grid.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[size_t(j)] = 0.25f * float(j % 2 ? -4 * j : 3 * j);
  x[5] = 31.75f;
  auto q = quantize(DType::Q8_0, x);
  uint16_t d;
  std::memcpy(&d, q.data(), 2);
  EXPECT_EQ(d, f32_to_f16(0.25f));
  EXPECT_EQ(int8_t(q[2 + 5]), 127);
  EXPECT_EQ(dequant(DType::Q8_0, q.data(), 32), x);

  // Q4_0: the value of largest magnitude is -8, so d = 1 and q = x + 8.
  for (int j = 0; j < 16; ++j) {
    x[size_t(j)] = float(j - 8);
    x[size_t(16 + j)] = float(7 - j);
  }
  q = quantize(DType::Q4_0, x);
  std::memcpy(&d, q.data(), 2);
  EXPECT_EQ(d, 0x3c00);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(q[size_t(2 + j)], uint8_t(j | ((15 - j) << 4))) << j;
  EXPECT_EQ(dequant(DType::Q4_0, q.data(), 32), x);

  // Q4_1: min 2, max 9.5, so d = 0.5 and m = 2.
  for (int j = 0; j < 32; ++j) x[size_t(j)] = 2.0f + 0.5f * float((j * 5) % 16);
  q = quantize(DType::Q4_1, x);
  uint16_t m;
  std::memcpy(&d, q.data(), 2);
  std::memcpy(&m, q.data() + 2, 2);
  EXPECT_EQ(d, 0x3800);
  EXPECT_EQ(m, 0x4000);
  EXPECT_EQ(dequant(DType::Q4_1, q.data(), 32), x);
}

TEST(QuantQuantize, ZeroAndNonFiniteBlocksStayDefined) {
  const std::vector<float> zero(64, 0.0f);
  for (DType dt : kQuantTypes) {
    const auto q = quantize(dt, zero);
    EXPECT_EQ(dequant(dt, q.data(), 64), zero) << dtype_name(dt);
    // NaN and infinity must not reach an undefined float-to-int conversion.
    std::vector<float> bad(32, 1.0f);
    bad[3] = NAN;
    bad[7] = INFINITY;
    const auto qb = quantize(dt, bad);
    EXPECT_EQ(qb.size(), size_t(traits(dt).type_size)) << dtype_name(dt);
  }
}

TEST(QuantQuantize, ErrorWithinHalfAStep) {
  const int64_t n = 4096;
  const auto x = random_floats(size_t(n), 11, -3, 2);
  for (DType dt : kQuantTypes) {
    const auto q = quantize(dt, x);
    const auto y = dequant(dt, q.data(), n);
    double rms = 0;
    for (int64_t b = 0; b < n / 32; ++b) {
      float mn = x[size_t(b * 32)], mx = mn, amax = 0;
      for (int j = 0; j < 32; ++j) {
        const float v = x[size_t(b * 32 + j)];
        mn = std::min(mn, v);
        mx = std::max(mx, v);
        amax = std::max(amax, std::fabs(v));
      }
      // The step of the grid, and the rounding of the f16 scale (and minimum).
      double bound = 0;
      if (dt == DType::Q8_0) bound = 0.5 * amax / 127 + amax * 0x1p-10;
      if (dt == DType::Q4_0) bound = amax / 8 + amax * 0x1p-10;  // one step: +amax clips to 7 d
      if (dt == DType::Q4_1) bound = 0.5 * (mx - mn) / 15 + (std::fabs(mn) + (mx - mn)) * 0x1p-10;
      if (dt == DType::Q5_0) bound = amax / 16 + amax * 0x1p-10;  // +amax clips to 15 d
      if (dt == DType::Q5_1) bound = 0.5 * (mx - mn) / 31 + (std::fabs(mn) + (mx - mn)) * 0x1p-10;
      for (int j = 0; j < 32; ++j) {
        const size_t i = size_t(b * 32 + j);
        const double e = std::fabs(double(y[i]) - double(x[i]));
        rms += e * e;
        ASSERT_LE(e, bound) << dtype_name(dt) << " element " << i;
      }
    }
    std::printf("[ %s ] quantize->dequantize rms error %.4g on U(-3, 2)\n",
                std::string(dtype_name(dt)).c_str(), std::sqrt(rms / double(n)));
  }
}

// ---------------------------------------------------------------------------
// Every ISA's kernels against the scalar reference

class QuantKernelTest : public ::testing::TestWithParam<cpu::Isa> {
 protected:
  void SetUp() override {
    if (!cpu::isa_supported(GetParam()))
      GTEST_SKIP() << cpu::isa_name(GetParam()) << " is not supported by this CPU";
    k = cpu::kernels_for(GetParam());
    ref = cpu::kernels_for(cpu::Isa::Scalar);
  }
  const cpu::KernelTable* k = nullptr;
  const cpu::KernelTable* ref = nullptr;
};

TEST_P(QuantKernelTest, ConvertMatchesTheTraits) {
  const auto x = random_floats(4096, 21, -5, 5);
  for (DType dt : kQuantTypes) {
    ASSERT_NE(k->to_f32[int(dt)], nullptr) << dtype_name(dt);
    ASSERT_NE(k->from_f32[int(dt)], nullptr) << dtype_name(dt);
    std::vector<uint8_t> q(row_bytes(dt, 4096), 0);
    k->from_f32[int(dt)](x.data(), q.data(), 4096);
    EXPECT_EQ(q, quantize(dt, x)) << dtype_name(dt);
    auto y = poisoned(4096);
    k->to_f32[int(dt)](q.data(), y.data(), 4096);
    EXPECT_EQ(y, dequant(dt, q.data(), 4096)) << dtype_name(dt);
  }
}

TEST_P(QuantKernelTest, MatmulAgainstScalar) {
  // |y - ref| relative to sum_t |x_t w_t| + |b| (the scale of f32 rounding in
  // any summation order): the SIMD bodies sum each block in f32 lanes, scale
  // it once and add ~k / 32 block sums per lane, so a worst case of ~140 f32
  // roundings of that scale.  (Relative to |ref| alone, outputs that cancel
  // to near zero would fail any fixed tolerance.)
  constexpr double kTol = 1e-5;
  for (DType dt : kQuantTypes) {
    ASSERT_NE(k->matmul[int(dt)], nullptr) << dtype_name(dt);
    for (int64_t kk : {32, 96, 4096}) {
      for (int64_t n : {1, 3, 17}) {
        for (int64_t m = 1; m <= 5; ++m) {
          const int64_t ldx = kk + 3, ldy = n + 5;
          const int64_t ldw = int64_t(row_bytes(dt, kk)) + 6;  // rows padded, 2-byte aligned
          const auto x = random_floats(size_t(m * ldx), uint32_t(kk + n + m), -2, 2);
          const auto wf = random_floats(size_t(n * kk), uint32_t(7 * kk + n), -1, 1.5f);
          const auto bias = random_floats(size_t(n), 4);
          std::vector<uint8_t> w(size_t(n * ldw), 0x5a);
          std::vector<float> wd(size_t(n * kk));
          for (int64_t j = 0; j < n; ++j) {
            traits(dt).from_float(wf.data() + j * kk, w.data() + j * ldw, kk);
            traits(dt).to_float(w.data() + j * ldw, wd.data() + j * kk, kk);
          }
          for (bool with_bias : {false, true}) {
            auto y = poisoned(size_t(m * ldy)), yr = poisoned(size_t(m * ldy));
            cpu::MatmulArgs a{x.data(), ldx, w.data(), ldw, with_bias ? bias.data() : nullptr,
                              y.data(), ldy, m, kk};
            const int64_t mid = n / 2;
            k->matmul[int(dt)](a, 0, mid);
            k->matmul[int(dt)](a, mid, n);
            a.y = yr.data();
            ref->matmul[int(dt)](a, 0, n);
            for (int64_t i = 0; i < m; ++i) {
              for (int64_t j = 0; j < n; ++j) {
                double scale = with_bias ? std::fabs(bias[size_t(j)]) : 0.0;
                for (int64_t t = 0; t < kk; ++t)
                  scale += std::fabs(double(x[size_t(i * ldx + t)]) * double(wd[size_t(j * kk + t)]));
                const float got = y[size_t(i * ldy + j)], want = yr[size_t(i * ldy + j)];
                ASSERT_TRUE(std::isfinite(got)) << dtype_name(dt) << " m=" << m << " n=" << n << " k=" << kk;
                EXPECT_LE(std::fabs(double(got) - double(want)), kTol * scale)
                    << dtype_name(dt) << " m=" << m << " n=" << n << " k=" << kk << " y[" << i << ", " << j << "]";
              }
              for (int64_t j = n; j < ldy && i + 1 < m; ++j) EXPECT_TRUE(std::isnan(y[size_t(i * ldy + j)]));
            }
          }
        }
      }
    }
  }
}

TEST(QuantKernel, ScalarReferenceIsTheDequantizedProduct) {
  // The reference against a product written out here from the hand-checked
  // dequantization: y = x . dequant(w) + b.
  const cpu::KernelTable* ref = cpu::kernels_for(cpu::Isa::Scalar);
  const int64_t kk = 64, n = 3;
  const auto x = random_floats(size_t(kk), 31);
  const auto wf = random_floats(size_t(n * kk), 32);
  const std::vector<float> bias = {0.5f, -1.0f, 2.0f};
  for (DType dt : kQuantTypes) {
    const auto w = quantize(dt, wf);
    const auto wd = dequant(dt, w.data(), n * kk);
    std::vector<float> y(static_cast<size_t>(n));
    cpu::MatmulArgs a{x.data(), kk, w.data(), int64_t(row_bytes(dt, kk)), bias.data(), y.data(), n, 1, kk};
    ref->matmul[int(dt)](a, 0, n);
    for (int64_t j = 0; j < n; ++j) {
      double s = bias[size_t(j)];
      for (int64_t t = 0; t < kk; ++t) s += double(wd[size_t(j * kk + t)]) * double(x[size_t(t)]);
      EXPECT_NEAR(y[size_t(j)], s, 1e-5 * std::fabs(s) + 1e-6) << dtype_name(dt) << " row " << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, QuantKernelTest,
                         ::testing::Values(cpu::Isa::Scalar, cpu::Isa::Avx2, cpu::Isa::Avx512),
                         [](const auto& info) { return std::string(cpu::isa_name(info.param)); });

// ---------------------------------------------------------------------------
// A GGUF model with quantized weights

// A llama of hidden 64 (2 heads of 32, 1 kv head), ffn 128, 2 layers and the
// 16-token vocabulary: every matmul weight (and the embedding) stored as
// `wt`, norms in f32.  The same seed gives the same f32 weights for any `wt`.
// With `widened`, the matrices are quantized to `wt` and stored back as f32.
// `hidden` (a multiple of 64; 256 for the K-quants) scales the model: heads of
// 32, half as many kv heads, ffn 2 * hidden.
gguf::Writer quant_llama(DType wt, uint32_t seed, bool widened = false, int64_t hidden = 64) {
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "tiny-quant");
  const int64_t H = hidden, F = 2 * hidden, L = 2, V = 16, KV = hidden / 2;
  w.set_u32("llama.context_length", 64);
  w.set_u32("llama.embedding_length", uint32_t(H));
  w.set_u32("llama.block_count", uint32_t(L));
  w.set_u32("llama.feed_forward_length", uint32_t(F));
  w.set_u32("llama.attention.head_count", uint32_t(H / 32));
  w.set_u32("llama.attention.head_count_kv", uint32_t(H / 64));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_u32("llama.rope.dimension_count", 32);
  gguf::write_vocab(w, test::tiny_vocab());
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool matrix) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    const float scale = matrix ? 1.0f / std::sqrt(float(shape.back())) : 1.0f;
    std::vector<float> x(static_cast<size_t>(n));
    for (float& f : x) f = matrix ? d(rng) * scale : 1.0f + 0.1f * d(rng);
    if (!matrix || wt == DType::F32) {
      w.add_tensor(name, gguf::GgmlType::F32, shape, x.data(), size_t(n) * 4);
      return;
    }
    std::vector<uint8_t> q(row_bytes(wt, n));
    traits(wt).from_float(x.data(), q.data(), n);
    if (widened) {
      traits(wt).to_float(q.data(), x.data(), n);
      w.add_tensor(name, gguf::GgmlType::F32, shape, x.data(), size_t(n) * 4);
      return;
    }
    w.add_tensor(name, gguf::ggml_type_of(wt), shape, q.data(), q.size());
  };
  add("token_embd.weight", {V, H}, true);
  for (int64_t l = 0; l < L; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {H}, false);
    add(b + "attn_q.weight", {H, H}, true);
    add(b + "attn_k.weight", {KV, H}, true);
    add(b + "attn_v.weight", {KV, H}, true);
    add(b + "attn_output.weight", {H, H}, true);
    add(b + "ffn_norm.weight", {H}, false);
    add(b + "ffn_gate.weight", {F, H}, true);
    add(b + "ffn_up.weight", {F, H}, true);
    add(b + "ffn_down.weight", {H, F}, true);
  }
  add("output_norm.weight", {H}, false);
  add("output.weight", {V, H}, true);
  return w;
}

int32_t argmax(const std::vector<float>& v) {
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

TEST(QuantGguf, QuantizedLlamaStaysCloseToF32) {
  test::GgufTempDir dir;
  const std::string f32_path = dir.file("f32.gguf");
  quant_llama(DType::F32, 5).write(f32_path);
  LoadOptions o;
  o.threads = 2;
  auto ref = Model::load(f32_path, o);
  // End to end, not a check of any one product: bounds on max |logit - f32
  // logit| / max |f32 logit| over 20 prompt positions (the f32-panel prompt
  // path) and 33 decode steps (the small-batch kernels), which carry the
  // weights' own quantization error through 2 layers.  Each product is bound
  // tightly elsewhere, against the double-precision product of independently
  // dequantized weights: QuantDot.OpAgainstF32Activations (runnel's
  // quantizer) and Files/LlamaCpp.ProductsWithinTheActivationBound
  // (llama.cpp's, with ggml's dequantization checked bit for bit).  Measured on this random model: Q8_0 0.03 / 0.035,
  // Q4_1 0.36 / 0.55, Q4_0 0.32 / 0.55, Q5_0 0.23 / 0.36, Q5_1 0.27 / 0.47;
  // the 4-bit types carry ~16x the Q8_0 step and a random 64-wide model has
  // no slack to absorb it.
  struct Case {
    DType dt;
    double bound;
    int min_agree;  // of kSteps greedy tokens
  };
  constexpr int kSteps = 32;
  for (const Case& c : {Case{DType::Q8_0, 0.06, 26}, Case{DType::Q4_1, 0.8, 20}, Case{DType::Q4_0, 0.8, 20},
                        Case{DType::Q5_0, 0.6, 20}, Case{DType::Q5_1, 0.8, 20}}) {
    const std::string path = dir.file(std::string(dtype_name(c.dt)) + ".gguf");
    quant_llama(c.dt, 5).write(path);
    auto got = Model::load(path, o);
    EXPECT_TRUE(got->weights_mapped()) << dtype_name(c.dt);
    std::vector<int32_t> ids;
    for (int i = 0; i < 20; ++i) ids.push_back(int32_t((i * 7 + 3) % 16));
    {
      // The kernels and the loader: the same weights widened to f32 in the
      // file.  Products of few rows quantize the activations to int8 blocks
      // for the integer dot products, which costs ~1-2% here (measured 0.013
      // to 0.023 for q4_0 / q4_1 / q8_0, prompt or decode: how many rows a
      // prompt's products get depends on the forward pass's batching).
      const std::string wpath = dir.file(std::string(dtype_name(c.dt)) + "-widened.gguf");
      quant_llama(c.dt, 5, true).write(wpath);
      auto wide = Model::load(wpath, o);
      Sequence sq(*got), sw(*wide);
      const double e = norm_err(sq.prefill(ids, Logits::All), sw.prefill(ids, Logits::All));
      double ed = 0;
      for (int32_t id : {3, 9, 27 % 16}) ed = std::max(ed, norm_err(sq.decode(id), sw.decode(id)));
      std::printf("[ %s ] logits vs the widened f32 file: prompt %.3g, decode %.3g\n",
                  std::string(dtype_name(c.dt)).c_str(), e, ed);
      EXPECT_LE(e, 0.05) << dtype_name(c.dt);
      EXPECT_LE(ed, 0.05) << dtype_name(c.dt);
    }
    Sequence s0(*ref), s1(*got);
    const double err = norm_err(s1.prefill(ids, Logits::All), s0.prefill(ids, Logits::All));
    // Greedy continuation of the f32 model, fed to both: how often the
    // quantized model picks the same token.  (Random weights give near-ties
    // in the logits, so agreement is counted per step, not as a prefix.)
    std::vector<float> l0 = s0.decode(1), l1 = s1.decode(1);
    double dec_err = norm_err(l1, l0);
    int agree = 0;
    for (int t = 0; t < kSteps; ++t) {
      const int32_t next = argmax(l0);
      agree += argmax(l1) == next;
      l0 = s0.decode(next);
      l1 = s1.decode(next);
      dec_err = std::max(dec_err, norm_err(l1, l0));
    }
    std::printf("[ %s ] logits vs f32: prompt %.4g, decode %.4g; greedy token agrees on %d of %d steps\n",
                std::string(dtype_name(c.dt)).c_str(), err, dec_err, agree, kSteps);
    EXPECT_LE(err, c.bound) << dtype_name(c.dt);
    EXPECT_LE(dec_err, c.bound) << dtype_name(c.dt);
    EXPECT_GE(agree, c.min_agree) << dtype_name(c.dt);
  }
}

TEST(QuantGguf, KQuantLlamaStaysCloseToF32) {
  // The same end-to-end checks for Q4_K and Q6_K on a model of hidden 256
  // (K-quant rows need multiples of 256; 8 heads, ffn 512); their products
  // are bound tightly in the tests named above.  Bounds from measured values
  // with about 2x headroom: vs f32, q6_k 0.146 / 0.135 (prompt / decode),
  // q4_k 0.359 / 0.386, greedy agreement 15 and 9 of 16 with the first
  // quantizers; 0.108 / 0.118 and 0.307 / 0.452, 16 and 11 of 16 since the
  // scale search (88b6b2d6); vs the widened
  // file up to 0.036 (Q8_K has one activation scale per 256, so more
  // activation error than the 32-element types' 0.013-0.023).
  test::GgufTempDir dir;
  const int64_t H = 256;
  const std::string f32_path = dir.file("f32.gguf");
  quant_llama(DType::F32, 6, false, H).write(f32_path);
  LoadOptions o;
  o.threads = 2;
  auto ref = Model::load(f32_path, o);
  struct Case {
    DType dt;
    double bound;
    int min_agree;
  };
  constexpr int kSteps = 16;
  for (const Case& c : {Case{DType::Q6_K, 0.3, 11}, Case{DType::Q4_K, 0.8, 6}}) {
    const std::string name(dtype_name(c.dt));
    const std::string path = dir.file(name + ".gguf");
    quant_llama(c.dt, 6, false, H).write(path);
    auto got = Model::load(path, o);
    EXPECT_TRUE(got->weights_mapped()) << name;
    std::vector<int32_t> ids;
    for (int i = 0; i < 20; ++i) ids.push_back(int32_t((i * 5 + 1) % 16));
    {
      const std::string wpath = dir.file(name + "-widened.gguf");
      quant_llama(c.dt, 6, true, H).write(wpath);
      auto wide = Model::load(wpath, o);
      Sequence sq(*got), sw(*wide);
      const double e = norm_err(sq.prefill(ids, Logits::All), sw.prefill(ids, Logits::All));
      double ed = 0;
      for (int32_t id : {3, 9, 11}) ed = std::max(ed, norm_err(sq.decode(id), sw.decode(id)));
      std::printf("[ %s ] logits vs the widened f32 file: prompt %.3g, decode %.3g\n", name.c_str(), e, ed);
      EXPECT_LE(e, 0.08) << name;
      EXPECT_LE(ed, 0.08) << name;
    }
    Sequence s0(*ref), s1(*got);
    const double err = norm_err(s1.prefill(ids, Logits::All), s0.prefill(ids, Logits::All));
    std::vector<float> l0 = s0.decode(1), l1 = s1.decode(1);
    double dec_err = norm_err(l1, l0);
    int agree = 0;
    for (int t = 0; t < kSteps; ++t) {
      const int32_t next = argmax(l0);
      agree += argmax(l1) == next;
      l0 = s0.decode(next);
      l1 = s1.decode(next);
      dec_err = std::max(dec_err, norm_err(l1, l0));
    }
    std::printf("[ %s ] logits vs f32: prompt %.4g, decode %.4g; greedy token agrees on %d of %d steps\n",
                name.c_str(), err, dec_err, agree, kSteps);
    EXPECT_LE(err, c.bound) << name;
    EXPECT_LE(dec_err, c.bound) << name;
    EXPECT_GE(agree, c.min_agree) << name;
  }
}

}  // namespace
}  // namespace runnel

// Int8-activation products over quantized weights (qmatmul): every ISA
// against the scalar reference, the reference against a double-precision
// product of the dequantized operands, and the whole op against f32 x within
// the activation quantization's bound.  Also the activation quantizers
// (Q8_0, Q8_1, Q8_K) of every ISA against the references, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "cpu/half.hpp"
#include "cpu/kernels.hpp"
#include "cpu/quant.hpp"
#include "runnel/dtype.hpp"
#include "runnel/error.hpp"
#include "runnel/ops.hpp"
#include "runnel/tensor.hpp"
#include "test_util.hpp"

namespace runnel {
namespace {

using test::poisoned;
using test::random_floats;

const DType kWeightTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                              DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<float> dequant(DType dt, const void* blocks, int64_t n) {
  std::vector<float> y = poisoned(size_t(n));
  traits(dt).to_float(blocks, y.data(), n);
  return y;
}

// Activations with some spread in magnitude between blocks, and exact zeros.
std::vector<float> activations(size_t n, uint32_t seed) {
  auto x = random_floats(n, seed, -2, 2);
  for (size_t i = 0; i < n; ++i) {
    if (i % 97 == 5) x[i] = 0;
    if ((i / 32) % 5 == 3) x[i] *= 8;
  }
  return x;
}

// Per block of the activation dtype: the dequantized values (the scales the
// kernel multiplies by, f16-rounded where the layout stores f16).
std::vector<double> dequant_act(DType xt, const std::vector<uint8_t>& xq, int64_t k) {
  std::vector<double> v(static_cast<size_t>(k));
  if (xt == DType::Q8_K) {
    const auto* b = reinterpret_cast<const cpu::quant::BlockQ8_K*>(xq.data());
    for (int64_t i = 0; i < k; ++i) v[size_t(i)] = double(b[i / 256].qs[i % 256]) * double(b[i / 256].d);
  } else if (xt == DType::Q8_1) {
    const auto* b = reinterpret_cast<const cpu::quant::BlockQ8_1*>(xq.data());
    for (int64_t i = 0; i < k; ++i)
      v[size_t(i)] = double(b[i / 32].qs[i % 32]) * double(cpu::f16_to_f32(b[i / 32].d));
  } else {
    const auto* b = reinterpret_cast<const cpu::quant::BlockQ8_0*>(xq.data());
    for (int64_t i = 0; i < k; ++i)
      v[size_t(i)] = double(b[i / 32].qs[i % 32]) * double(cpu::f16_to_f32(b[i / 32].d));
  }
  return v;
}

class QuantDotTest : public ::testing::TestWithParam<cpu::Isa> {
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

TEST_P(QuantDotTest, ActivationQuantizersMatchTheReferences) {
  for (DType xt : {DType::Q8_0, DType::Q8_1, DType::Q8_K}) {
    ASSERT_NE(k->from_f32[int(xt)], nullptr) << dtype_name(xt);
    for (int64_t n : {256, 1024}) {
      auto x = activations(size_t(n), uint32_t(n));
      x[7] = NAN;  // NaN and infinities stay defined and agree with the reference
      x[300 % n] = INFINITY;
      x[40] = 1e-30f;
      std::vector<uint8_t> got(row_bytes(xt, n), 0x11), want(row_bytes(xt, n), 0x22);
      k->from_f32[int(xt)](x.data(), got.data(), n);
      traits(xt).from_float(x.data(), want.data(), n);
      EXPECT_EQ(got, want) << dtype_name(xt) << " n=" << n;
    }
  }
}

TEST_P(QuantDotTest, ActivationQuantizersRoundHalvesToEven) {
  // amax = 127 makes the multiplier 1, so these values are exact halves.
  for (DType xt : {DType::Q8_0, DType::Q8_1, DType::Q8_K}) {
    ASSERT_NE(k->quant_act[int(xt)], nullptr) << dtype_name(xt);
    ASSERT_NE(ref->quant_act[int(xt)], nullptr) << dtype_name(xt);
    const int64_t n = 256;
    std::vector<float> x(size_t(n), 0.0f);
    x[0] = 127.0f;
    const float halves[] = {2.5f, 3.5f, -2.5f, -3.5f, 0.5f, -0.5f, 126.5f, -126.5f};
    for (int64_t i = 0; i < n; i += 32) x[size_t(i)] = 127.0f;
    for (size_t i = 0; i < std::size(halves); ++i) x[1 + i] = halves[i];
    for (const cpu::KernelTable* t : {k, ref}) {
      std::vector<uint8_t> q(row_bytes(xt, n));
      t->quant_act[int(xt)](x.data(), q.data(), n);
      const int8_t* qs = xt == DType::Q8_0   ? reinterpret_cast<const cpu::quant::BlockQ8_0*>(q.data())->qs
                         : xt == DType::Q8_1 ? reinterpret_cast<const cpu::quant::BlockQ8_1*>(q.data())->qs
                                             : reinterpret_cast<const cpu::quant::BlockQ8_K*>(q.data())->qs;
      const int want[] = {2, 4, -2, -4, 0, 0, 126, -126};
      for (size_t i = 0; i < std::size(want); ++i)
        EXPECT_EQ(qs[1 + i], want[i]) << dtype_name(xt) << " " << cpu::isa_name(t->isa) << " x=" << halves[i];
    }
  }
}

TEST_P(QuantDotTest, ActivationQuantizersMatchTheScalarOnes) {
  for (DType xt : {DType::Q8_0, DType::Q8_1, DType::Q8_K}) {
    for (int64_t n : {256, 1024}) {
      auto x = activations(size_t(n), uint32_t(n) + 5);
      x[9] = NAN;
      x[100] = -INFINITY;
      x[3] = 2.5f;
      std::vector<uint8_t> got(row_bytes(xt, n), 0x11), want(row_bytes(xt, n), 0x22);
      k->quant_act[int(xt)](x.data(), got.data(), n);
      ref->quant_act[int(xt)](x.data(), want.data(), n);
      EXPECT_EQ(got, want) << dtype_name(xt) << " n=" << n;
    }
  }
}

TEST_P(QuantDotTest, Q8KSumsAndRange) {
  const int64_t n = 512;
  const auto x = activations(size_t(n), 3);
  std::vector<uint8_t> q(row_bytes(DType::Q8_K, n));
  k->from_f32[int(DType::Q8_K)](x.data(), q.data(), n);
  const auto* b = reinterpret_cast<const cpu::quant::BlockQ8_K*>(q.data());
  for (int i = 0; i < 2; ++i) {
    float amax = 0;
    for (int t = 0; t < 256; ++t) amax = std::max(amax, std::fabs(x[size_t(256 * i + t)]));
    EXPECT_EQ(b[i].d, amax / 127);
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int t = 0; t < 16; ++t) {
        s += b[i].qs[16 * g + t];
        EXPECT_GE(b[i].qs[16 * g + t], -127);
        const double e = std::fabs(double(b[i].qs[16 * g + t]) * b[i].d - x[size_t(256 * i + 16 * g + t)]);
        EXPECT_LE(e, 0.5 * b[i].d * (1 + 1e-6));
      }
      EXPECT_EQ(b[i].bsums[g], s) << "block " << i << " group " << g;
    }
  }
}

// qmatmul of every ISA against the scalar reference, and the reference
// against the product of the dequantized operands computed here in double.
TEST_P(QuantDotTest, QMatmulAgainstReferences) {
  // Tolerance: |got - want| <= kTol * sum_t |w_t xq_t| (+ |b|), the scale of
  // f32 rounding in any summation order (the SIMD bodies sum in float, the
  // reference in double).  Q4_1's (and Q5_1's) minimum term uses the f16-rounded stored
  // s = d * sum(q) of each activation block; the double product here uses
  // d * q exactly, so that comparison also allows |m| * |s| * 2^-10 per block.
  constexpr double kTol = 2e-6;
  for (DType dt : kWeightTypes) {
    ASSERT_NE(k->qmatmul[int(dt)], nullptr) << dtype_name(dt);
    const DType xt = traits(dt).vec_dot_type;
    const int64_t bs = traits(dt).block_size;
    for (int64_t kk : {bs, 3 * bs, bs == 32 ? int64_t(4096) : int64_t(2048)}) {
      for (int64_t n : {1, 4, 7, 17}) {
        for (int64_t m : {1, 2, 3, 4, 5}) {
          const int64_t ldxq = int64_t(row_bytes(xt, kk)) + 12;  // padded rows, 4-byte aligned
          const int64_t ldw = int64_t(row_bytes(dt, kk)) + 6;
          const int64_t ldy = n + 3;
          const auto xf = activations(size_t(m * kk), uint32_t(kk + 10 * n + m));
          const auto wf = random_floats(size_t(n * kk), uint32_t(3 * kk + n), -1, 1.5f);
          const auto bias = random_floats(size_t(n), 9);
          std::vector<uint8_t> w(size_t(n * ldw), 0x5a), xq(size_t(m * ldxq), 0x33);
          for (int64_t j = 0; j < n; ++j) traits(dt).from_float(wf.data() + j * kk, w.data() + j * ldw, kk);
          for (int64_t i = 0; i < m; ++i) traits(xt).from_float(xf.data() + i * kk, xq.data() + i * ldxq, kk);
          auto y = poisoned(size_t(m * ldy)), yr = poisoned(size_t(m * ldy));
          cpu::QMatmulArgs a{xq.data(), ldxq, w.data(), ldw, bias.data(), y.data(), ldy, m, kk};
          k->qmatmul[int(dt)](a, 0, n / 2);
          k->qmatmul[int(dt)](a, n / 2, n);
          a.y = yr.data();
          ref->qmatmul[int(dt)](a, 0, n);
          for (int64_t i = 0; i < m; ++i) {
            const std::vector<uint8_t> xrow(xq.begin() + i * ldxq, xq.begin() + (i + 1) * ldxq);
            const auto xd = dequant_act(xt, xrow, kk);
            for (int64_t j = 0; j < n; ++j) {
              const auto wd = dequant(dt, w.data() + j * ldw, kk);
              double exact = bias[size_t(j)], scale = std::fabs(bias[size_t(j)]), extra = 0;
              for (int64_t t = 0; t < kk; ++t) {
                exact += double(wd[size_t(t)]) * xd[size_t(t)];
                scale += std::fabs(double(wd[size_t(t)]) * xd[size_t(t)]);
              }
              if (dt == DType::Q4_1 || dt == DType::Q5_1) {
                const char* wrow = reinterpret_cast<const char*>(w.data() + j * ldw);
                const int64_t wbytes = traits(dt).type_size;
                const auto* xb = reinterpret_cast<const cpu::quant::BlockQ8_1*>(xrow.data());
                for (int64_t b = 0; b < kk / 32; ++b) {
                  uint16_t m;  // the minimum follows d in both layouts
                  std::memcpy(&m, wrow + b * wbytes + 2, 2);
                  extra += std::fabs(cpu::f16_to_f32(m) * cpu::f16_to_f32(xb[b].s)) * 0x1p-10;
                }
              }
              const float got = y[size_t(i * ldy + j)], want = yr[size_t(i * ldy + j)];
              const std::string where = std::string(dtype_name(dt)) + " k=" + std::to_string(kk) +
                                        " n=" + std::to_string(n) + " m=" + std::to_string(m) + " y[" +
                                        std::to_string(i) + "," + std::to_string(j) + "]";
              ASSERT_TRUE(std::isfinite(got)) << where;
              EXPECT_LE(std::fabs(double(got) - double(want)), kTol * scale + 1e-30) << where;
              EXPECT_LE(std::fabs(double(want) - exact), kTol * scale + extra + 1e-30) << where;
            }
            for (int64_t j = n; j < ldy && i + 1 < m; ++j) EXPECT_TRUE(std::isnan(y[size_t(i * ldy + j)]));
          }
        }
      }
    }
  }
}

// The many-row int8 kernel (qgemm) and its row quantizer: every ISA that has
// them against the scalar reference (the quantizer bit for bit), and the
// reference against the exact product of the dequantized operands.
TEST_P(QuantDotTest, QGemmAgainstReferences) {
  ASSERT_NE(ref->qgemm_quant, nullptr);
  if (k->qgemm_quant == nullptr) GTEST_SKIP() << cpu::isa_name(GetParam()) << " has no int8 GEMM (f32 path)";
  constexpr double kTol = 2e-6;
  for (DType dt : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1}) {
    // Q5_0 / Q5_1 are checked where the build has an int8 GEMM for them.
    if ((dt == DType::Q5_0 || dt == DType::Q5_1) && ref->qgemm[int(dt)] == nullptr) continue;
    ASSERT_NE(k->qgemm[int(dt)], nullptr) << dtype_name(dt);
    ASSERT_NE(ref->qgemm[int(dt)], nullptr) << dtype_name(dt);
    for (int64_t kk : {32, 96, 576}) {
      const int64_t nb = kk / 32;
      for (int64_t n : {1, 17, 33, 70}) {
        for (int64_t m : {1, 5, 9}) {
          const int64_t ldxq = kk + 20, ldxs = nb + 3, ldw = int64_t(row_bytes(dt, kk)) + 6, ldy = n + 3;
          const auto xf = activations(size_t(m * kk), uint32_t(kk + 10 * n + m));
          const auto wf = random_floats(size_t(n * kk), uint32_t(3 * kk + n), -1, 1.5f);
          const auto bias = random_floats(size_t(n), 9);
          std::vector<uint8_t> w(size_t(n * ldw), 0x5a);
          for (int64_t j = 0; j < n; ++j) traits(dt).from_float(wf.data() + j * kk, w.data() + j * ldw, kk);
          std::vector<int8_t> xq(size_t(m * ldxq), 0x33), xq_ref(xq);
          auto xd = poisoned(size_t(m * ldxs)), xs = poisoned(size_t(m * ldxs));
          auto xd_ref = xd, xs_ref = xs;
          for (int64_t i = 0; i < m; ++i) {
            k->qgemm_quant(xf.data() + i * kk, xq.data() + i * ldxq, xd.data() + i * ldxs, xs.data() + i * ldxs, kk);
            ref->qgemm_quant(xf.data() + i * kk, xq_ref.data() + i * ldxq, xd_ref.data() + i * ldxs,
                             xs_ref.data() + i * ldxs, kk);
            for (int64_t b = 0; b < nb; ++b) {
              ASSERT_EQ(xd[size_t(i * ldxs + b)], xd_ref[size_t(i * ldxs + b)]) << "row " << i << " block " << b;
              ASSERT_EQ(xs[size_t(i * ldxs + b)], xs_ref[size_t(i * ldxs + b)]) << "row " << i << " block " << b;
            }
          }
          ASSERT_EQ(xq, xq_ref);
          auto y = poisoned(size_t(m * ldy)), yr = poisoned(size_t(m * ldy));
          cpu::QGemmArgs a{xq.data(), ldxq, xd.data(), xs.data(), ldxs, w.data(), ldw, bias.data(), y.data(), ldy, m, kk};
          k->qgemm[int(dt)](a, 0, n / 2);
          k->qgemm[int(dt)](a, n / 2, n);
          a.y = yr.data();
          ref->qgemm[int(dt)](a, 0, n);
          for (int64_t i = 0; i < m; ++i) {
            for (int64_t j = 0; j < n; ++j) {
              const auto wd = dequant(dt, w.data() + j * ldw, kk);
              double exact = bias[size_t(j)], scale = std::fabs(bias[size_t(j)]);
              for (int64_t t = 0; t < kk; ++t) {
                const double xv = double(xq[size_t(i * ldxq + t)]) * double(xd[size_t(i * ldxs + t / 32)]);
                exact += double(wd[size_t(t)]) * xv;
                scale += std::fabs(double(wd[size_t(t)]) * xv);
              }
              // s = d * sum(q) is an f32 product: relative error 2^-24 times |c|.
              double extra = 0;
              for (int64_t b = 0; b < nb; ++b) extra += 8 * std::fabs(double(xs[size_t(i * ldxs + b)])) * 0x1p-23;
              const float got = y[size_t(i * ldy + j)], want = yr[size_t(i * ldy + j)];
              const std::string where = std::string(dtype_name(dt)) + " k=" + std::to_string(kk) +
                                        " n=" + std::to_string(n) + " m=" + std::to_string(m) + " y[" +
                                        std::to_string(i) + "," + std::to_string(j) + "]";
              ASSERT_TRUE(std::isfinite(got)) << where;
              EXPECT_LE(std::fabs(double(got) - double(want)), kTol * scale + extra + 1e-30) << where;
              EXPECT_LE(std::fabs(double(want) - exact), kTol * scale + extra + 1e-30) << where;
            }
            for (int64_t j = n; j < ldy && i + 1 < m; ++j) EXPECT_TRUE(std::isnan(y[size_t(i * ldy + j)]));
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, QuantDotTest,
                         ::testing::Values(cpu::Isa::Scalar, cpu::Isa::Avx2, cpu::Isa::Avx512),
                         [](const auto& info) { return std::string(cpu::isa_name(info.param)); });

// The whole op (quantize x, integer dots) against f32 x and the dequantized
// weights in double.  Bound: each activation element is off by at most half
// its block's step d_x (plus the f16 rounding of d_x, 127 * d_x * 2^-11 for
// Q8_0 / Q8_1), so |y - y_exact| <= sum_t |w_t| * 0.57 d_x(t), plus Q4_1's / Q5_1's
// f16-rounded s term and f32 rounding.
// With llama_cpp_order every row of a many-row product is its own
// matrix-vector product, bit for bit (the int8 GEMM's order differs).
TEST(QuantDot, LlamaCppOrderMakesEveryRowAMatrixVectorProduct) {
  Context ctx(2);
  const int64_t kk = 1024, n = 40, m = 48;
  for (DType dt : kWeightTypes) {
    const auto xf = activations(size_t(m * kk), 91);
    const auto wf = random_floats(size_t(n * kk), 92, -1, 1);
    std::vector<uint8_t> w(row_bytes(dt, n * kk));
    traits(dt).from_float(wf.data(), w.data(), n * kk);
    const Tensor W = Tensor::view(w.data(), dt, {n, kk});
    std::vector<float> y(static_cast<size_t>(m * n)), y1(static_cast<size_t>(n));
    ctx.cpu.llama_cpp_order = true;
    ops::matmul(ctx, Tensor::view(const_cast<float*>(xf.data()), DType::F32, {m, kk}), W, nullptr,
                Tensor::view(y.data(), DType::F32, {m, n}));
    int differ = 0;
    for (int64_t i = 0; i < m; ++i) {
      ops::matmul(ctx, Tensor::view(const_cast<float*>(xf.data() + i * kk), DType::F32, {1, kk}), W, nullptr,
                  Tensor::view(y1.data(), DType::F32, {1, n}));
      for (int64_t j = 0; j < n; ++j) differ += y[size_t(i * n + j)] != y1[size_t(j)];
    }
    EXPECT_EQ(differ, 0) << dtype_name(dt);
    ctx.cpu.llama_cpp_order = false;
  }
}

TEST(QuantDot, OpAgainstF32Activations) {
  Context ctx(2);
  const int64_t kk = 2048, n = 37;
  // 70 rows take the many-row path (int8 GEMM where the CPU has one).
  for (int64_t m : {1, 3, 15, 70}) {
    for (DType dt : kWeightTypes) {
      const DType xt = traits(dt).vec_dot_type;
      const int64_t bx = traits(xt).block_size;
      const auto xf = activations(size_t(m * kk), 77);
      const auto wf = random_floats(size_t(n * kk), 78, -1, 1);
      std::vector<uint8_t> w(row_bytes(dt, n * kk));
      traits(dt).from_float(wf.data(), w.data(), n * kk);
      const auto wd = dequant(dt, w.data(), n * kk);
      std::vector<float> y(size_t(m * n));
      ops::matmul(ctx, Tensor::view(const_cast<float*>(xf.data()), DType::F32, {m, kk}),
                  Tensor::view(w.data(), dt, {n, kk}), nullptr, Tensor::view(y.data(), DType::F32, {m, n}));
      double worst = 0;
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          double exact = 0, bound = 0, scale = 0;
          for (int64_t b = 0; b < kk / bx; ++b) {
            float amax = 0;
            for (int64_t t = 0; t < bx; ++t) amax = std::max(amax, std::fabs(xf[size_t(i * kk + b * bx + t)]));
            const double dx = amax / 127.0;
            for (int64_t t = b * bx; t < (b + 1) * bx; ++t) {
              const double wv = wd[size_t(j * kk + t)], xv = xf[size_t(i * kk + t)];
              exact += wv * xv;
              scale += std::fabs(wv * xv);
              bound += std::fabs(wv) * 0.57 * dx;
            }
            // |m| <= 1 here, |s| <= 32 amax
            if (dt == DType::Q4_1 || dt == DType::Q5_1) bound += 32 * amax * 0x1p-10 * 1.0;
          }
          bound += 1e-5 * scale;
          const double e = std::fabs(double(y[size_t(i * n + j)]) - exact);
          worst = std::max(worst, e / bound);
          ASSERT_LE(e, bound) << dtype_name(dt) << " m=" << m << " y[" << i << "," << j << "]";
        }
      }
      if (m == 1) std::printf("[ %s ] int8-activation op: worst error %.3f of its bound\n",
                              std::string(dtype_name(dt)).c_str(), worst);
    }
  }
}

}  // namespace
}  // namespace runnel

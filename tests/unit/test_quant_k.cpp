// K-quants (Q4_K, Q6_K): dequantization of hand-built super-blocks against
// values computed here from ggml's documented layout, every ISA's conversion
// against the reference, quantize -> dequantize error bounds, the 256-element
// row rule, and GGUF round trips.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/half.hpp"
#include "cpu/kernels.hpp"
#include "runnel/dtype.hpp"
#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "runnel/ops.hpp"
#include "runnel/tensor.hpp"
#include "test_util.hpp"

namespace runnel {
namespace {

using cpu::f16_to_f32;
using test::poisoned;
using test::random_floats;

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

void put_u16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v & 0xff);
  p[1] = uint8_t(v >> 8);
}

TEST(QuantKTraits, RowsAndGgmlTypes) {
  struct Row {
    DType dt;
    const char* name;
    int64_t bytes;
    gguf::GgmlType g;
    uint32_t id;
  };
  for (const Row& r : {Row{DType::Q4_K, "q4_k", 144, gguf::GgmlType::Q4_K, 12},
                       Row{DType::Q5_K, "q5_k", 176, gguf::GgmlType::Q5_K, 13},
                       Row{DType::Q6_K, "q6_k", 210, gguf::GgmlType::Q6_K, 14}}) {
    const DTypeTraits& t = traits(r.dt);
    EXPECT_EQ(t.name, r.name);
    EXPECT_EQ(t.block_size, 256);
    EXPECT_EQ(t.type_size, r.bytes);
    EXPECT_TRUE(t.is_float);
    EXPECT_EQ(t.vec_dot_type, DType::Q8_K);
    EXPECT_EQ(row_bytes(r.dt, 4096), size_t(16 * r.bytes));
    EXPECT_EQ(gguf::ggml_type_of(r.dt), r.g);
    const gguf::GgmlTypeInfo* info = gguf::ggml_type_info(r.id);
    ASSERT_NE(info, nullptr);
    ASSERT_TRUE(info->dtype.has_value());
    EXPECT_EQ(*info->dtype, r.dt);
    EXPECT_EQ(info->block_size, 256);
    EXPECT_EQ(info->type_size, r.bytes);
  }
  // The activation-only types are not weights and have no GGUF type here.
  for (DType dt : {DType::Q8_1, DType::Q8_K}) {
    EXPECT_FALSE(traits(dt).is_float) << dtype_name(dt);
    EXPECT_THROW(gguf::ggml_type_of(dt), Error) << dtype_name(dt);
  }
  EXPECT_EQ(traits(DType::Q8_1).type_size, 36);
  EXPECT_EQ(traits(DType::Q8_K).type_size, 292);
}

TEST(QuantKTraits, RowsMustBeMultiplesOf256) {
  for (DType dt : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    try {
      row_bytes(dt, 4000);
      ADD_FAILURE() << dtype_name(dt) << ": no error for a row of 4000";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("256"), std::string::npos) << e.what();
    }
    EXPECT_THROW(row_bytes(dt, 128), Error);
    EXPECT_EQ(row_bytes(dt, 0), 0u);
  }
}

// ---------------------------------------------------------------------------
// Hand-built super-blocks

// Q4_K: d = 0.5, dmin = 0.25, chosen 6-bit scales and minimums (values
// above 15 exercise the split top bits), q(e) = (7 e + 3) mod 16.
struct Q4KCase {
  int sc[8] = {1, 2, 3, 63, 17, 33, 48, 5};
  int mn[8] = {0, 1, 62, 7, 40, 63, 16, 9};
  std::vector<uint8_t> raw = std::vector<uint8_t>(144, 0);
  std::vector<float> want = std::vector<float>(256);
  Q4KCase() {
    put_u16(&raw[0], 0x3800);  // d = 0.5
    put_u16(&raw[2], 0x3400);  // dmin = 0.25
    uint8_t* s = &raw[4];
    for (int j = 0; j < 8; ++j) {
      if (j < 4) {
        s[j] = uint8_t(sc[j]);       // bits 0-5 of byte j
        s[j + 4] = uint8_t(mn[j]);   // bits 0-5 of byte j + 4
      } else {
        s[j + 4] = uint8_t((sc[j] & 15) | ((mn[j] & 15) << 4));
        s[j - 4] = uint8_t(s[j - 4] | ((sc[j] >> 4) << 6));
        s[j] = uint8_t(s[j] | ((mn[j] >> 4) << 6));
      }
    }
    uint8_t* qs = &raw[16];
    for (int e = 0; e < 256; ++e) {
      const int q = (7 * e + 3) % 16;
      const int g = e / 64, within = e % 64;
      if (within < 32) qs[32 * g + within] = uint8_t(qs[32 * g + within] | q);
      else qs[32 * g + within - 32] = uint8_t(qs[32 * g + within - 32] | (q << 4));
      const int j = e / 32;
      want[size_t(e)] = float(0.5 * sc[j] * q - 0.25 * mn[j]);  // exact in float
    }
  }
};

// Q6_K: d = 0.125, scales s * 9 - 70 (negative and positive), q(e) = (13 e + 5) mod 64.
struct Q6KCase {
  std::vector<uint8_t> raw = std::vector<uint8_t>(210, 0);
  std::vector<float> want = std::vector<float>(256);
  Q6KCase() {
    uint8_t* ql = &raw[0];
    uint8_t* qh = &raw[128];
    auto* sc = reinterpret_cast<int8_t*>(&raw[192]);
    put_u16(&raw[208], 0x3000);  // d = 0.125
    for (int s = 0; s < 16; ++s) sc[s] = int8_t(s * 9 - 70);
    auto q = [](int e) { return (13 * e + 5) % 64; };
    for (int h = 0; h < 2; ++h) {
      for (int l = 0; l < 32; ++l) {
        const int e0 = 128 * h + l, e1 = e0 + 32, e2 = e0 + 64, e3 = e0 + 96;
        ql[64 * h + l] = uint8_t((q(e0) & 15) | ((q(e2) & 15) << 4));
        ql[64 * h + 32 + l] = uint8_t((q(e1) & 15) | ((q(e3) & 15) << 4));
        qh[32 * h + l] = uint8_t((q(e0) >> 4) | ((q(e1) >> 4) << 2) | ((q(e2) >> 4) << 4) | ((q(e3) >> 4) << 6));
      }
    }
    for (int e = 0; e < 256; ++e) want[size_t(e)] = float(0.125 * (e / 16 * 9 - 70) * (q(e) - 32));
  }
};

TEST(QuantKDequant, Q4KHandBlock) {
  const Q4KCase c;
  EXPECT_EQ(dequant(DType::Q4_K, c.raw.data(), 256), c.want);
  EXPECT_EQ(c.want[0], 0.5f * 1 * 3);            // sub-block 0: sc 1, m 0, q 3
  EXPECT_EQ(c.want[255], 0.5f * 5 * 12 - 2.25f);  // sub-block 7: sc 5, m 9, q (7*255+3)%16 = 12
}

TEST(QuantKDequant, Q6KHandBlock) {
  const Q6KCase c;
  EXPECT_EQ(dequant(DType::Q6_K, c.raw.data(), 256), c.want);
  EXPECT_EQ(c.want[0], 0.125f * -70 * (5 - 32));
  EXPECT_EQ(c.want[255], 0.125f * 65 * ((13 * 255 + 5) % 64 - 32));
}

class QuantKIsaTest : public ::testing::TestWithParam<cpu::Isa> {
 protected:
  void SetUp() override {
    if (!cpu::isa_supported(GetParam()))
      GTEST_SKIP() << cpu::isa_name(GetParam()) << " is not supported by this CPU";
    k = cpu::kernels_for(GetParam());
  }
  const cpu::KernelTable* k = nullptr;
};

TEST_P(QuantKIsaTest, ConvertMatchesTheReference) {
  // The hand-built blocks, then random quantized rows: to_f32 bit-exact with
  // the reference, from_f32 (the reference quantizer) byte-exact.
  const Q4KCase c4;
  const Q6KCase c6;
  auto y = poisoned(256);
  k->to_f32[int(DType::Q4_K)](c4.raw.data(), y.data(), 256);
  EXPECT_EQ(y, c4.want);
  k->to_f32[int(DType::Q6_K)](c6.raw.data(), y.data(), 256);
  EXPECT_EQ(y, c6.want);
  const auto x = random_floats(2048, 5, -4, 3);
  for (DType dt : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    std::vector<uint8_t> q(row_bytes(dt, 2048), 0);
    k->from_f32[int(dt)](x.data(), q.data(), 2048);
    EXPECT_EQ(q, quantize(dt, x)) << dtype_name(dt);
    auto yk = poisoned(2048);
    k->to_f32[int(dt)](q.data(), yk.data(), 2048);
    EXPECT_EQ(yk, dequant(dt, q.data(), 2048)) << dtype_name(dt);
  }
}

TEST_P(QuantKIsaTest, F32ActivationMatmulAgainstScalar) {
  // matmul[] (f32 activations, the non-default path) against the scalar
  // reference (dequantized weights, double sums): |y - ref| <= 1e-5 * sum |x w|.
  const cpu::KernelTable* ref = cpu::kernels_for(cpu::Isa::Scalar);
  const int64_t kk = 768, n = 5;
  for (DType dt : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    ASSERT_NE(k->matmul[int(dt)], nullptr) << dtype_name(dt);
    for (int64_t m : {1, 3, 6}) {
      const auto x = random_floats(size_t(m * kk), uint32_t(m), -2, 2);
      const auto wf = random_floats(size_t(n * kk), 12, -1, 1);
      const auto bias = random_floats(size_t(n), 13);
      const auto w = quantize(dt, wf);
      const auto wd = dequant(dt, w.data(), n * kk);
      auto y = poisoned(size_t(m * n)), yr = poisoned(size_t(m * n));
      cpu::MatmulArgs a{x.data(), kk, w.data(), int64_t(row_bytes(dt, kk)), bias.data(), y.data(), n, m, kk};
      k->matmul[int(dt)](a, 0, n);
      a.y = yr.data();
      ref->matmul[int(dt)](a, 0, n);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          double scale = std::fabs(bias[size_t(j)]);
          for (int64_t t = 0; t < kk; ++t) scale += std::fabs(double(x[size_t(i * kk + t)]) * wd[size_t(j * kk + t)]);
          EXPECT_LE(std::fabs(double(y[size_t(i * n + j)]) - double(yr[size_t(i * n + j)])), 1e-5 * scale)
              << dtype_name(dt) << " m=" << m << " y[" << i << "," << j << "]";
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, QuantKIsaTest,
                         ::testing::Values(cpu::Isa::Scalar, cpu::Isa::Avx2, cpu::Isa::Avx512),
                         [](const auto& info) { return std::string(cpu::isa_name(info.param)); });

// ---------------------------------------------------------------------------
// The reference quantizers

// Rows of four kinds: uniform, all positive (minimum clipped to 0), with
// outliers, and a super-block of zeros.
std::vector<float> test_row(int kind, size_t n) {
  auto x = random_floats(n, uint32_t(40 + kind), -3, 2);
  if (kind == 1)
    for (float& v : x) v = v + 3.5f;
  if (kind == 2)
    for (size_t i = 0; i < n; i += 37) x[i] *= 20;
  if (kind == 3)
    for (size_t i = 256; i < 512; ++i) x[i] = 0;
  return x;
}

TEST(QuantKQuantize, Q4KErrorBound) {
  // Per sub-block of 32 with ideal step a = (max - min(min, 0)) / 15.  The
  // least-squares fits may clip the extremes by up to a step of a grid
  // 15 +- 1 steps wide, and the stored 6-bit codes are within one step of d
  // (dmin) of the fit: |e| <= a + 8 d + dmin (d, dmin the stored super-block
  // values).  RMS error is reported against the ideal step: the fits give
  // less than plain rounding over the range would (0.29).
  const size_t n = 4096;
  for (int kind = 0; kind < 4; ++kind) {
    const auto x = test_row(kind, n);
    const auto q = quantize(DType::Q4_K, x);
    const auto y = dequant(DType::Q4_K, q.data(), int64_t(n));
    double se = 0, sa = 0;
    for (size_t sb = 0; sb < n / 256; ++sb) {
      uint16_t hd, hm;
      std::memcpy(&hd, &q[sb * 144], 2);
      std::memcpy(&hm, &q[sb * 144 + 2], 2);
      const double d = f16_to_f32(hd), dmin = f16_to_f32(hm);
      for (size_t j = 0; j < 8; ++j) {
        const size_t o = sb * 256 + j * 32;
        float mn = x[o], mx = x[o];
        for (size_t t = 0; t < 32; ++t) {
          mn = std::min(mn, x[o + t]);
          mx = std::max(mx, x[o + t]);
        }
        const double a = (double(mx) - std::min(double(mn), 0.0)) / 15;
        for (size_t t = 0; t < 32; ++t) {
          const double e = std::fabs(double(y[o + t]) - double(x[o + t]));
          se += e * e;
          sa += a * a;
          ASSERT_LE(e, a + 8 * d + dmin + 1e-7) << "kind " << kind << " element " << o + t;
        }
      }
    }
    std::printf("[ q4_k ] row kind %d: rms error %.3f of the ideal 4-bit step\n", kind, std::sqrt(se / sa));
    EXPECT_LT(std::sqrt(se / sa), 0.29) << "kind " << kind;
  }
}

TEST(QuantKQuantize, Q6KErrorBound) {
  // Per sub-block of 16 the ideal step is s = max |x| / 32; the stored step
  // ds = d * sc is within d / 2 of it, so |e| <= 1.5 |ds| + 16.5 d.
  const size_t n = 4096;
  for (int kind = 0; kind < 4; ++kind) {
    const auto x = test_row(kind, n);
    const auto q = quantize(DType::Q6_K, x);
    const auto y = dequant(DType::Q6_K, q.data(), int64_t(n));
    double se = 0, ss = 0;
    for (size_t sb = 0; sb < n / 256; ++sb) {
      const uint8_t* b = &q[sb * 210];
      uint16_t hd;
      std::memcpy(&hd, b + 208, 2);
      const double d = f16_to_f32(hd);
      for (size_t s = 0; s < 16; ++s) {
        const double ds = std::fabs(d * double(int8_t(b[192 + s])));
        float amax = 0;
        for (size_t t = 0; t < 16; ++t) amax = std::max(amax, std::fabs(x[sb * 256 + s * 16 + t]));
        for (size_t t = 0; t < 16; ++t) {
          const size_t i = sb * 256 + s * 16 + t;
          const double e = std::fabs(double(y[i]) - double(x[i]));
          se += e * e;
          ss += double(amax / 32) * double(amax / 32);
          ASSERT_LE(e, 1.5 * ds + 16.5 * d + 1e-7) << "kind " << kind << " element " << i;
        }
      }
    }
    std::printf("[ q6_k ] row kind %d: rms error %.3f of the ideal 6-bit step\n", kind, std::sqrt(se / ss));
    EXPECT_LT(std::sqrt(se / ss), 0.45) << "kind " << kind;
  }
}

TEST(QuantKQuantize, ZeroAndNonFiniteBlocksStayDefined) {
  const std::vector<float> zero(512, 0.0f);
  for (DType dt : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const auto q = quantize(dt, zero);
    EXPECT_EQ(dequant(dt, q.data(), 512), zero) << dtype_name(dt);
    std::vector<float> bad(256, 1.0f);
    bad[3] = NAN;
    bad[100] = INFINITY;
    bad[200] = -INFINITY;
    const auto qb = quantize(dt, bad);  // must not hit an undefined conversion
    EXPECT_EQ(qb.size(), size_t(traits(dt).type_size)) << dtype_name(dt);
  }
}

// ---------------------------------------------------------------------------
// GGUF

TEST(QuantKGguf, TensorsRoundTrip) {
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  const auto x = random_floats(512 * 3, 8);
  const auto q4 = quantize(DType::Q4_K, x);
  const auto q6 = quantize(DType::Q6_K, x);
  w.add_tensor("a", gguf::ggml_type_of(DType::Q4_K), {3, 512}, q4.data(), q4.size());
  w.add_tensor("b", gguf::ggml_type_of(DType::Q6_K), {3, 512}, q6.data(), q6.size());
  const std::string bytes = w.bytes();
  const gguf::File f = gguf::File::parse(bytes.data(), bytes.size(), "k.gguf");
  struct Want {
    const char* name;
    uint32_t id;
    DType dt;
    const std::vector<uint8_t>* data;
  };
  for (const Want& e : {Want{"a", 12, DType::Q4_K, &q4}, Want{"b", 14, DType::Q6_K, &q6}}) {
    const gguf::TensorInfo* t = f.find_tensor(e.name);
    ASSERT_NE(t, nullptr) << e.name;
    EXPECT_EQ(t->type_id, e.id);
    EXPECT_EQ(t->nbytes, e.data->size());
    EXPECT_EQ(t->ne, (std::vector<int64_t>{512, 3}));
    const Tensor v = f.tensor(*t);
    EXPECT_EQ(v.dtype(), e.dt);
    ASSERT_EQ(v.nbytes(), e.data->size());
    EXPECT_EQ(std::memcmp(v.data(), e.data->data(), e.data->size()), 0) << e.name;
  }
}

TEST(QuantKGguf, RowsNotMultipleOf256AreRefused) {
  // A Q4_K tensor whose rows are 128 long cannot exist: writing or reading
  // it must end in an Error, not in reading past the data.
  EXPECT_THROW(
      {
        gguf::Writer w;
        w.set_string("general.architecture", "llama");
        std::vector<uint8_t> junk(144 * 2, 0);
        w.add_tensor("a", gguf::GgmlType::Q4_K, {4, 128}, junk.data(), junk.size());
        const std::string bytes = w.bytes();
        const gguf::File f = gguf::File::parse(bytes.data(), bytes.size(), "bad.gguf");
        (void)f.tensor(*f.find_tensor("a"));
      },
      Error);
}

TEST(QuantKOp, MatmulRefusesRowsNotMultipleOf256) {
  Context ctx(1);
  std::vector<uint8_t> w(144 * 4, 0);
  std::vector<float> x(300, 1.0f), y(2);
  EXPECT_THROW(ops::matmul(ctx, Tensor::view(x.data(), DType::F32, {1, 300}),
                           Tensor::view(w.data(), DType::Q4_K, {2, 300}), nullptr,
                           Tensor::view(y.data(), DType::F32, {1, 2})),
               Error);
}

}  // namespace
}  // namespace runnel

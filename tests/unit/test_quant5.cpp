// Q5_0 and Q5_1: dequantization of hand-made blocks (the 5th bits of the 32
// values packed here, independently of the kernels) through the traits and
// every ISA's conversion, the reference quantizers on exact grids, and GGUF
// tensors of both types.  The randomized kernel checks (every ISA's matmul
// and qmatmul against the scalar reference) are in test_quant.cpp and
// test_quant_dot.cpp, which list these types with the others.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/half.hpp"
#include "cpu/kernels.hpp"
#include "cpu/quant.hpp"
#include "runnel/dtype.hpp"
#include "runnel/gguf.hpp"
#include "runnel/tensor.hpp"
#include "test_util.hpp"

namespace runnel {
namespace {

using cpu::f32_to_f16;
using test::poisoned;
using test::random_floats;

// One block's bytes from its 32 values (0..31) and its f16 fields: d (and m
// for Q5_1), then qh as a little-endian uint32 whose bit i is bit 4 of value
// i, then 16 bytes of nibbles (value j low, value j + 16 high).
std::vector<uint8_t> pack_block(const int* q, uint16_t d, const uint16_t* m) {
  std::vector<uint8_t> raw;
  raw.push_back(uint8_t(d & 0xff));
  raw.push_back(uint8_t(d >> 8));
  if (m) {
    raw.push_back(uint8_t(*m & 0xff));
    raw.push_back(uint8_t(*m >> 8));
  }
  uint32_t qh = 0;
  for (int i = 0; i < 32; ++i)
    if (q[i] & 16) qh |= uint32_t(1) << i;
  for (int t = 0; t < 4; ++t) raw.push_back(uint8_t(qh >> (8 * t)));
  for (int j = 0; j < 16; ++j) raw.push_back(uint8_t((q[j] & 15) | ((q[j + 16] & 15) << 4)));
  return raw;
}

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

// The scalar reference and every supported ISA's to_f32 give `want`.
void expect_every_isa(DType dt, const std::vector<uint8_t>& raw, const std::vector<float>& want) {
  const int64_t n = int64_t(want.size());
  EXPECT_EQ(dequant(dt, raw.data(), n), want) << dtype_name(dt) << " traits";
  for (cpu::Isa isa : {cpu::Isa::Scalar, cpu::Isa::Avx2, cpu::Isa::Avx512}) {
    if (!cpu::isa_supported(isa)) continue;
    const cpu::KernelTable* k = cpu::kernels_for(isa);
    ASSERT_NE(k->to_f32[int(dt)], nullptr) << dtype_name(dt) << " " << cpu::isa_name(isa);
    auto y = poisoned(size_t(n));
    k->to_f32[int(dt)](raw.data(), y.data(), n);
    EXPECT_EQ(y, want) << dtype_name(dt) << " " << cpu::isa_name(isa);
  }
}

// Four blocks: a pattern using every value 0..31 once, all high bits set
// with alternating extremes, the single high bits 0 and 16 (the first of
// each half), and bit 31 alone.
struct HandBlocks {
  std::vector<std::vector<int>> q;
  HandBlocks() {
    std::vector<int> a(32), b(32), c(32, 0), e(32, 0);
    for (int i = 0; i < 32; ++i) {
      a[size_t(i)] = (i * 13 + 7) % 32;  // 13 is odd: a permutation of 0..31
      b[size_t(i)] = i % 2 ? 31 : 16;
    }
    c[0] = 16;
    c[16] = 16 + 5;
    c[15] = 15;
    e[31] = 16;
    q = {a, b, c, e};
  }
};

TEST(Quant5Dequant, Q5_0HandBlocks) {
  const HandBlocks h;
  const uint16_t d[4] = {0x3800, 0xc000, 0x3c00, 0x3400};  // 0.5, -2, 1, 0.25
  const float df[4] = {0.5f, -2.0f, 1.0f, 0.25f};
  std::vector<uint8_t> raw;
  std::vector<float> want;
  for (int b = 0; b < 4; ++b) {
    const auto blk = pack_block(h.q[size_t(b)].data(), d[b], nullptr);
    ASSERT_EQ(blk.size(), 22u);
    raw.insert(raw.end(), blk.begin(), blk.end());
    for (int i = 0; i < 32; ++i) want.push_back(float(h.q[size_t(b)][size_t(i)] - 16) * df[b]);
  }
  // Spot checks written out: block 0 element 0 is 7, element 1 is 20.
  EXPECT_EQ(want[0], (7 - 16) * 0.5f);
  EXPECT_EQ(want[1], (20 - 16) * 0.5f);
  EXPECT_EQ(want[32], 0.0f);    // 16 - 16
  EXPECT_EQ(want[33], -30.0f);  // (31 - 16) * -2
  EXPECT_EQ(want[64], 0.0f);    // bit 0 of qh alone
  EXPECT_EQ(want[64 + 16], 5.0f);
  EXPECT_EQ(want[64 + 15], -1.0f);
  EXPECT_EQ(want[96 + 31], 0.0f);  // bit 31 alone
  EXPECT_EQ(want[96 + 30], -4.0f);
  // The raw bytes of block 2: qh = bits 0 and 16, qs[0] = 0, qs[15] = 15.
  EXPECT_EQ(raw[44 + 2], 0x01);
  EXPECT_EQ(raw[44 + 4], 0x01);
  EXPECT_EQ(raw[44 + 6], 0x50);  // value 0 (low) and value 16 = 5 | 16 (high nibble 5)
  expect_every_isa(DType::Q5_0, raw, want);
}

TEST(Quant5Dequant, Q5_1HandBlocks) {
  const HandBlocks h;
  const uint16_t d[4] = {0x3400, 0xb800, 0x4000, 0x3c00};  // 0.25, -0.5, 2, 1
  const uint16_t m[4] = {0xc200, 0x4500, 0x0000, 0xbc00};  // -3, 5, 0, -1
  const float df[4] = {0.25f, -0.5f, 2.0f, 1.0f}, mf[4] = {-3.0f, 5.0f, 0.0f, -1.0f};
  std::vector<uint8_t> raw;
  std::vector<float> want;
  for (int b = 0; b < 4; ++b) {
    const auto blk = pack_block(h.q[size_t(b)].data(), d[b], &m[b]);
    ASSERT_EQ(blk.size(), 24u);
    raw.insert(raw.end(), blk.begin(), blk.end());
    for (int i = 0; i < 32; ++i) want.push_back(float(h.q[size_t(b)][size_t(i)]) * df[b] + mf[b]);
  }
  EXPECT_EQ(want[0], 7 * 0.25f - 3);
  EXPECT_EQ(want[33], 31 * -0.5f + 5);
  EXPECT_EQ(want[64], 32.0f);
  EXPECT_EQ(want[64 + 16], 42.0f);
  EXPECT_EQ(want[96 + 31], 15.0f);
  expect_every_isa(DType::Q5_1, raw, want);
}

// Random blocks with every pattern of high bits: each ISA bit for bit with
// the reference (the reference itself is checked on the hand blocks).
TEST(Quant5Dequant, RandomBytesEveryIsa) {
  for (DType dt : {DType::Q5_0, DType::Q5_1}) {
    const int64_t n = 32 * 64;
    std::vector<uint8_t> raw(row_bytes(dt, n));
    uint32_t s = 12345;
    for (uint8_t& b : raw) {
      s = s * 1664525u + 1013904223u;
      b = uint8_t(s >> 24);
    }
    // Finite f16 fields: d and m in [-2, 2).
    const int64_t bytes = traits(dt).type_size;
    for (int64_t b = 0; b < n / 32; ++b) {
      for (int f = 0; f < (dt == DType::Q5_1 ? 2 : 1); ++f) {
        const uint16_t h = f32_to_f16(float((b * 37 + f * 11) % 64 - 32) / 16.0f);
        std::memcpy(raw.data() + b * bytes + 2 * f, &h, 2);
      }
    }
    const auto want = dequant(dt, raw.data(), n);
    expect_every_isa(dt, raw, want);
  }
}

// ---------------------------------------------------------------------------
// The reference quantizers

TEST(Quant5Quantize, ExactGridsGiveExactBlocks) {
  // Q5_0: the value of largest magnitude is -16, so d = 1 and q = x + 16 = j.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[size_t(j)] = float(j - 16);
  auto q = quantize(DType::Q5_0, x);
  ASSERT_EQ(q.size(), 22u);
  EXPECT_EQ(q[0], 0x00);
  EXPECT_EQ(q[1], 0x3c);
  EXPECT_EQ(q[2], 0x00);  // values 0..15 have bit 4 clear,
  EXPECT_EQ(q[3], 0x00);
  EXPECT_EQ(q[4], 0xff);  // 16..31 set
  EXPECT_EQ(q[5], 0xff);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(q[size_t(6 + j)], uint8_t(j | (j << 4))) << j;
  EXPECT_EQ(dequant(DType::Q5_0, q.data(), 32), x);

  // Q5_1: min 1, max 16.5, so d = 0.5 and m = 1; q = (j * 7) % 32.
  for (int j = 0; j < 32; ++j) x[size_t(j)] = 1.0f + 0.5f * float((j * 7) % 32);
  q = quantize(DType::Q5_1, x);
  ASSERT_EQ(q.size(), 24u);
  uint16_t d, m;
  std::memcpy(&d, q.data(), 2);
  std::memcpy(&m, q.data() + 2, 2);
  EXPECT_EQ(d, 0x3800);
  EXPECT_EQ(m, 0x3c00);
  uint32_t qh;
  std::memcpy(&qh, q.data() + 4, 4);
  for (int j = 0; j < 32; ++j) EXPECT_EQ((qh >> j) & 1, uint32_t(((j * 7) % 32) >> 4)) << j;
  EXPECT_EQ(dequant(DType::Q5_1, q.data(), 32), x);
}

TEST(Quant5Quantize, PositiveExtremeClipsToFifteen) {
  // Q5_0 maps the value of largest magnitude to -16: a positive one gives a
  // negative d and lands on q = 0; the most negative value then rounds to 31
  // at most (values beyond +15 d clip there, as in ggml).
  std::vector<float> x(32, 0.0f);
  x[3] = 8.0f;
  x[20] = -8.0f;
  const auto q = quantize(DType::Q5_0, x);
  const auto y = dequant(DType::Q5_0, q.data(), 32);
  EXPECT_EQ(y[3], 8.0f);     // d = -0.5, q = 0
  EXPECT_EQ(y[20], -7.5f);   // 16.5 + 16 clips to 31: 15 * -0.5
  EXPECT_EQ(y[0], 0.0f);
}

// ---------------------------------------------------------------------------
// GGUF

TEST(Quant5Gguf, TensorsLoadAsViews) {
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  const auto x = random_floats(576 * 3, 8);  // rows of 576, as SmolLM2's
  const auto q0 = quantize(DType::Q5_0, x);
  const auto q1 = quantize(DType::Q5_1, x);
  w.add_tensor("a", gguf::ggml_type_of(DType::Q5_0), {3, 576}, q0.data(), q0.size());
  w.add_tensor("b", gguf::ggml_type_of(DType::Q5_1), {3, 576}, q1.data(), q1.size());
  const std::string bytes = w.bytes();
  const gguf::File f = gguf::File::parse(bytes.data(), bytes.size(), "q5.gguf");
  struct Want {
    const char* name;
    uint32_t id;
    DType dt;
    const std::vector<uint8_t>* data;
  };
  for (const Want& e : {Want{"a", 6, DType::Q5_0, &q0}, Want{"b", 7, DType::Q5_1, &q1}}) {
    const gguf::TensorInfo* t = f.find_tensor(e.name);
    ASSERT_NE(t, nullptr) << e.name;
    EXPECT_EQ(t->type_id, e.id);
    EXPECT_EQ(t->nbytes, e.data->size());
    EXPECT_EQ(t->nbytes, uint64_t(3 * 18 * traits(e.dt).type_size));
    EXPECT_EQ(t->ne, (std::vector<int64_t>{576, 3}));
    const Tensor v = f.tensor(*t);
    EXPECT_EQ(v.dtype(), e.dt);
    EXPECT_EQ(v.dim(0), 3);
    EXPECT_EQ(v.dim(1), 576);
    ASSERT_EQ(v.nbytes(), e.data->size());
    EXPECT_EQ(std::memcmp(v.data(), e.data->data(), e.data->size()), 0) << e.name;
  }
}

}  // namespace
}  // namespace runnel

#pragma once
// Block layouts of the quantized types (ggml's Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
// Q4_K, Q6_K and the activation types Q8_1, Q8_K) and their scalar reference
// conversions: the dtype table's to_float / from_float (dequant_* / quant_*)
// and quant_act_q8_0.  Shared by the dtype table (src/core/dtype.cpp), the CPU
// kernels (through kernels/cpu/quant.hpp, which adds the reference dot
// products) and the CUDA kernels, so it is plain C++ without intrinsics that
// both the host compiler and nvcc compile; RUNNEL_HD (common/half.hpp) marks
// what device code may call.  nvcc contracts a * b + c into an FMA by default:
// device code that must match the host bit for bit needs --fmad=false or
// explicitly rounded steps.
//
// The layouts and the rounding of the 32-element quantizers follow ggml's
// published reference (quantize_row_*_ref and dequantize_row_* in
// ggml-quants.c), so rows written here load in llama.cpp and its files
// dequantize bit-exactly here.  The K-quant quantizers are runnel's own (a
// per-sub-block scale and minimum fit), writing ggml's layout.
//
//   Q8_0 (34 bytes): f16 d, int8 q[32];                 x[i] = q[i] * d
//   Q4_0 (18 bytes): f16 d, u8 qs[16];                  x[i] = (nib(i) - 8) * d
//   Q4_1 (20 bytes): f16 d, f16 m, u8 qs[16];           x[i] = nib(i) * d + m
//   Q5_0 (22 bytes): f16 d, u8 qh[4], u8 qs[16];        x[i] = (q5(i) - 16) * d
//   Q5_1 (24 bytes): f16 d, f16 m, u8 qh[4], u8 qs[16]; x[i] = q5(i) * d + m
//   Q8_1 (36 bytes): f16 d, f16 s, int8 q[32];          x[i] = q[i] * d, s = d * sum(q)
// where nib(i) is the low nibble of qs[i] for i < 16, the high nibble of
// qs[i - 16] otherwise, and q5(i) = nib(i) | (bit i of qh, read as a
// little-endian uint32) << 4.  Super-blocks of 256:
//   Q4_K (144 bytes): f16 d, f16 dmin, u8 scales[12], u8 qs[128].  Sub-block
//     j (32 elements) has 6-bit scale sc_j and minimum m_j packed in scales
//     (see scale_min_k4); element 64 g + l (l < 32) is the low nibble of
//     qs[32 g + l] in sub-block 2 g, element 64 g + 32 + l its high nibble in
//     sub-block 2 g + 1; x = d * sc_j * q - dmin * m_j.
//   Q6_K (210 bytes): u8 ql[128], u8 qh[64], int8 scales[16], f16 d.  In half
//     h (128 elements), for l < 32, the 6-bit values of elements 128 h + l,
//     + 32, + 64, + 96 take their low 4 bits from ql[64 h + l] (low nibble),
//     ql[64 h + 32 + l] (low), ql[64 h + l] (high), ql[64 h + 32 + l] (high)
//     and their top 2 bits from bits 0-1, 2-3, 4-5, 6-7 of qh[32 h + l];
//     x = d * scales[e / 16] * (q - 32) for element e.
//   Q8_K (292 bytes, activations only): f32 d, int8 q[256], int16 bsums[16]
//     (sums of q over each 16).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/half.hpp"

namespace runnel::common {

inline constexpr int64_t kQK = 32;

struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ8_1 {
  uint16_t d, s;
  int8_t qs[kQK];
};

inline constexpr int64_t kQK_K = 256;

struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kQK_K / 8];  // bit 2 g (2 g + 1) of byte l: the high bit of element 64 g + l (+ 32)
  uint8_t qs[kQK_K / 2];
};
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};
static_assert(sizeof(BlockQ8_0) == 34 && alignof(BlockQ8_0) == 2);
static_assert(sizeof(BlockQ4_0) == 18 && alignof(BlockQ4_0) == 2);
static_assert(sizeof(BlockQ4_1) == 20 && alignof(BlockQ4_1) == 2);
static_assert(sizeof(BlockQ5_0) == 22 && alignof(BlockQ5_0) == 2);
static_assert(sizeof(BlockQ5_1) == 24 && alignof(BlockQ5_1) == 2);
static_assert(sizeof(BlockQ8_1) == 36 && alignof(BlockQ8_1) == 2);
static_assert(sizeof(BlockQ4_K) == 144 && alignof(BlockQ4_K) == 2);
static_assert(sizeof(BlockQ5_K) == 176 && alignof(BlockQ5_K) == 2);
static_assert(sizeof(BlockQ6_K) == 210 && alignof(BlockQ6_K) == 2);
static_assert(sizeof(BlockQ8_K) == 292 && alignof(BlockQ8_K) == 4);

// Float to a small integer by truncation toward zero, as ggml's (int8_t) casts
// do for in-range values; clamping first keeps NaN and huge inputs defined.
RUNNEL_HD inline int trunc_clamped(float v, float lo, float hi) {
  if (!(v >= lo)) v = lo;  // also catches NaN
  if (v > hi) v = hi;
  return int(v);
}

// Round half away from zero (as roundf) and clamp; NaN gives lo.
RUNNEL_HD inline int round_clamped(float v, int lo, int hi) {
  if (!(v >= float(lo))) return lo;
  if (v > float(hi)) return hi;
  return int(std::round(v));
}

// Round half to even (the SIMD activation quantizers' rounding) and clamp;
// NaN gives lo.
RUNNEL_HD inline int round_even_clamped(float v, int lo, int hi) {
  if (!(v >= float(lo))) return lo;
  if (v > float(hi)) return hi;
  return int(std::nearbyint(v));
}

// Sub-block j's 6-bit scale and minimum of a Q4_K super-block: j < 4 in the
// low 6 bits of bytes j and j + 4; j >= 4 in the nibbles of byte j + 4 with
// the top 2 bits in bits 6-7 of bytes j - 4 (scale) and j (minimum).
RUNNEL_HD inline void scale_min_k4(int j, const uint8_t* s, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

RUNNEL_HD inline void dequant_q8_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK; ++j) dst[i * kQK + j] = float(b[i].qs[j]) * d;
  }
}

RUNNEL_HD inline void dequant_q4_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      dst[i * kQK + j] = float(int(b[i].qs[j] & 0x0f) - 8) * d;
      dst[i * kQK + j + kQK / 2] = float(int(b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

RUNNEL_HD inline void dequant_q4_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      dst[i * kQK + j] = float(b[i].qs[j] & 0x0f) * d + m;
      dst[i * kQK + j + kQK / 2] = float(b[i].qs[j] >> 4) * d + m;
    }
  }
}

// The 32 unsigned 5-bit values (0..31) of a Q5_0 / Q5_1 block.
RUNNEL_HD inline void q5_values(const uint8_t* qs, const uint8_t* qh, int* q) {
  const uint32_t h = uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24;
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = (qs[j] & 0x0f) | int((h >> j) & 1) << 4;
    q[j + kQK / 2] = (qs[j] >> 4) | int((h >> (j + kQK / 2)) & 1) << 4;
  }
}

// Packs 32 values 0..31 into qs (low 4 bits, as Q4_1) and qh (bit 4).
RUNNEL_HD inline void q5_pack(const int* q, uint8_t* qs, uint8_t* qh) {
  uint32_t h = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    qs[j] = uint8_t((q[j] & 0x0f) | ((q[j + kQK / 2] & 0x0f) << 4));
    h |= uint32_t((q[j] >> 4) & 1) << j;
    h |= uint32_t((q[j + kQK / 2] >> 4) & 1) << (j + kQK / 2);
  }
  for (int t = 0; t < 4; ++t) qh[t] = uint8_t(h >> (8 * t));
}

RUNNEL_HD inline void dequant_q5_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = f16_to_f32(b[i].d);
    int q[kQK];
    q5_values(b[i].qs, b[i].qh, q);
    for (int j = 0; j < kQK; ++j) dst[i * kQK + j] = float(q[j] - 16) * d;
  }
}

RUNNEL_HD inline void dequant_q5_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
    int q[kQK];
    q5_values(b[i].qs, b[i].qh, q);
    for (int j = 0; j < kQK; ++j) dst[i * kQK + j] = float(q[j]) * d + m;
  }
}

RUNNEL_HD inline void quant_q8_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* x = src + i * kQK;
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f32_to_f16(d);
    for (int j = 0; j < kQK; ++j) {
      float v = std::round(x[j] * id);  // half away from zero, as roundf
      if (!(v >= -127)) v = -127;
      if (v > 127) v = 127;
      b[i].qs[j] = int8_t(v);
    }
  }
}

// Activations for Q8_0 and Q4_0 / Q5_0 weights: q = round_even(x * 127 /
// amax), d = amax / 127, as ggml's SIMD quantize_row_q8_0 (its scalar
// reference, quant_q8_0 above, divides by d and rounds halves away from zero).
RUNNEL_HD inline void quant_act_q8_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* x = src + i * kQK;
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    b[i].d = f32_to_f16(amax / 127);
    for (int j = 0; j < kQK; ++j) b[i].qs[j] = int8_t(round_even_clamped(x[j] * id, -127, 127));
  }
}

RUNNEL_HD inline void quant_q4_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ4_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* x = src + i * kQK;
    // The value of largest magnitude, sign kept (the first one on ties).
    float amax = 0, max = 0;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f32_to_f16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const int q0 = trunc_clamped(x[j] * id + 8.5f, 0, 15);
      const int q1 = trunc_clamped(x[j + kQK / 2] * id + 8.5f, 0, 15);
      b[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

RUNNEL_HD inline void quant_q4_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ4_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* x = src + i * kQK;
    float mn = x[0], mx = x[0];
    for (int j = 1; j < kQK; ++j) {
      if (x[j] < mn) mn = x[j];
      if (x[j] > mx) mx = x[j];
    }
    const float d = (mx - mn) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f32_to_f16(d);
    b[i].m = f32_to_f16(mn);
    for (int j = 0; j < kQK / 2; ++j) {
      const int q0 = trunc_clamped((x[j] - mn) * id + 0.5f, 0, 15);
      const int q1 = trunc_clamped((x[j + kQK / 2] - mn) * id + 0.5f, 0, 15);
      b[i].qs[j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

// As Q4_0 with 5 bits: the value of largest magnitude maps to -16.
RUNNEL_HD inline void quant_q5_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ5_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* x = src + i * kQK;
    float amax = 0, max = 0;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f32_to_f16(d);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = trunc_clamped(x[j] * id + 16.5f, 0, 31);
    q5_pack(q, b[i].qs, b[i].qh);
  }
}

// As Q4_1 with 5 bits: d = (max - min) / 31, m = min.
RUNNEL_HD inline void quant_q5_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ5_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* x = src + i * kQK;
    float mn = x[0], mx = x[0];
    for (int j = 1; j < kQK; ++j) {
      if (x[j] < mn) mn = x[j];
      if (x[j] > mx) mx = x[j];
    }
    const float d = (mx - mn) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    b[i].d = f32_to_f16(d);
    b[i].m = f32_to_f16(mn);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = trunc_clamped((x[j] - mn) * id + 0.5f, 0, 31);
    q5_pack(q, b[i].qs, b[i].qh);
  }
}

// Activations for Q4_1 and Q5_1 weights, rounded as ggml's SIMD
// quantize_row_q8_1 (see quant_act_q8_0); s = d * sum(q).
RUNNEL_HD inline void quant_q8_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float* x = src + i * kQK;
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      const int q = round_even_clamped(x[j] * id, -127, 127);
      b[i].qs[j] = int8_t(q);
      sum += q;
    }
    b[i].d = f32_to_f16(d);
    b[i].s = f32_to_f16(float(sum) * d);
  }
}

RUNNEL_HD inline void dequant_q8_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ8_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK; ++j) dst[i * kQK + j] = float(b[i].qs[j]) * d;
  }
}

// Activations for the K-quants: d = max |x| / 127, q = round_even(x * 127 /
// max |x|).
RUNNEL_HD inline void quant_q8_k(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* x = src + i * kQK_K;
    float amax = 0;
    for (int j = 0; j < kQK_K; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = amax != 0 ? 127.0f / amax : 0.0f;
    b[i].d = d;
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int j = 16 * g; j < 16 * g + 16; ++j) {
        const int q = round_even_clamped(x[j] * id, -127, 127);
        b[i].qs[j] = int8_t(q);
        sum += q;
      }
      b[i].bsums[g] = int16_t(sum);
    }
  }
}

RUNNEL_HD inline void dequant_q8_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ8_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i)
    for (int j = 0; j < kQK_K; ++j) dst[i * kQK_K + j] = float(b[i].qs[j]) * b[i].d;
}

// ggml's dequantize_row_q4_K: the same float operations in the same order.
RUNNEL_HD inline void dequant_q4_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    float* y = dst + i * kQK_K;
    for (int g = 0; g < 4; ++g) {
      const uint8_t* q = b[i].qs + 32 * g;
      int sc, m;
      scale_min_k4(2 * g, b[i].scales, sc, m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      scale_min_k4(2 * g + 1, b[i].scales, sc, m);
      const float d2 = d * float(sc), m2 = dmin * float(m);
      for (int l = 0; l < 32; ++l) y[64 * g + l] = d1 * float(q[l] & 0x0f) - m1;
      for (int l = 0; l < 32; ++l) y[64 * g + 32 + l] = d2 * float(q[l] >> 4) - m2;
    }
  }
}

// Q5_K: as Q4_K, with each value's fifth bit in qh (ggml's dequantize_row_q5_K).
RUNNEL_HD inline void dequant_q5_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    float* y = dst + i * kQK_K;
    for (int g = 0; g < 4; ++g) {
      const uint8_t* q = b[i].qs + 32 * g;
      int sc, m;
      scale_min_k4(2 * g, b[i].scales, sc, m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      scale_min_k4(2 * g + 1, b[i].scales, sc, m);
      const float d2 = d * float(sc), m2 = dmin * float(m);
      const int u1 = 1 << (2 * g), u2 = 2 << (2 * g);
      for (int l = 0; l < 32; ++l) y[64 * g + l] = d1 * float((q[l] & 0x0f) + (b[i].qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) y[64 * g + 32 + l] = d2 * float((q[l] >> 4) + (b[i].qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

// ggml's dequantize_row_q6_K.
RUNNEL_HD inline void dequant_q6_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ6_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = f16_to_f32(b[i].d);
    float* y = dst + i * kQK_K;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b[i].ql + 64 * h;
      const uint8_t* qh = b[i].qh + 32 * h;
      const int8_t* sc = b[i].scales + 8 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[128 * h + l] = d * float(sc[is]) * float(q1);
        y[128 * h + l + 32] = d * float(sc[is + 2]) * float(q2);
        y[128 * h + l + 64] = d * float(sc[is + 4]) * float(q3);
        y[128 * h + l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

// Least-squares fit of x ~ a * q + b over one sub-block, for fixed q.
// Returns false when q is constant (the fit is undetermined).
RUNNEL_HD inline bool fit_affine(const float* x, const int* q, int n, float& a, float& b) {
  double sq = 0, sqq = 0, sx = 0, sqx = 0;
  for (int t = 0; t < n; ++t) {
    sq += q[t];
    sqq += double(q[t]) * q[t];
    sx += x[t];
    sqx += double(q[t]) * x[t];
  }
  const double det = n * sqq - sq * sq;
  if (!(det > 0)) return false;
  a = float((n * sqx - sq * sx) / det);
  b = float((sx - a * sq) / n);
  return true;
}

// Squared error of x ~ a * q + off over n values, q = round((x - off) / a)
// clamped to [lo, hi] (a > 0 or a < 0; a == 0 gives q = 0 everywhere).
// Writes q when given.
RUNNEL_HD inline double affine_sq_error(const float* x, int n, float a, float off, int lo, int hi,
                                        int* q = nullptr) {
  double e = 0;
  for (int t = 0; t < n; ++t) {
    const int v = a != 0 ? round_clamped((x[t] - off) / a, lo, hi) : 0;
    if (q) q[t] = v;
    const double r = double(a) * v + off - x[t];
    e += r * r;
  }
  return e;
}

// One Q4_K (Q5_K) sub-block: the scale a > 0 and offset off <= 0 of
// x ~ a * q + off, q in [0, NMAX] (15; 31), of least squared error found.
// Candidates are the range mapped to NMAX +- 1 steps (21 of them); for each, q is rounded and (a, off)
// refit by least squares (off held at 0 where the fit wants it above 0).
template <int NMAX = 15>
RUNNEL_HD inline void fit_q4_k_sub(const float* xs, float& scale, float& min) {
  float mn = xs[0], mx = xs[0];
  for (int t = 1; t < 32; ++t) {
    mn = std::fmin(mn, xs[t]);
    mx = std::fmax(mx, xs[t]);
  }
  if (!(mn < 0)) mn = 0;
  scale = 0;
  min = -mn;
  if (!(mx > mn) || !std::isfinite(mx - mn)) {
    if (!std::isfinite(min)) min = 0;
    return;
  }
  float best_a = (mx - mn) / NMAX, best_off = mn;
  double best = affine_sq_error(xs, 32, best_a, best_off, 0, NMAX);
  for (int k = -10; k <= 10; ++k) {
    const float a0 = (mx - mn) / (float(NMAX) + 0.1f * float(k));
    int q[32];
    affine_sq_error(xs, 32, a0, mn, 0, NMAX, q);
    float a, off;
    if (!fit_affine(xs, q, 32, a, off) || !(a > 0)) continue;
    if (off > 0) {
      double sqx = 0, sqq = 0;
      for (int t = 0; t < 32; ++t) {
        sqx += double(q[t]) * xs[t];
        sqq += double(q[t]) * q[t];
      }
      if (!(sqq > 0) || !(sqx > 0)) continue;
      a = float(sqx / sqq);
      off = 0;
    }
    const double e = affine_sq_error(xs, 32, a, off, 0, NMAX);
    if (e < best) {
      best = e;
      best_a = a;
      best_off = off;
    }
  }
  scale = std::isfinite(best_a) && best_a > 0 ? best_a : 0;
  min = std::isfinite(best_off) && best_off < 0 ? -best_off : 0;
}

// Q4_K: per sub-block of 32, x ~ scale * q - min with q in [0, 15] and
// min >= 0 (the format's convention: the offset never exceeds 0), fit by
// fit_q4_k_sub; then the 8 scales and 8 minimums are quantized to 6 bits
// against the super-block's f16 d and dmin, each sub-block taking the pair of
// 6-bit codes (rounded, or one step either side) of least squared error with
// q recomputed for it.
template <class Block, int NMAX>
RUNNEL_HD inline void quant_k_affine(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<Block*>(dst);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* x = src + i * kQK_K;
    float scale[8], mins[8];
    for (int j = 0; j < 8; ++j) fit_q4_k_sub<NMAX>(x + 32 * j, scale[j], mins[j]);
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      max_scale = std::fmax(max_scale, scale[j]);
      max_min = std::fmax(max_min, mins[j]);
    }
    b[i].d = f32_to_f16(max_scale / 63);
    if constexpr (NMAX == 31) std::memset(b[i].qh, 0, sizeof b[i].qh);
    b[i].dmin = f32_to_f16(max_min / 63);
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    std::memset(b[i].scales, 0, sizeof b[i].scales);
    uint8_t q[kQK_K];
    for (int j = 0; j < 8; ++j) {
      const float* xs = x + 32 * j;
      const int ls0 = d > 0 ? round_clamped(scale[j] / d, 0, 63) : 0;
      const int lm0 = dmin > 0 ? round_clamped(mins[j] / dmin, 0, 63) : 0;
      int ls = ls0, lm = lm0;
      double best = -1;
      for (int cs = ls0 - 1; cs <= ls0 + 1; ++cs) {
        for (int cm = lm0 - 1; cm <= lm0 + 1; ++cm) {
          if (cs < 0 || cs > 63 || cm < 0 || cm > 63) continue;
          if ((cs != ls0 && !(d > 0)) || (cm != lm0 && !(dmin > 0))) continue;
          const double e = affine_sq_error(xs, 32, d * float(cs), -(dmin * float(cm)), 0, NMAX);
          if (best < 0 || e < best) {
            best = e;
            ls = cs;
            lm = cm;
          }
        }
      }
      if (j < 4) {
        b[i].scales[j] = uint8_t(ls);
        b[i].scales[j + 4] = uint8_t(lm);
      } else {
        b[i].scales[j + 4] = uint8_t((ls & 0x0f) | ((lm & 0x0f) << 4));
        b[i].scales[j - 4] |= uint8_t((ls >> 4) << 6);
        b[i].scales[j] |= uint8_t((lm >> 4) << 6);
      }
      int qs[32];
      affine_sq_error(xs, 32, d * float(ls), -(dmin * float(lm)), 0, NMAX, qs);
      for (int t = 0; t < 32; ++t) q[32 * j + t] = uint8_t(qs[t]);
    }
    for (int g = 0; g < 4; ++g)
      for (int l = 0; l < 32; ++l) {
        const int lo = q[64 * g + l], hi = q[64 * g + 32 + l];
        b[i].qs[32 * g + l] = uint8_t((lo & 0x0f) | ((hi & 0x0f) << 4));
        if constexpr (NMAX == 31)
          b[i].qh[l] = uint8_t(b[i].qh[l] | ((lo >> 4) << (2 * g)) | ((hi >> 4) << (2 * g + 1)));
      }
  }
}

RUNNEL_HD inline void quant_q4_k(const float* src, void* dst, int64_t n) {
  quant_k_affine<BlockQ4_K, 15>(src, dst, n);
}

// Q5_K: as Q4_K with q in [0, 31], each value's fifth bit stored in qh.
RUNNEL_HD inline void quant_q5_k(const float* src, void* dst, int64_t n) {
  quant_k_affine<BlockQ5_K, 31>(src, dst, n);
}

// One Q6_K sub-block of 16: the scale s of x ~ s * q, q in [-32, 31], of
// least squared error found.  Candidates map the value of largest magnitude
// to -32 +- 0.9 steps (19 of them); for each, q is rounded and s refit by
// least squares.
RUNNEL_HD inline float fit_q6_k_sub(const float* xs) {
  float amax = 0, max = 0;
  for (int t = 0; t < 16; ++t) {
    if (amax < std::fabs(xs[t])) {
      amax = std::fabs(xs[t]);
      max = xs[t];
    }
  }
  if (!(amax > 0) || !std::isfinite(max)) return 0;
  float best_s = max / -32;
  double best = affine_sq_error(xs, 16, best_s, 0, -32, 31);
  for (int k = -9; k <= 9; ++k) {
    int q[16];
    affine_sq_error(xs, 16, max / -(32.0f + 0.1f * float(k)), 0, -32, 31, q);
    double sqx = 0, sqq = 0;
    for (int t = 0; t < 16; ++t) {
      sqx += double(q[t]) * xs[t];
      sqq += double(q[t]) * q[t];
    }
    if (!(sqq > 0)) continue;
    const float s = float(sqx / sqq);
    if (!(s != 0) || !std::isfinite(s)) continue;
    const double e = affine_sq_error(xs, 16, s, 0, -32, 31);
    if (e < best) {
      best = e;
      best_s = s;
    }
  }
  return best_s;
}

// Q6_K: per sub-block of 16, x ~ scale * q with q in [-32, 31], fit by
// fit_q6_k_sub; the 16 scales are quantized to int8 against the
// super-block's f16 d = max |scale| / 127, each sub-block taking the code
// (rounded, or one step either side) of least squared error with q
// recomputed for it.
RUNNEL_HD inline void quant_q6_k(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ6_K*>(dst);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* x = src + i * kQK_K;
    float scale[16];
    float amax_scale = 0;
    for (int s = 0; s < 16; ++s) {
      scale[s] = fit_q6_k_sub(x + 16 * s);
      amax_scale = std::fmax(amax_scale, std::fabs(scale[s]));
    }
    b[i].d = f32_to_f16(amax_scale / 127);
    const float d = f16_to_f32(b[i].d);
    uint8_t L[kQK_K];
    for (int s = 0; s < 16; ++s) {
      const float* xs = x + 16 * s;
      const int ls0 = d > 0 ? round_clamped(scale[s] / d, -127, 127) : 0;
      int ls = ls0;
      if (d > 0) {
        double best = -1;
        for (int c = ls0 - 1; c <= ls0 + 1; ++c) {
          if (c < -127 || c > 127) continue;
          const double e = affine_sq_error(xs, 16, d * float(c), 0, -32, 31);
          if (best < 0 || e < best) {
            best = e;
            ls = c;
          }
        }
      }
      b[i].scales[s] = int8_t(ls);
      int qs[16];
      affine_sq_error(xs, 16, d * float(ls), 0, -32, 31, qs);
      for (int t = 0; t < 16; ++t) L[16 * s + t] = uint8_t(qs[t] + 32);
    }
    for (int h = 0; h < 2; ++h) {
      const uint8_t* l0 = L + 128 * h;
      for (int l = 0; l < 32; ++l) {
        b[i].ql[64 * h + l] = uint8_t((l0[l] & 0x0f) | ((l0[l + 64] & 0x0f) << 4));
        b[i].ql[64 * h + 32 + l] = uint8_t((l0[l + 32] & 0x0f) | ((l0[l + 96] & 0x0f) << 4));
        b[i].qh[32 * h + l] = uint8_t((l0[l] >> 4) | ((l0[l + 32] >> 4) << 2) | ((l0[l + 64] >> 4) << 4) |
                                      ((l0[l + 96] >> 4) << 6));
      }
    }
  }
}

}  // namespace runnel::common

#pragma once
// Block layouts of the 32-element quantized types (ggml's Q8_0, Q4_0, Q4_1)
// and their scalar reference conversions.  The layouts and the rounding of the
// quantizers follow ggml's published reference (quantize_row_*_ref and
// dequantize_row_* in ggml-quants.c), so rows written here load in llama.cpp
// and its files dequantize bit-exactly here.
//
//   Q8_0 (34 bytes): f16 d, int8 q[32];                 x[i] = q[i] * d
//   Q4_0 (18 bytes): f16 d, u8 qs[16];                  x[i] = (nib(i) - 8) * d
//   Q4_1 (20 bytes): f16 d, f16 m, u8 qs[16];           x[i] = nib(i) * d + m
// where nib(i) is the low nibble of qs[i] for i < 16, the high nibble of
// qs[i - 16] otherwise.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/half.hpp"

namespace runnel::cpu::quant {

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
static_assert(sizeof(BlockQ8_0) == 34 && alignof(BlockQ8_0) == 2);
static_assert(sizeof(BlockQ4_0) == 18 && alignof(BlockQ4_0) == 2);
static_assert(sizeof(BlockQ4_1) == 20 && alignof(BlockQ4_1) == 2);

// Float to a small integer by truncation toward zero, as ggml's (int8_t) casts
// do for in-range values; clamping first keeps NaN and huge inputs defined.
inline int trunc_clamped(float v, float lo, float hi) {
  if (!(v >= lo)) v = lo;  // also catches NaN
  if (v > hi) v = hi;
  return int(v);
}

inline void dequant_q8_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK; ++j) dst[i * kQK + j] = float(b[i].qs[j]) * d;
  }
}

inline void dequant_q4_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      dst[i * kQK + j] = float(int(b[i].qs[j] & 0x0f) - 8) * d;
      dst[i * kQK + j + kQK / 2] = float(int(b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

inline void dequant_q4_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      dst[i * kQK + j] = float(b[i].qs[j] & 0x0f) * d + m;
      dst[i * kQK + j + kQK / 2] = float(b[i].qs[j] >> 4) * d + m;
    }
  }
}

inline void quant_q8_0(const float* src, void* dst, int64_t n) {
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

inline void quant_q4_0(const float* src, void* dst, int64_t n) {
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

inline void quant_q4_1(const float* src, void* dst, int64_t n) {
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

}  // namespace runnel::cpu::quant

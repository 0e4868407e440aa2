#pragma once
// The CPU kernels' view of the quantized types: the block layouts and scalar
// conversions of kernels/common/blocks.hpp (as runnel::cpu::quant::BlockQ8_0,
// quant::dequant_q8_0, ...) and the scalar reference dot products that the
// SIMD and int8 kernels are tested against.
#include <cstdint>

#include "common/blocks.hpp"
#include "cpu/half.hpp"

namespace runnel::cpu::quant {

using namespace runnel::common;

// ---------------------------------------------------------------------------
// Reference dot products of one weight row with one activation row of nb
// blocks, the integer sums exact and the blocks accumulated in double.

inline double dot_q8_0_q8_0(const void* w, const void* x, int64_t nb) {
  const auto* a = static_cast<const BlockQ8_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(x);
  double s = 0;
  for (int64_t i = 0; i < nb; ++i) {
    int isum = 0;
    for (int j = 0; j < kQK; ++j) isum += int(a[i].qs[j]) * int(y[i].qs[j]);
    s += double(f16_to_f32(a[i].d)) * double(f16_to_f32(y[i].d)) * isum;
  }
  return s;
}

inline double dot_q4_0_q8_0(const void* w, const void* x, int64_t nb) {
  const auto* a = static_cast<const BlockQ4_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(x);
  double s = 0;
  for (int64_t i = 0; i < nb; ++i) {
    int isum = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      isum += (int(a[i].qs[j] & 0x0f) - 8) * int(y[i].qs[j]);
      isum += (int(a[i].qs[j] >> 4) - 8) * int(y[i].qs[j + kQK / 2]);
    }
    s += double(f16_to_f32(a[i].d)) * double(f16_to_f32(y[i].d)) * isum;
  }
  return s;
}

// sum (q d + m) (qx dx) = d dx sum q qx + m s, with s the block's stored d * sum qx.
inline double dot_q4_1_q8_1(const void* w, const void* x, int64_t nb) {
  const auto* a = static_cast<const BlockQ4_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(x);
  double s = 0;
  for (int64_t i = 0; i < nb; ++i) {
    int isum = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      isum += int(a[i].qs[j] & 0x0f) * int(y[i].qs[j]);
      isum += int(a[i].qs[j] >> 4) * int(y[i].qs[j + kQK / 2]);
    }
    s += double(f16_to_f32(a[i].d)) * double(f16_to_f32(y[i].d)) * isum +
         double(f16_to_f32(a[i].m)) * double(f16_to_f32(y[i].s));
  }
  return s;
}

inline double dot_q5_0_q8_0(const void* w, const void* x, int64_t nb) {
  const auto* a = static_cast<const BlockQ5_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(x);
  double s = 0;
  for (int64_t i = 0; i < nb; ++i) {
    int q[kQK];
    q5_values(a[i].qs, a[i].qh, q);
    int isum = 0;
    for (int j = 0; j < kQK; ++j) isum += (q[j] - 16) * int(y[i].qs[j]);
    s += double(f16_to_f32(a[i].d)) * double(f16_to_f32(y[i].d)) * isum;
  }
  return s;
}

// As Q4_1: d dx sum q qx + m s.
inline double dot_q5_1_q8_1(const void* w, const void* x, int64_t nb) {
  const auto* a = static_cast<const BlockQ5_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(x);
  double s = 0;
  for (int64_t i = 0; i < nb; ++i) {
    int q[kQK];
    q5_values(a[i].qs, a[i].qh, q);
    int isum = 0;
    for (int j = 0; j < kQK; ++j) isum += q[j] * int(y[i].qs[j]);
    s += double(f16_to_f32(a[i].d)) * double(f16_to_f32(y[i].d)) * isum +
         double(f16_to_f32(a[i].m)) * double(f16_to_f32(y[i].s));
  }
  return s;
}

template <class Block, bool Q5>
inline double dot_k_affine_q8_k(const void* w, const void* x, int64_t nb) {
  const auto* a = static_cast<const Block*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(x);
  double s = 0;
  for (int64_t i = 0; i < nb; ++i) {
    int64_t qsum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      scale_min_k4(j, a[i].scales, sc, m);
      const int g = j / 2, hi = j % 2;
      int isum = 0, xsum = 0;
      for (int l = 0; l < 32; ++l) {
        const uint8_t byte = a[i].qs[32 * g + l];
        int q = hi ? byte >> 4 : byte & 0x0f;
        if constexpr (Q5) q += ((a[i].qh[l] >> j) & 1) * 16;
        const int qx = y[i].qs[32 * j + l];
        isum += q * qx;
        xsum += qx;
      }
      qsum += int64_t(sc) * isum;
      msum += int64_t(m) * xsum;
    }
    s += double(y[i].d) * (double(f16_to_f32(a[i].d)) * double(qsum) - double(f16_to_f32(a[i].dmin)) * double(msum));
  }
  return s;
}

inline double dot_q4_k_q8_k(const void* w, const void* x, int64_t nb) {
  return dot_k_affine_q8_k<BlockQ4_K, false>(w, x, nb);
}

// Q5_K against Q8_K: as Q4_K with the fifth bit of each value from qh.
inline double dot_q5_k_q8_k(const void* w, const void* x, int64_t nb) {
  return dot_k_affine_q8_k<BlockQ5_K, true>(w, x, nb);
}

inline double dot_q6_k_q8_k(const void* w, const void* x, int64_t nb) {
  const auto* a = static_cast<const BlockQ6_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(x);
  double s = 0;
  for (int64_t i = 0; i < nb; ++i) {
    int64_t qsum = 0;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = a[i].ql + 64 * h;
      const uint8_t* qh = a[i].qh + 32 * h;
      const int8_t* qx = y[i].qs + 128 * h;
      int sub[8] = {};  // the 8 sub-blocks of 16 of this half
      for (int l = 0; l < 32; ++l) {
        const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        sub[l / 16] += q1 * qx[l];
        sub[2 + l / 16] += q2 * qx[l + 32];
        sub[4 + l / 16] += q3 * qx[l + 64];
        sub[6 + l / 16] += q4 * qx[l + 96];
      }
      for (int t = 0; t < 8; ++t) qsum += int64_t(a[i].scales[8 * h + t]) * sub[t];
    }
    s += double(f16_to_f32(a[i].d)) * double(y[i].d) * double(qsum);
  }
  return s;
}

}  // namespace runnel::cpu::quant

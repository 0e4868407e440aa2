#pragma once
// SIMD bodies for the quantized types, shared by convert.cpp (row
// conversions) and matmul.cpp (integer dot products).  Compiled only in the
// AVX2 and AVX-512 compilations; both use 256-bit integer vectors, and the
// AVX-512 one adds VNNI's fused dot instructions (vpdpbusd, vpdpwssd on ymm,
// which AVX512_VNNI + AVX512VL provide).
//
// The conversions do the same float operations in the same order as the
// scalar references in quant.hpp, so they agree bit for bit.
#include <cstring>

#include "cpu/quant.hpp"
#include "cpu/simd.hpp"

#if defined(RUNNEL_ISA_AVX2) || defined(RUNNEL_ISA_AVX512)

namespace runnel::cpu::RUNNEL_ISA_NS::qsimd {

RUNNEL_INLINE __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
RUNNEL_INLINE __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
// One f16 scale through F16C (exact, as the scalar conversion).
RUNNEL_INLINE float h2f(uint16_t h) { return _cvtsh_ss(h); }

// sum over groups of 4 of u8 * s8, added to acc (int32 lanes).  With AVX2 the
// pairs go through maddubs, which saturates at int16: callers keep
// |u| * |s| * 2 below 32768 (u <= 128 and |s| <= 127 is enough).
RUNNEL_INLINE __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
#if defined(RUNNEL_ISA_AVX512)
  return _mm256_dpbusd_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}
// acc + pairwise sums of int16 a * b.
RUNNEL_INLINE __m256i dot_s16(__m256i acc, __m256i a, __m256i b) {
#if defined(RUNNEL_ISA_AVX512)
  return _mm256_dpwssd_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

RUNNEL_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
RUNNEL_INLINE int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}
RUNNEL_INLINE float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---------------------------------------------------------------------------
// Activation quantizers

// max(acc, |x|), ignoring NaN in x (as fmax does).
RUNNEL_INLINE __m256 amax_step(__m256 acc, __m256 x) {
  return _mm256_max_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), acc);  // NaN -> acc
}

// clamp(round(x * id), -127, 127) as int32; NaN gives -127 like the scalar
// references.  Weights round half away from zero, as roundf (ggml's reference
// quantizers); activations round half to even (ggml's SIMD quantizers).
template <bool Even = false>
RUNNEL_INLINE __m256i quant_lanes(__m256 x, __m256 id) {
  __m256 v = _mm256_max_ps(_mm256_mul_ps(x, id), _mm256_set1_ps(-127.0f));  // NaN -> -127
  v = _mm256_min_ps(v, _mm256_set1_ps(127.0f));
  if constexpr (Even) return _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
  const __m256 up = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ),
                                  _mm256_or_ps(_mm256_and_ps(v, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(1.0f)));
  return _mm256_cvttps_epi32(_mm256_add_ps(t, up));
}

// 32 int32 in four vectors to 32 int8 in order.
RUNNEL_INLINE __m256i pack_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// One block of 32: the scale and the quantized lanes; `sum` gets sum(q).
// Weights: q = round(x / d), as ggml's reference quantizer.  Activations:
// q = round_even(x * (127 / amax)), as ggml's SIMD activation quantizers.
template <bool Act>
RUNNEL_INLINE float quant_block32(const float* x, int8_t* q, int* sum) {
  __m256 v[4];
  __m256 m = _mm256_setzero_ps();
  for (int t = 0; t < 4; ++t) {
    v[t] = _mm256_loadu_ps(x + 8 * t);
    m = amax_step(m, v[t]);
  }
  const float amax = hmax(m), d = amax / 127;
  const __m256 id = _mm256_set1_ps(Act ? (amax != 0 ? 127.0f / amax : 0.0f) : (d != 0 ? 1.0f / d : 0.0f));
  __m256i i[4];
  for (int t = 0; t < 4; ++t) i[t] = quant_lanes<Act>(v[t], id);
  if (sum)
    *sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), pack_i8(i[0], i[1], i[2], i[3]));
  return d;
}

inline void quant_q8_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<quant::BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / 32; ++i) b[i].d = f32_to_f16(quant_block32<false>(src + 32 * i, b[i].qs, nullptr));
}

inline void quant_act_q8_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<quant::BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / 32; ++i) b[i].d = f32_to_f16(quant_block32<true>(src + 32 * i, b[i].qs, nullptr));
}

inline void quant_q8_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<quant::BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / 32; ++i) {
    int sum = 0;
    const float d = quant_block32<true>(src + 32 * i, b[i].qs, &sum);
    b[i].d = f32_to_f16(d);
    b[i].s = f32_to_f16(float(sum) * d);
  }
}

inline void quant_q8_k(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<quant::BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / 256; ++i) {
    const float* x = src + 256 * i;
    __m256 m = _mm256_setzero_ps();
    for (int t = 0; t < 32; ++t) m = amax_step(m, _mm256_loadu_ps(x + 8 * t));
    const float amax = hmax(m), d = amax / 127;
    const __m256 id = _mm256_set1_ps(amax != 0 ? 127.0f / amax : 0.0f);
    b[i].d = d;
    for (int c = 0; c < 8; ++c) {
      __m256i v[4];
      for (int t = 0; t < 4; ++t) v[t] = quant_lanes<true>(_mm256_loadu_ps(x + 32 * c + 8 * t), id);
      b[i].bsums[2 * c] = int16_t(hsum_i32(_mm256_add_epi32(v[0], v[1])));
      b[i].bsums[2 * c + 1] = int16_t(hsum_i32(_mm256_add_epi32(v[2], v[3])));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs + 32 * c), pack_i8(v[0], v[1], v[2], v[3]));
    }
  }
}

// ---------------------------------------------------------------------------
// Dequantization

// 32 int8 lanes to 32 floats times d.
RUNNEL_INLINE void store_scaled(__m256i q, float d, float* y) {
  const __m256 dv = _mm256_set1_ps(d);
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), dv));
  _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), dv));
  _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), dv));
  _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), dv));
}
// 32 u8 lanes to 32 floats, y = q * d - m (Q4_K: multiply, then subtract).
RUNNEL_INLINE void store_scaled_sub(__m256i q, float d, float m, float* y) {
  const __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int t = 0; t < 4; ++t)
    _mm256_storeu_ps(y + 8 * t,
                     _mm256_sub_ps(_mm256_mul_ps(dv, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[t]))), mv));
}

// Q4_0 / Q4_1 nibbles: elements 0..15 in the low 16 lanes, 16..31 above.
RUNNEL_INLINE __m256i nibbles(const uint8_t* qs) {
  const __m128i raw = load16(qs), low = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), low), _mm_and_si128(raw, low));
}

// Q5_0 / Q5_1: the nibbles with bit i of qh (a little-endian uint32) as
// bit 4 of lane i, giving the 32 unsigned 5-bit values in element order.
RUNNEL_INLINE __m256i q5_lanes(const uint8_t* qs, const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
#if defined(RUNNEL_ISA_AVX512)
  const __m256i hi = _mm256_maskz_mov_epi8(__mmask32(h), _mm256_set1_epi8(0x10));
#else
  // Lane i takes byte i / 8 of h and tests bit i % 8 of it.
  const __m256i bytes = _mm256_shuffle_epi8(
      _mm256_set1_epi32(int(h)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  const __m256i hi =
      _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit), _mm256_set1_epi8(0x10));
#endif
  return _mm256_or_si256(nibbles(qs), hi);
}

// 32 u8 lanes to 32 floats, y = q * d + m (Q4_1, Q5_1: multiply, then add).
RUNNEL_INLINE void store_scaled_add(__m256i q, float d, float m, float* y) {
  const __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int t = 0; t < 4; ++t)
    _mm256_storeu_ps(y + 8 * t,
                     _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[t])), dv), mv));
}

inline void dequant_q8_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const quant::BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / 32; ++i) store_scaled(load32(b[i].qs), h2f(b[i].d), dst + 32 * i);
}

inline void dequant_q4_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const quant::BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / 32; ++i)
    store_scaled(_mm256_sub_epi8(nibbles(b[i].qs), _mm256_set1_epi8(8)), h2f(b[i].d), dst + 32 * i);
}

inline void dequant_q4_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const quant::BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / 32; ++i)
    store_scaled_add(nibbles(b[i].qs), h2f(b[i].d), h2f(b[i].m), dst + 32 * i);
}

inline void dequant_q5_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const quant::BlockQ5_0*>(src);
  for (int64_t i = 0; i < n / 32; ++i)
    store_scaled(_mm256_sub_epi8(q5_lanes(b[i].qs, b[i].qh), _mm256_set1_epi8(16)), h2f(b[i].d), dst + 32 * i);
}

inline void dequant_q5_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const quant::BlockQ5_1*>(src);
  for (int64_t i = 0; i < n / 32; ++i)
    store_scaled_add(q5_lanes(b[i].qs, b[i].qh), h2f(b[i].d), h2f(b[i].m), dst + 32 * i);
}

inline void dequant_q4_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const quant::BlockQ4_K*>(src);
  for (int64_t i = 0; i < n / 256; ++i) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    float* y = dst + 256 * i;
    for (int g = 0; g < 4; ++g) {
      const __m256i raw = load32(b[i].qs + 32 * g), low = _mm256_set1_epi8(0x0f);
      int sc, m;
      quant::scale_min_k4(2 * g, b[i].scales, sc, m);
      store_scaled_sub(_mm256_and_si256(raw, low), d * float(sc), dmin * float(m), y + 64 * g);
      quant::scale_min_k4(2 * g + 1, b[i].scales, sc, m);
      store_scaled_sub(_mm256_and_si256(_mm256_srli_epi16(raw, 4), low), d * float(sc), dmin * float(m),
                       y + 64 * g + 32);
    }
  }
}

// Q6_K: the 6-bit values (0..63) of elements 128 h + 32 t + [0, 32).
RUNNEL_INLINE __m256i q6_lanes(const quant::BlockQ6_K& b, int h, int t) {
  const __m256i ql = load32(b.ql + 64 * h + 32 * (t & 1)), qh = load32(b.qh + 32 * h);
  const __m256i low = _mm256_set1_epi8(0x0f), top = _mm256_set1_epi8(0x30);
  const __m256i lo4 = t < 2 ? _mm256_and_si256(ql, low) : _mm256_and_si256(_mm256_srli_epi16(ql, 4), low);
  __m256i hi2;
  switch (t) {
    case 0: hi2 = _mm256_slli_epi16(qh, 4); break;
    case 1: hi2 = _mm256_slli_epi16(qh, 2); break;
    case 2: hi2 = qh; break;
    default: hi2 = _mm256_srli_epi16(qh, 2); break;
  }
  return _mm256_or_si256(lo4, _mm256_and_si256(hi2, top));
}

inline void dequant_q6_k(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const quant::BlockQ6_K*>(src);
  for (int64_t i = 0; i < n / 256; ++i) {
    const float d = h2f(b[i].d);
    for (int h = 0; h < 2; ++h) {
      for (int t = 0; t < 4; ++t) {
        const __m256i q = _mm256_sub_epi8(q6_lanes(b[i], h, t), _mm256_set1_epi8(32));
        float* y = dst + 256 * i + 128 * h + 32 * t;
        const int s = 8 * h + 2 * t;  // sub-blocks of 16: s, s + 1
        const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
        const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
        for (int p = 0; p < 4; ++p) {
          // (d * sc) * q, the reference's order
          const __m256 ds = _mm256_set1_ps(d * float(b[i].scales[s + p / 2]));
          _mm256_storeu_ps(y + 8 * p, _mm256_mul_ps(ds, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[p]))));
        }
      }
    }
  }
}

}  // namespace runnel::cpu::RUNNEL_ISA_NS::qsimd

#endif

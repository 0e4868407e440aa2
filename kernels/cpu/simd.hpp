#pragma once
// The vector layer: one small float-vector type per ISA, so each kernel's SIMD
// body is written once and compiled for AVX2 (8 lanes) and AVX-512 (16 lanes).
// In the scalar compilation (RUNNEL_ISA_SCALAR) kernels use their reference
// loops instead and this header provides no vector type.
#include <cmath>
#include <cstdint>

#include "cpu/half.hpp"

#if defined(RUNNEL_ISA_AVX2) || defined(RUNNEL_ISA_AVX512)
#include <immintrin.h>
#endif

#define RUNNEL_INLINE inline __attribute__((always_inline))

namespace runnel::cpu::RUNNEL_ISA_NS {

#if defined(RUNNEL_ISA_AVX512)

struct VF {
  static constexpr int N = 16;
  __m512 v;
  RUNNEL_INLINE static VF zero() { return {_mm512_setzero_ps()}; }
  RUNNEL_INLINE static VF set1(float f) { return {_mm512_set1_ps(f)}; }
  RUNNEL_INLINE static VF load(const float* p) { return {_mm512_loadu_ps(p)}; }
  // {b, b + 1, ..., b + N - 1}
  RUNNEL_INLINE static VF iota(float b) {
    return {_mm512_add_ps(_mm512_set1_ps(b), _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0))};
  }
  RUNNEL_INLINE static VF load_f16(const uint16_t* p) {
    return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
  }
  RUNNEL_INLINE static VF load_bf16(const uint16_t* p) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(w, 16))};
  }
  RUNNEL_INLINE void store(float* p) const { _mm512_storeu_ps(p, v); }
  RUNNEL_INLINE void store_f16(uint16_t* p) const {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  RUNNEL_INLINE float reduce_add() const { return _mm512_reduce_add_ps(v); }
  RUNNEL_INLINE float reduce_max() const { return _mm512_reduce_max_ps(v); }
};
RUNNEL_INLINE VF operator+(VF a, VF b) { return {_mm512_add_ps(a.v, b.v)}; }
RUNNEL_INLINE VF operator-(VF a, VF b) { return {_mm512_sub_ps(a.v, b.v)}; }
RUNNEL_INLINE VF operator*(VF a, VF b) { return {_mm512_mul_ps(a.v, b.v)}; }
RUNNEL_INLINE VF operator/(VF a, VF b) { return {_mm512_div_ps(a.v, b.v)}; }
RUNNEL_INLINE VF fma(VF a, VF b, VF c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
RUNNEL_INLINE VF max(VF a, VF b) { return {_mm512_max_ps(a.v, b.v)}; }
RUNNEL_INLINE VF min(VF a, VF b) { return {_mm512_min_ps(a.v, b.v)}; }
RUNNEL_INLINE VF abs(VF a) { return {_mm512_abs_ps(a.v)}; }
RUNNEL_INLINE VF round_nearest(VF a) {
  return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
// |a| with the sign of b
RUNNEL_INLINE VF copysign(VF a, VF b) {
  const __m512 m = _mm512_set1_ps(-0.0f);
  return {_mm512_or_ps(_mm512_andnot_ps(m, a.v), _mm512_and_ps(m, b.v))};
}
// 2^n for integral-valued n in [-127, 127]
RUNNEL_INLINE VF pow2i(VF n) {
  __m512i i = _mm512_cvtps_epi32(n.v);
  return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(i, _mm512_set1_epi32(127)), 23))};
}

#elif defined(RUNNEL_ISA_AVX2)

struct VF {
  static constexpr int N = 8;
  __m256 v;
  RUNNEL_INLINE static VF zero() { return {_mm256_setzero_ps()}; }
  RUNNEL_INLINE static VF set1(float f) { return {_mm256_set1_ps(f)}; }
  RUNNEL_INLINE static VF load(const float* p) { return {_mm256_loadu_ps(p)}; }
  RUNNEL_INLINE static VF iota(float b) {
    return {_mm256_add_ps(_mm256_set1_ps(b), _mm256_set_ps(7, 6, 5, 4, 3, 2, 1, 0))};
  }
  RUNNEL_INLINE static VF load_f16(const uint16_t* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
  }
  RUNNEL_INLINE static VF load_bf16(const uint16_t* p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
  }
  RUNNEL_INLINE void store(float* p) const { _mm256_storeu_ps(p, v); }
  RUNNEL_INLINE void store_f16(uint16_t* p) const {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  RUNNEL_INLINE float reduce_add() const {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  RUNNEL_INLINE float reduce_max() const {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};
RUNNEL_INLINE VF operator+(VF a, VF b) { return {_mm256_add_ps(a.v, b.v)}; }
RUNNEL_INLINE VF operator-(VF a, VF b) { return {_mm256_sub_ps(a.v, b.v)}; }
RUNNEL_INLINE VF operator*(VF a, VF b) { return {_mm256_mul_ps(a.v, b.v)}; }
RUNNEL_INLINE VF operator/(VF a, VF b) { return {_mm256_div_ps(a.v, b.v)}; }
RUNNEL_INLINE VF fma(VF a, VF b, VF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
RUNNEL_INLINE VF max(VF a, VF b) { return {_mm256_max_ps(a.v, b.v)}; }
RUNNEL_INLINE VF min(VF a, VF b) { return {_mm256_min_ps(a.v, b.v)}; }
RUNNEL_INLINE VF abs(VF a) {
  return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)};
}
RUNNEL_INLINE VF round_nearest(VF a) {
  return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
}
RUNNEL_INLINE VF copysign(VF a, VF b) {
  const __m256 m = _mm256_set1_ps(-0.0f);
  return {_mm256_or_ps(_mm256_andnot_ps(m, a.v), _mm256_and_ps(m, b.v))};
}
RUNNEL_INLINE VF pow2i(VF n) {
  __m256i i = _mm256_cvtps_epi32(n.v);
  return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(i, _mm256_set1_epi32(127)), 23))};
}

#endif

#if defined(RUNNEL_ISA_AVX2) || defined(RUNNEL_ISA_AVX512)
RUNNEL_INLINE void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }

// exp(x), relative error ~2e-7 over the float range; x below -87.3 gives 0.
RUNNEL_INLINE VF exp(VF x) {
  x = min(max(x, VF::set1(-87.33654f)), VF::set1(88.37626f));
  const VF n = round_nearest(x * VF::set1(1.44269504088896341f));
  // r = x - n ln2, in two parts for accuracy
  VF r = fma(n, VF::set1(-0.693145751953125f), x);
  r = fma(n, VF::set1(-1.428606765330187045e-06f), r);
  VF p = VF::set1(1.9875691500e-4f);
  p = fma(p, r, VF::set1(1.3981999507e-3f));
  p = fma(p, r, VF::set1(8.3334519073e-3f));
  p = fma(p, r, VF::set1(4.1665795894e-2f));
  p = fma(p, r, VF::set1(1.6666665459e-1f));
  p = fma(p, r, VF::set1(5.0000001201e-1f));
  p = fma(p, r * r, r + VF::set1(1.0f));
  // split the scale so n = 128 (x near 88.4) does not overflow pow2i
  const VF half = VF::set1(0.5f);
  const VF n1 = round_nearest(n * half);
  return p * pow2i(n1) * pow2i(n - n1);
}
// exp(x) in the form of ggml's vector expf, so that SiLU and the f16
// attention softmax agree with llama.cpp bit for bit: n = round(x / ln2) by the
// 1.5 * 2^23 shift, b = x - n ln2 with ln2 in two parts, a degree-5
// polynomial in b as two FMA chains in b and b^2, then scaled by 2^n
// (|n| > 192 gives 0 or infinity).  A few ulp from exp.
RUNNEL_INLINE VF exp_ggml(VF x) {
  const VF shift = VF::set1(0x1.8p23f);
  const VF n = fma(x, VF::set1(0x1.715476p+0f), shift) - shift;
  const VF b = fma(n, VF::set1(-0x1.7f7d1cp-20f), fma(n, VF::set1(-0x1.62e4p-1f), x));
  const VF u = b * b;
  const VF hi = fma(fma(VF::set1(0x1.0e4020p-7f), b, VF::set1(0x1.573e2ep-5f)), u,
                    fma(VF::set1(0x1.555e66p-3f), b, VF::set1(0x1.fffdb6p-2f)));
  const VF j = fma(hi, u, fma(VF::set1(0x1.ffffecp-1f), b, VF::set1(1.0f)));
#if defined(RUNNEL_ISA_AVX512)
  const __m512 r = _mm512_scalef_ps(j.v, n.v);
  const __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(n.v), _mm512_set1_ps(192.0f), _CMP_GT_OQ);
  if (!big) return {r};
  const __m512 alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n.v, _mm512_setzero_ps(), _CMP_LE_OQ),
                                          _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
  return {_mm512_mask_blend_ps(big, r, alt)};
#else
  // 2^n in two factors, so that |n| up to 192 neither overflows nor flushes
  const VF nc = min(max(n, VF::set1(-192.0f)), VF::set1(192.0f));
  const VF n1 = round_nearest(nc * VF::set1(0.5f));
  const VF r = j * pow2i(n1) * pow2i(nc - n1);
  const __m256 big = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), n.v), _mm256_set1_ps(192.0f), _CMP_GT_OQ);
  const __m256 alt = _mm256_and_ps(_mm256_cmp_ps(n.v, _mm256_setzero_ps(), _CMP_GT_OQ), _mm256_set1_ps(INFINITY));
  return {_mm256_blendv_ps(r.v, alt, big)};
#endif
}
// erf(x) with absolute error below 2e-7 (Abramowitz & Stegun 7.1.26 form,
// refined coefficients).
RUNNEL_INLINE VF erf(VF x) {
  const VF ax = abs(x);
  const VF t = VF::set1(1.0f) / fma(VF::set1(0.3275911f), ax, VF::set1(1.0f));
  VF p = VF::set1(1.061405429f);
  p = fma(p, t, VF::set1(-1.453152027f));
  p = fma(p, t, VF::set1(1.421413741f));
  p = fma(p, t, VF::set1(-0.284496736f));
  p = fma(p, t, VF::set1(0.254829592f));
  p = p * t;
  const VF y = VF::set1(1.0f) - p * exp(VF::zero() - ax * ax);
  return copysign(y, x);
}
RUNNEL_INLINE VF tanh(VF x) {
  // tanh(x) = 1 - 2 / (exp(2x) + 1), clamped so exp stays finite
  const VF c = min(max(x, VF::set1(-9.0f)), VF::set1(9.0f));
  const VF e = exp(c + c);
  return VF::set1(1.0f) - VF::set1(2.0f) / (e + VF::set1(1.0f));
}
#endif

}  // namespace runnel::cpu::RUNNEL_ISA_NS

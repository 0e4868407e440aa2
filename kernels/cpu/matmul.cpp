// Matrix-vector and small-batch products: y[i, j] = x[i, :] . w[j, :] + b[j].
// This is the decode path and is memory-bound: every weight byte is read once
// per call, so the kernel streams RB weight rows at a time and applies each
// loaded weight vector to up to XB rows of x.
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "cpu/kernels.hpp"
#include "cpu/quant.hpp"
#include "cpu/quant_simd.hpp"
#include "cpu/simd.hpp"

namespace runnel::cpu::RUNNEL_ISA_NS {
namespace {

struct F32W {
  using T = float;
  static float scalar(const float* p, int64_t i) { return p[i]; }
#if !defined(RUNNEL_ISA_SCALAR)
  RUNNEL_INLINE static VF load(const float* p) { return VF::load(p); }
#endif
};
struct F16W {
  using T = uint16_t;
  static float scalar(const uint16_t* p, int64_t i) { return f16_to_f32(p[i]); }
#if !defined(RUNNEL_ISA_SCALAR)
  RUNNEL_INLINE static VF load(const uint16_t* p) { return VF::load_f16(p); }
#endif
};
struct BF16W {
  using T = uint16_t;
  static float scalar(const uint16_t* p, int64_t i) { return bf16_to_f32(p[i]); }
#if !defined(RUNNEL_ISA_SCALAR)
  RUNNEL_INLINE static VF load(const uint16_t* p) { return VF::load_bf16(p); }
#endif
};

#if defined(RUNNEL_ISA_SCALAR)

// Reference for the quantized weights: each block dequantized by the
// reference conversion, dot products accumulated in double.
template <void (*Dequant)(const void*, float*, int64_t), int64_t BlockBytes, int64_t QK = quant::kQK>
void matmul_quant(const MatmulArgs& a, int64_t n0, int64_t n1) {
  float wb[QK];
  for (int64_t j = n0; j < n1; ++j) {
    const char* w = static_cast<const char*>(a.w) + j * a.ldw;
    for (int64_t i = 0; i < a.m; ++i) {
      const float* x = a.x + i * a.ldx;
      double s = 0;
      for (int64_t b = 0; b < a.k / QK; ++b) {
        Dequant(w + b * BlockBytes, wb, QK);
        for (int64_t t = 0; t < QK; ++t) s += double(wb[t]) * double(x[b * QK + t]);
      }
      if (a.bias) s += a.bias[j];
      a.y[i * a.ldy + j] = float(s);
    }
  }
}

// Reference for the int8-activation products: exact integer sums per block,
// the blocks accumulated in double (quant::dot_*).
template <double (*Dot)(const void*, const void*, int64_t), int64_t QK>
void qmatmul_ref(const QMatmulArgs& a, int64_t n0, int64_t n1) {
  for (int64_t j = n0; j < n1; ++j) {
    const char* w = static_cast<const char*>(a.w) + j * a.ldw;
    for (int64_t i = 0; i < a.m; ++i) {
      double s = Dot(w, static_cast<const char*>(a.xq) + i * a.ldxq, a.k / QK);
      if (a.bias) s += a.bias[j];
      a.y[i * a.ldy + j] = float(s);
    }
  }
}

// Reference: plain dot products accumulated in double.
template <class W>
void matmul_kernel(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using T = typename W::T;
  for (int64_t j = n0; j < n1; ++j) {
    const T* w = reinterpret_cast<const T*>(static_cast<const char*>(a.w) + j * a.ldw);
    for (int64_t i = 0; i < a.m; ++i) {
      const float* x = a.x + i * a.ldx;
      double s = 0;
      for (int64_t k = 0; k < a.k; ++k) s += double(W::scalar(w, k)) * double(x[k]);
      if (a.bias) s += a.bias[j];
      a.y[i * a.ldy + j] = float(s);
    }
  }
}

#else

// The weights are read once, RB rows at a time, and those rows lie next to
// each other.  Each step of a tile prefetches its share of the rows
// kAheadGroups tiles further on (the same fraction of them as the step is of a
// row), so one linear prefetch stream runs ahead of the loads whatever the
// row length: short rows (Q4_0 rows of 2048 are 1152 bytes) included.
constexpr int64_t kAheadGroups = 2;
constexpr int64_t kRowPrefetchBytes = 1024;
RUNNEL_INLINE void prefetch_ahead(const void* row0, int64_t ldw, int rb, int64_t row_off, int64_t step_bytes) {
  const char* p = static_cast<const char*>(row0) + kAheadGroups * rb * ldw + rb * row_off;
  for (int64_t o = 0; o < rb * step_bytes; o += 64) prefetch(p + o);
}

// RB weight rows times XB rows of x, with RB * XB vector accumulators.
template <class W, int RB, int XB>
RUNNEL_INLINE void tile(const MatmulArgs& a, int64_t j, int64_t i0) {
  using T = typename W::T;
  const T* w[RB];
  for (int r = 0; r < RB; ++r)
    w[r] = reinterpret_cast<const T*>(static_cast<const char*>(a.w) + (j + r) * a.ldw);
  const float* x[XB];
  for (int c = 0; c < XB; ++c) x[c] = a.x + (i0 + c) * a.ldx;

  VF acc[RB][XB];
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < XB; ++c) acc[r][c] = VF::zero();

  const int64_t kv = a.k - a.k % VF::N;
  for (int64_t k = 0; k < kv; k += VF::N) {
    VF wv[RB];
    for (int r = 0; r < RB; ++r) {
      // f32/f16 rows are long enough for one stream each, well ahead.
      prefetch(reinterpret_cast<const char*>(w[r] + k) + kRowPrefetchBytes);
      wv[r] = W::load(w[r] + k);
    }
    for (int c = 0; c < XB; ++c) {
      const VF xv = VF::load(x[c] + k);
      for (int r = 0; r < RB; ++r) acc[r][c] = fma(wv[r], xv, acc[r][c]);
    }
  }
  for (int r = 0; r < RB; ++r) {
    for (int c = 0; c < XB; ++c) {
      float s = acc[r][c].reduce_add();
      for (int64_t k = kv; k < a.k; ++k) s += W::scalar(w[r], k) * x[c][k];
      if (a.bias) s += a.bias[j + r];
      a.y[(i0 + c) * a.ldy + j + r] = s;
    }
  }
}

template <class W, int RB>
RUNNEL_INLINE void rows(const MatmulArgs& a, int64_t j) {
  int64_t i = 0;
  for (; i + 4 <= a.m; i += 4) tile<W, RB, 4>(a, j, i);
  switch (a.m - i) {
    case 3: tile<W, RB, 3>(a, j, i); break;
    case 2: tile<W, RB, 2>(a, j, i); break;
    case 1: tile<W, RB, 1>(a, j, i); break;
    default: break;
  }
}

template <class W>
void matmul_kernel(const MatmulArgs& a, int64_t n0, int64_t n1) {
  int64_t j = n0;
  for (; j + 4 <= n1; j += 4) rows<W, 4>(a, j);
  for (; j < n1; ++j) rows<W, 1>(a, j);
}

// Quantized weights against f32 activations.  Each block of 32 is widened in
// registers to its integer values (offset applied) as kB float vectors, dotted
// with x, and the block sum scaled by d (plus m * sum(x) for Q4_1, Q5_1).

// 16 bytes to 16 floats, signed or unsigned.
#if defined(RUNNEL_ISA_AVX512)
constexpr int kV = 1;
RUNNEL_INLINE void widen_i8(__m128i b, VF* out) { out[0] = {_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b))}; }
RUNNEL_INLINE void widen_u8(__m128i b, VF* out) { out[0] = {_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b))}; }
#else
constexpr int kV = 2;
RUNNEL_INLINE void widen_i8(__m128i b, VF* out) {
  out[0] = {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b))};
  out[1] = {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)))};
}
RUNNEL_INLINE void widen_u8(__m128i b, VF* out) {
  out[0] = {_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b))};
  out[1] = {_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)))};
}
#endif
constexpr int kB = 2 * kV;  // vectors per block of 32

RUNNEL_INLINE __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
// One f16 scale through F16C (exact, as the scalar conversion).
RUNNEL_INLINE float h2f(uint16_t h) { return _cvtsh_ss(h); }

struct Q8_0W {
  static constexpr int64_t kBytes = sizeof(quant::BlockQ8_0);
  static constexpr bool kMin = false;
  RUNNEL_INLINE static void decode(const char* p, VF* q, float& d, float&) {
    const auto* b = reinterpret_cast<const quant::BlockQ8_0*>(p);
    d = h2f(b->d);
    widen_i8(load16(b->qs), q);
    widen_i8(load16(b->qs + 16), q + kV);
  }
};
struct Q4_0W {
  static constexpr int64_t kBytes = sizeof(quant::BlockQ4_0);
  static constexpr bool kMin = false;
  RUNNEL_INLINE static void decode(const char* p, VF* q, float& d, float&) {
    const auto* b = reinterpret_cast<const quant::BlockQ4_0*>(p);
    d = h2f(b->d);
    const __m128i raw = load16(b->qs), low = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    widen_i8(_mm_sub_epi8(_mm_and_si128(raw, low), eight), q);
    widen_i8(_mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), low), eight), q + kV);
  }
};
struct Q4_1W {
  static constexpr int64_t kBytes = sizeof(quant::BlockQ4_1);
  static constexpr bool kMin = true;
  RUNNEL_INLINE static void decode(const char* p, VF* q, float& d, float& m) {
    const auto* b = reinterpret_cast<const quant::BlockQ4_1*>(p);
    d = h2f(b->d);
    m = h2f(b->m);
    const __m128i raw = load16(b->qs), low = _mm_set1_epi8(0x0f);
    widen_u8(_mm_and_si128(raw, low), q);
    widen_u8(_mm_and_si128(_mm_srli_epi16(raw, 4), low), q + kV);
  }
};

struct Q5_0W {
  static constexpr int64_t kBytes = sizeof(quant::BlockQ5_0);
  static constexpr bool kMin = false;
  RUNNEL_INLINE static void decode(const char* p, VF* q, float& d, float&) {
    const auto* b = reinterpret_cast<const quant::BlockQ5_0*>(p);
    d = h2f(b->d);
    const __m256i v = _mm256_sub_epi8(qsimd::q5_lanes(b->qs, b->qh), _mm256_set1_epi8(16));
    widen_i8(_mm256_castsi256_si128(v), q);
    widen_i8(_mm256_extracti128_si256(v, 1), q + kV);
  }
};
struct Q5_1W {
  static constexpr int64_t kBytes = sizeof(quant::BlockQ5_1);
  static constexpr bool kMin = true;
  RUNNEL_INLINE static void decode(const char* p, VF* q, float& d, float& m) {
    const auto* b = reinterpret_cast<const quant::BlockQ5_1*>(p);
    d = h2f(b->d);
    m = h2f(b->m);
    const __m256i v = qsimd::q5_lanes(b->qs, b->qh);
    widen_u8(_mm256_castsi256_si128(v), q);
    widen_u8(_mm256_extracti128_si256(v, 1), q + kV);
  }
};

template <class W, int RB, int XB>
RUNNEL_INLINE void qtile(const MatmulArgs& a, int64_t j, int64_t i0) {
  constexpr int64_t QK = quant::kQK;
  const char* w[RB];
  for (int r = 0; r < RB; ++r) w[r] = static_cast<const char*>(a.w) + (j + r) * a.ldw;
  const float* x[XB];
  for (int c = 0; c < XB; ++c) x[c] = a.x + (i0 + c) * a.ldx;
  VF acc[RB][XB];
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < XB; ++c) acc[r][c] = VF::zero();
  const int64_t nb = a.k / QK;
  for (int64_t b = 0; b < nb; ++b) {
    VF q[RB][kB];
    float d[RB], m[RB];
    prefetch_ahead(w[0], a.ldw, RB, b * W::kBytes, W::kBytes);
    for (int r = 0; r < RB; ++r) W::decode(w[r] + b * W::kBytes, q[r], d[r], m[r]);
    for (int c = 0; c < XB; ++c) {
      VF xv[kB];
      for (int v = 0; v < kB; ++v) xv[v] = VF::load(x[c] + b * QK + v * VF::N);
      VF xs = VF::zero();
      if constexpr (W::kMin) {
        xs = xv[0];
        for (int v = 1; v < kB; ++v) xs = xs + xv[v];
      }
      for (int r = 0; r < RB; ++r) {
        VF p = q[r][0] * xv[0];
        for (int v = 1; v < kB; ++v) p = fma(q[r][v], xv[v], p);
        acc[r][c] = fma(VF::set1(d[r]), p, acc[r][c]);
        if constexpr (W::kMin) acc[r][c] = fma(VF::set1(m[r]), xs, acc[r][c]);
      }
    }
  }
  for (int r = 0; r < RB; ++r) {
    for (int c = 0; c < XB; ++c) {
      float s = acc[r][c].reduce_add();
      if (a.bias) s += a.bias[j + r];
      a.y[(i0 + c) * a.ldy + j + r] = s;
    }
  }
}

template <class W, int RB>
RUNNEL_INLINE void qrows(const MatmulArgs& a, int64_t j) {
  int64_t i = 0;
  for (; i + 4 <= a.m; i += 4) qtile<W, RB, 4>(a, j, i);
  switch (a.m - i) {
    case 3: qtile<W, RB, 3>(a, j, i); break;
    case 2: qtile<W, RB, 2>(a, j, i); break;
    case 1: qtile<W, RB, 1>(a, j, i); break;
    default: break;
  }
}

template <class W>
void matmul_qkernel(const MatmulArgs& a, int64_t n0, int64_t n1) {
  int64_t j = n0;
  for (; j + 4 <= n1; j += 4) qrows<W, 4>(a, j);
  for (; j < n1; ++j) qrows<W, 1>(a, j);
}

// K-quant weights against f32 activations (the int8-activation kernels are
// the fast path; this keeps matmul[] complete): each super-block widened
// once per 4 rows of x into a stack buffer, then f32 FMAs.
template <void (*Dequant)(const void*, float*, int64_t), int64_t BlockBytes, int64_t QK>
void matmul_dequant(const MatmulArgs& a, int64_t n0, int64_t n1) {
  alignas(64) float wb[QK];
  for (int64_t j = n0; j < n1; ++j) {
    const char* w = static_cast<const char*>(a.w) + j * a.ldw;
    for (int64_t i0 = 0; i0 < a.m; i0 += 4) {
      const int64_t nc = std::min<int64_t>(4, a.m - i0);
      VF acc[4] = {VF::zero(), VF::zero(), VF::zero(), VF::zero()};
      for (int64_t b = 0; b < a.k / QK; ++b) {
        Dequant(w + b * BlockBytes, wb, QK);
        for (int64_t c = 0; c < nc; ++c) {
          const float* x = a.x + (i0 + c) * a.ldx + b * QK;
          for (int64_t t = 0; t < QK; t += VF::N) acc[c] = fma(VF::load(wb + t), VF::load(x + t), acc[c]);
        }
      }
      for (int64_t c = 0; c < nc; ++c) {
        float s = acc[c].reduce_add();
        if (a.bias) s += a.bias[j];
        a.y[(i0 + c) * a.ldy + j] = s;
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Int8-activation products.  Per block: the weight's integer values against
// the activation's int8 values in an integer dot (vpdpbusd with VNNI,
// maddubs + madd otherwise), one int -> float conversion and one FMA with the
// product of the two block scales.  Signed weights go through the sign trick
// (|w| as the unsigned operand, x * sign(w) as the signed one); Q4_0 keeps
// its unsigned nibbles q and subtracts 8 * sum(x), computed once per block
// of x: sum (q - 8) x = sum q x - 8 sum x (Q5_0 the same with 16).

struct Q8_0Dot {
  using X = quant::BlockQ8_0;
  static constexpr int64_t kBytes = sizeof(quant::BlockQ8_0);
  static constexpr bool kSigned = true, kMin = false;
  static constexpr int kOffset = 0;
  RUNNEL_INLINE static __m256i decode(const char* p, float& d, float&) {
    const auto* b = reinterpret_cast<const quant::BlockQ8_0*>(p);
    d = qsimd::h2f(b->d);
    return qsimd::load32(b->qs);
  }
};
struct Q4_0Dot {
  using X = quant::BlockQ8_0;
  static constexpr int64_t kBytes = sizeof(quant::BlockQ4_0);
  static constexpr bool kSigned = false, kMin = false;
  static constexpr int kOffset = 8;
  RUNNEL_INLINE static __m256i decode(const char* p, float& d, float&) {
    const auto* b = reinterpret_cast<const quant::BlockQ4_0*>(p);
    d = qsimd::h2f(b->d);
    return qsimd::nibbles(b->qs);
  }
};
struct Q4_1Dot {
  using X = quant::BlockQ8_1;
  static constexpr int64_t kBytes = sizeof(quant::BlockQ4_1);
  static constexpr bool kSigned = false, kMin = true;
  static constexpr int kOffset = 0;
  RUNNEL_INLINE static __m256i decode(const char* p, float& d, float& m) {
    const auto* b = reinterpret_cast<const quant::BlockQ4_1*>(p);
    d = qsimd::h2f(b->d);
    m = qsimd::h2f(b->m);
    return qsimd::nibbles(b->qs);
  }
};

// Q5_0 / Q5_1: the unsigned 5-bit values (0..31), as Q4_0 / Q4_1 with
// the high bits from qh; Q5_0's offset is 16.
struct Q5_0Dot {
  using X = quant::BlockQ8_0;
  static constexpr int64_t kBytes = sizeof(quant::BlockQ5_0);
  static constexpr bool kSigned = false, kMin = false;
  static constexpr int kOffset = 16;
  RUNNEL_INLINE static __m256i decode(const char* p, float& d, float&) {
    const auto* b = reinterpret_cast<const quant::BlockQ5_0*>(p);
    d = qsimd::h2f(b->d);
    return qsimd::q5_lanes(b->qs, b->qh);
  }
};
struct Q5_1Dot {
  using X = quant::BlockQ8_1;
  static constexpr int64_t kBytes = sizeof(quant::BlockQ5_1);
  static constexpr bool kSigned = false, kMin = true;
  static constexpr int kOffset = 0;
  RUNNEL_INLINE static __m256i decode(const char* p, float& d, float& m) {
    const auto* b = reinterpret_cast<const quant::BlockQ5_1*>(p);
    d = qsimd::h2f(b->d);
    m = qsimd::h2f(b->m);
    return qsimd::q5_lanes(b->qs, b->qh);
  }
};

template <class W, int RB, int XB>
RUNNEL_INLINE void q8tile(const QMatmulArgs& a, int64_t j, int64_t i0) {
  using X = typename W::X;
  const char* w[RB];
  for (int r = 0; r < RB; ++r) w[r] = static_cast<const char*>(a.w) + (j + r) * a.ldw;
  const X* x[XB];
  for (int c = 0; c < XB; ++c) x[c] = reinterpret_cast<const X*>(static_cast<const char*>(a.xq) + (i0 + c) * a.ldxq);
  __m256 acc[RB][XB];
  float macc[RB][XB];
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < XB; ++c) {
      acc[r][c] = _mm256_setzero_ps();
      macc[r][c] = 0;
    }
  const int64_t nb = a.k / quant::kQK;
  for (int64_t b = 0; b < nb; ++b) {
    __m256i u[RB], sg[RB];
    float d[RB], m[RB];
    prefetch_ahead(w[0], a.ldw, RB, b * W::kBytes, W::kBytes);
    for (int r = 0; r < RB; ++r) {
      sg[r] = W::decode(w[r] + b * W::kBytes, d[r], m[r]);
      u[r] = W::kSigned ? _mm256_abs_epi8(sg[r]) : sg[r];
    }
    for (int c = 0; c < XB; ++c) {
      const X& xb = x[c][b];
      const __m256i xv = qsimd::load32(xb.qs);
      const float dx = qsimd::h2f(xb.d);
      float sx = 0;
      if constexpr (W::kMin) sx = qsimd::h2f(xb.s);
      // The integer sums start from -kOffset * sum(x) (zero for most types).
      __m256i init = _mm256_setzero_si256();
      if constexpr (W::kOffset != 0)
        init = _mm256_sub_epi32(init, qsimd::dot_u8s8(init, _mm256_set1_epi8(W::kOffset), xv));
      for (int r = 0; r < RB; ++r) {
        const __m256i xs = W::kSigned ? _mm256_sign_epi8(xv, sg[r]) : xv;
        const __m256i s = qsimd::dot_u8s8(init, u[r], xs);
        acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(d[r] * dx), _mm256_cvtepi32_ps(s), acc[r][c]);
        if constexpr (W::kMin) macc[r][c] += m[r] * sx;
      }
    }
  }
  for (int r = 0; r < RB; ++r) {
    for (int c = 0; c < XB; ++c) {
      float s = qsimd::hsum(acc[r][c]) + macc[r][c];
      if (a.bias) s += a.bias[j + r];
      a.y[(i0 + c) * a.ldy + j + r] = s;
    }
  }
}

// A Q4_K super-block's 8 6-bit scales (bytes 0-7) and 8 6-bit minimums
// (bytes 8-15), unpacked a 32-bit word at a time: scales and minimums 0-3 are
// the low 6 bits of bytes 0-3 and 4-7; 4-7 take their low 4 bits from the
// nibbles of bytes 8-11 and their top 2 from bits 6-7 of bytes 0-3 (scales)
// and 4-7 (minimums), as scale_min_k4 reads them one at a time.
RUNNEL_INLINE void q4k_scales_mins(const uint8_t* s, uint8_t out[16]) {
  uint32_t u0, u1, u2;
  std::memcpy(&u0, s, 4);
  std::memcpy(&u1, s + 4, 4);
  std::memcpy(&u2, s + 8, 4);
  const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, two = 0x03030303u;
  const uint32_t w[4] = {u0 & low6, (u2 & low4) | (((u0 >> 6) & two) << 4), u1 & low6,
                         ((u2 >> 4) & low4) | (((u1 >> 6) & two) << 4)};
  std::memcpy(out, w, 16);
}

// Q4_K against Q8_K: per 64-element group the low and high nibbles (two
// sub-blocks of 32) go through maddubs against x, then a pairwise madd with
// the sub-block's 6-bit scale; the minimums meet x's sums of 16 in one
// pairwise madd (each minimum twice, against its sub-block's two sums).
//
// Q5_K (Q5 = true) is the same with each value's fifth bit from qh: for group
// g, bit 2 g of qh's byte l belongs to the low nibble of byte l, bit 2 g + 1
// to the high one; both become 16 before maddubs (values up to 31).
template <int RB, int XB, bool Q5>
RUNNEL_INLINE void q4ktile(const QMatmulArgs& a, int64_t j, int64_t i0) {
  using BlockQ4_K = std::conditional_t<Q5, quant::BlockQ5_K, quant::BlockQ4_K>;
  using quant::BlockQ8_K;
  const BlockQ4_K* w[RB];
  for (int r = 0; r < RB; ++r)
    w[r] = reinterpret_cast<const BlockQ4_K*>(static_cast<const char*>(a.w) + (j + r) * a.ldw);
  const BlockQ8_K* x[XB];
  for (int c = 0; c < XB; ++c)
    x[c] = reinterpret_cast<const BlockQ8_K*>(static_cast<const char*>(a.xq) + (i0 + c) * a.ldxq);
  __m256 acc[RB][XB];
  float macc[RB][XB];
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < XB; ++c) {
      acc[r][c] = _mm256_setzero_ps();
      macc[r][c] = 0;
    }
  const __m256i low = _mm256_set1_epi8(0x0f);
  const int64_t nb = a.k / quant::kQK_K;
  for (int64_t b = 0; b < nb; ++b) {
    alignas(16) uint8_t sm[RB][16];
    __m256i mins2[RB];
    prefetch_ahead(w[0], a.ldw, RB, b * int64_t(sizeof(BlockQ4_K)), sizeof(BlockQ4_K));
    for (int r = 0; r < RB; ++r) {
      q4k_scales_mins(w[r][b].scales, sm[r]);
      const __m128i m8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm[r] + 8));
      mins2[r] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));  // m0 m0 m1 m1 ... m7 m7
    }
    __m256i iacc[RB][XB];
    for (int r = 0; r < RB; ++r)
      for (int c = 0; c < XB; ++c) iacc[r][c] = _mm256_setzero_si256();
    __m256i qh[RB];
    if constexpr (Q5)
      for (int r = 0; r < RB; ++r) qh[r] = qsimd::load32(w[r][b].qh);
    for (int g = 0; g < 4; ++g) {
      __m256i lo[RB], hi[RB], slo[RB], shi[RB];
      for (int r = 0; r < RB; ++r) {
        const __m256i raw = qsimd::load32(w[r][b].qs + 32 * g);
        lo[r] = _mm256_and_si256(raw, low);
        hi[r] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
        if constexpr (Q5) {
          const __m256i one = _mm256_set1_epi8(1);
          const __m256i b0 = _mm256_and_si256(_mm256_srli_epi16(qh[r], 2 * g), one);
          const __m256i b1 = _mm256_and_si256(_mm256_srli_epi16(qh[r], 2 * g + 1), one);
          lo[r] = _mm256_or_si256(lo[r], _mm256_slli_epi16(b0, 4));
          hi[r] = _mm256_or_si256(hi[r], _mm256_slli_epi16(b1, 4));
        }
        slo[r] = _mm256_set1_epi16(int16_t(sm[r][2 * g]));
        shi[r] = _mm256_set1_epi16(int16_t(sm[r][2 * g + 1]));
      }
      for (int c = 0; c < XB; ++c) {
        const __m256i xl = qsimd::load32(x[c][b].qs + 64 * g), xh = qsimd::load32(x[c][b].qs + 64 * g + 32);
        for (int r = 0; r < RB; ++r) {
          iacc[r][c] = qsimd::dot_s16(iacc[r][c], _mm256_maddubs_epi16(lo[r], xl), slo[r]);
          iacc[r][c] = qsimd::dot_s16(iacc[r][c], _mm256_maddubs_epi16(hi[r], xh), shi[r]);
        }
      }
    }
    for (int r = 0; r < RB; ++r) {
      const float d = qsimd::h2f(w[r][b].d), dmin = qsimd::h2f(w[r][b].dmin);
      for (int c = 0; c < XB; ++c) {
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[c][b].bsums));
        const int ms = qsimd::hsum_i32(_mm256_madd_epi16(bs, mins2[r]));
        const float dx = x[c][b].d;
        acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(d * dx), _mm256_cvtepi32_ps(iacc[r][c]), acc[r][c]);
        macc[r][c] -= dmin * dx * float(ms);
      }
    }
  }
  for (int r = 0; r < RB; ++r) {
    for (int c = 0; c < XB; ++c) {
      float s = qsimd::hsum(acc[r][c]) + macc[r][c];
      if (a.bias) s += a.bias[j + r];
      a.y[(i0 + c) * a.ldy + j + r] = s;
    }
  }
}

// Q6_K against Q8_K: the unsigned 6-bit values (0..63) through maddubs,
// a pairwise madd with the int8 scales of the two sub-blocks of 16, and the
// -32 offset applied once per super-block as 32 * sum(scale * bsum).
template <int RB, int XB>
RUNNEL_INLINE void q6ktile(const QMatmulArgs& a, int64_t j, int64_t i0) {
  using quant::BlockQ6_K;
  using quant::BlockQ8_K;
  const BlockQ6_K* w[RB];
  for (int r = 0; r < RB; ++r)
    w[r] = reinterpret_cast<const BlockQ6_K*>(static_cast<const char*>(a.w) + (j + r) * a.ldw);
  const BlockQ8_K* x[XB];
  for (int c = 0; c < XB; ++c)
    x[c] = reinterpret_cast<const BlockQ8_K*>(static_cast<const char*>(a.xq) + (i0 + c) * a.ldxq);
  __m256 acc[RB][XB];
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < XB; ++c) acc[r][c] = _mm256_setzero_ps();
  const int64_t nb = a.k / quant::kQK_K;
  for (int64_t b = 0; b < nb; ++b) {
    __m256i iacc[RB][XB];
    prefetch_ahead(w[0], a.ldw, RB, b * int64_t(sizeof(BlockQ6_K)), sizeof(BlockQ6_K));
    for (int r = 0; r < RB; ++r) {
      // The offset: -32 * sum over sub-blocks of scale * sum(x).
      const __m256i sc16 = _mm256_cvtepi8_epi16(qsimd::load16(w[r][b].scales));
      for (int c = 0; c < XB; ++c) {
        const __m256i off = _mm256_madd_epi16(qsimd::load32(x[c][b].bsums), sc16);
        iacc[r][c] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
      }
    }
    for (int h = 0; h < 2; ++h) {
      for (int t = 0; t < 4; ++t) {
        __m256i q[RB], s[RB];
        for (int r = 0; r < RB; ++r) {
          q[r] = qsimd::q6_lanes(w[r][b], h, t);
          const int k = 8 * h + 2 * t;
          s[r] = _mm256_set_m128i(_mm_set1_epi16(w[r][b].scales[k + 1]), _mm_set1_epi16(w[r][b].scales[k]));
        }
        for (int c = 0; c < XB; ++c) {
          const __m256i xv = qsimd::load32(x[c][b].qs + 128 * h + 32 * t);
          for (int r = 0; r < RB; ++r)
            iacc[r][c] = qsimd::dot_s16(iacc[r][c], _mm256_maddubs_epi16(q[r], xv), s[r]);
        }
      }
    }
    for (int r = 0; r < RB; ++r) {
      const float d = qsimd::h2f(w[r][b].d);
      for (int c = 0; c < XB; ++c)
        acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[c][b].d), _mm256_cvtepi32_ps(iacc[r][c]), acc[r][c]);
    }
  }
  for (int r = 0; r < RB; ++r) {
    for (int c = 0; c < XB; ++c) {
      float s = qsimd::hsum(acc[r][c]);
      if (a.bias) s += a.bias[j + r];
      a.y[(i0 + c) * a.ldy + j + r] = s;
    }
  }
}

template <class W>
struct Q8Tile {
  template <int RB, int XB>
  RUNNEL_INLINE static void run(const QMatmulArgs& a, int64_t j, int64_t i) { q8tile<W, RB, XB>(a, j, i); }
};
struct Q4KTile {
  template <int RB, int XB>
  RUNNEL_INLINE static void run(const QMatmulArgs& a, int64_t j, int64_t i) { q4ktile<RB, XB, false>(a, j, i); }
};
struct Q5KTile {
  template <int RB, int XB>
  RUNNEL_INLINE static void run(const QMatmulArgs& a, int64_t j, int64_t i) { q4ktile<RB, XB, true>(a, j, i); }
};
struct Q6KTile {
  template <int RB, int XB>
  RUNNEL_INLINE static void run(const QMatmulArgs& a, int64_t j, int64_t i) { q6ktile<RB, XB>(a, j, i); }
};

// Rows of x in tiles of up to XMAX.
template <class T, int RB, int XMAX>
RUNNEL_INLINE void qdot_rows(const QMatmulArgs& a, int64_t j) {
  int64_t i = 0;
  for (; i + XMAX <= a.m; i += XMAX) T::template run<RB, XMAX>(a, j, i);
  if constexpr (XMAX >= 4) {
    if (a.m - i == 3) return T::template run<RB, 3>(a, j, i);
  }
  if constexpr (XMAX >= 3) {
    if (a.m - i == 2) return T::template run<RB, 2>(a, j, i);
  }
  if (a.m - i == 1) T::template run<RB, 1>(a, j, i);
}

template <class T, int XMAX>
void qdot_kernel(const QMatmulArgs& a, int64_t n0, int64_t n1) {
  int64_t j = n0;
  for (; j + 4 <= n1; j += 4) qdot_rows<T, 4, XMAX>(a, j);
  for (; j < n1; ++j) qdot_rows<T, 1, XMAX>(a, j);
}

#endif

}  // namespace

void register_matmul(KernelTable& t) {
  t.matmul[int(DType::F32)] = matmul_kernel<F32W>;
  t.matmul[int(DType::F16)] = matmul_kernel<F16W>;
  t.matmul[int(DType::BF16)] = matmul_kernel<BF16W>;
#if defined(RUNNEL_ISA_SCALAR)
  t.matmul[int(DType::Q8_0)] = matmul_quant<quant::dequant_q8_0, sizeof(quant::BlockQ8_0)>;
  t.matmul[int(DType::Q4_0)] = matmul_quant<quant::dequant_q4_0, sizeof(quant::BlockQ4_0)>;
  t.matmul[int(DType::Q4_1)] = matmul_quant<quant::dequant_q4_1, sizeof(quant::BlockQ4_1)>;
  t.matmul[int(DType::Q5_0)] = matmul_quant<quant::dequant_q5_0, sizeof(quant::BlockQ5_0)>;
  t.matmul[int(DType::Q5_1)] = matmul_quant<quant::dequant_q5_1, sizeof(quant::BlockQ5_1)>;
  t.matmul[int(DType::Q4_K)] = matmul_quant<quant::dequant_q4_k, sizeof(quant::BlockQ4_K), quant::kQK_K>;
  t.matmul[int(DType::Q5_K)] = matmul_quant<quant::dequant_q5_k, sizeof(quant::BlockQ5_K), quant::kQK_K>;
  t.matmul[int(DType::Q6_K)] = matmul_quant<quant::dequant_q6_k, sizeof(quant::BlockQ6_K), quant::kQK_K>;
  t.qmatmul[int(DType::Q8_0)] = qmatmul_ref<quant::dot_q8_0_q8_0, quant::kQK>;
  t.qmatmul[int(DType::Q4_0)] = qmatmul_ref<quant::dot_q4_0_q8_0, quant::kQK>;
  t.qmatmul[int(DType::Q4_1)] = qmatmul_ref<quant::dot_q4_1_q8_1, quant::kQK>;
  t.qmatmul[int(DType::Q5_0)] = qmatmul_ref<quant::dot_q5_0_q8_0, quant::kQK>;
  t.qmatmul[int(DType::Q5_1)] = qmatmul_ref<quant::dot_q5_1_q8_1, quant::kQK>;
  t.qmatmul[int(DType::Q4_K)] = qmatmul_ref<quant::dot_q4_k_q8_k, quant::kQK_K>;
  t.qmatmul[int(DType::Q5_K)] = qmatmul_ref<quant::dot_q5_k_q8_k, quant::kQK_K>;
  t.qmatmul[int(DType::Q6_K)] = qmatmul_ref<quant::dot_q6_k_q8_k, quant::kQK_K>;
#else
  t.matmul[int(DType::Q8_0)] = matmul_qkernel<Q8_0W>;
  t.matmul[int(DType::Q4_0)] = matmul_qkernel<Q4_0W>;
  t.matmul[int(DType::Q4_1)] = matmul_qkernel<Q4_1W>;
  t.matmul[int(DType::Q5_0)] = matmul_qkernel<Q5_0W>;
  t.matmul[int(DType::Q5_1)] = matmul_qkernel<Q5_1W>;
  t.matmul[int(DType::Q4_K)] = matmul_dequant<qsimd::dequant_q4_k, sizeof(quant::BlockQ4_K), quant::kQK_K>;
  t.matmul[int(DType::Q5_K)] = matmul_dequant<quant::dequant_q5_k, sizeof(quant::BlockQ5_K), quant::kQK_K>;
  t.matmul[int(DType::Q6_K)] = matmul_dequant<qsimd::dequant_q6_k, sizeof(quant::BlockQ6_K), quant::kQK_K>;
  t.qmatmul[int(DType::Q8_0)] = qdot_kernel<Q8Tile<Q8_0Dot>, 4>;
  t.qmatmul[int(DType::Q4_0)] = qdot_kernel<Q8Tile<Q4_0Dot>, 4>;
  t.qmatmul[int(DType::Q4_1)] = qdot_kernel<Q8Tile<Q4_1Dot>, 4>;
  t.qmatmul[int(DType::Q5_0)] = qdot_kernel<Q8Tile<Q5_0Dot>, 4>;
  t.qmatmul[int(DType::Q5_1)] = qdot_kernel<Q8Tile<Q5_1Dot>, 4>;
  t.qmatmul[int(DType::Q4_K)] = qdot_kernel<Q4KTile, 2>;
  t.qmatmul[int(DType::Q5_K)] = qdot_kernel<Q5KTile, 2>;
  t.qmatmul[int(DType::Q6_K)] = qdot_kernel<Q6KTile, 2>;
#endif
}

}  // namespace runnel::cpu::RUNNEL_ISA_NS

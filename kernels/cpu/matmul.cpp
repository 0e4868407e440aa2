// Matrix-vector and small-batch products: y[i, j] = x[i, :] . w[j, :] + b[j].
// This is the decode path and is memory-bound: every weight byte is read once
// per call, so the kernel streams RB weight rows at a time and applies each
// loaded weight vector to up to XB rows of x.
#include "cpu/kernels.hpp"
#include "cpu/quant.hpp"
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
template <void (*Dequant)(const void*, float*, int64_t), int64_t BlockBytes>
void matmul_quant(const MatmulArgs& a, int64_t n0, int64_t n1) {
  constexpr int64_t QK = quant::kQK;
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

constexpr int64_t kPrefetchBytes = 1024;

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
      // Prefetch each weight stream well ahead; the rows are read exactly once.
      prefetch(reinterpret_cast<const char*>(w[r] + k) + kPrefetchBytes);
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
// with x, and the block sum scaled by d (plus m * sum(x) for Q4_1).

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
    for (int r = 0; r < RB; ++r) {
      const char* p = w[r] + b * W::kBytes;
      prefetch(p + kPrefetchBytes);
      W::decode(p, q[r], d[r], m[r]);
    }
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
#else
  t.matmul[int(DType::Q8_0)] = matmul_qkernel<Q8_0W>;
  t.matmul[int(DType::Q4_0)] = matmul_qkernel<Q4_0W>;
  t.matmul[int(DType::Q4_1)] = matmul_qkernel<Q4_1W>;
#endif
}

}  // namespace runnel::cpu::RUNNEL_ISA_NS

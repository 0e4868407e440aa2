// Large products with block-quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) over int8
// activations: the prompt path.  Activations are quantized per block of 32
// (as Q8_0: scale d rounded to f16, s = d * sum(q)); weights are repacked per
// call, 32 output columns at a time, into the layout of AVX-512 VNNI's
// vpdpbusd (for each group of 4 k-values, 16 columns x 4 unsigned bytes in
// one 64-byte row), so one instruction does 64 multiply-adds and the
// activation bytes come in as 32-bit broadcasts.
//
// Per block b, output column j and activation row i:
//   y[i, j] += dw[j, b] * dx[i, b] * sum_t u[j, b, t] q[i, b, t] + c[j, b] * s[i, b]
// where u are the weight's unsigned integer values and c folds the offset:
// Q4_0: u = nibble, c = -8 dw; Q8_0: u = q + 128, c = -128 dw; Q4_1: u =
// nibble, c = m.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "cpu/kernels.hpp"
#include "cpu/quant.hpp"
#include "cpu/quant_simd.hpp"
#include "cpu/simd.hpp"

namespace runnel::cpu::RUNNEL_ISA_NS {
namespace {

constexpr int64_t QK = quant::kQK;

// The weight's unsigned values of block `blk`, the scale and the offset
// coefficient.
struct Q8_0U {
  static constexpr int64_t kBytes = sizeof(quant::BlockQ8_0);
  static void unpack(const char* p, uint8_t* u, float& d, float& c) {
    const auto* b = reinterpret_cast<const quant::BlockQ8_0*>(p);
    d = f16_to_f32(b->d);
    c = -128.0f * d;
    for (int t = 0; t < QK; ++t) u[t] = uint8_t(int(b->qs[t]) + 128);
  }
};
struct Q4_0U {
  static constexpr int64_t kBytes = sizeof(quant::BlockQ4_0);
  static void unpack(const char* p, uint8_t* u, float& d, float& c) {
    const auto* b = reinterpret_cast<const quant::BlockQ4_0*>(p);
    d = f16_to_f32(b->d);
    c = -8.0f * d;
    for (int t = 0; t < QK / 2; ++t) {
      u[t] = b->qs[t] & 0x0f;
      u[t + QK / 2] = b->qs[t] >> 4;
    }
  }
};
struct Q4_1U {
  static constexpr int64_t kBytes = sizeof(quant::BlockQ4_1);
  static void unpack(const char* p, uint8_t* u, float& d, float& c) {
    const auto* b = reinterpret_cast<const quant::BlockQ4_1*>(p);
    d = f16_to_f32(b->d);
    c = f16_to_f32(b->m);
    for (int t = 0; t < QK / 2; ++t) {
      u[t] = b->qs[t] & 0x0f;
      u[t + QK / 2] = b->qs[t] >> 4;
    }
  }
};

struct Q5_0U {
  static constexpr int64_t kBytes = sizeof(quant::BlockQ5_0);
  static void unpack(const char* p, uint8_t* u, float& d, float& c) {
    const auto* b = reinterpret_cast<const quant::BlockQ5_0*>(p);
    d = f16_to_f32(b->d);
    c = -16.0f * d;
    int q[QK];
    quant::q5_values(b->qs, b->qh, q);
    for (int t = 0; t < QK; ++t) u[t] = uint8_t(q[t]);
  }
};
struct Q5_1U {
  static constexpr int64_t kBytes = sizeof(quant::BlockQ5_1);
  static void unpack(const char* p, uint8_t* u, float& d, float& c) {
    const auto* b = reinterpret_cast<const quant::BlockQ5_1*>(p);
    d = f16_to_f32(b->d);
    c = f16_to_f32(b->m);
    int q[QK];
    quant::q5_values(b->qs, b->qh, q);
    for (int t = 0; t < QK; ++t) u[t] = uint8_t(q[t]);
  }
};

#if defined(RUNNEL_ISA_SCALAR)

// One activation row: int8 values, and per block d (f16-exact) and d * sum(q).
void quant_row_ref(const float* x, int8_t* q, float* d, float* s, int64_t k) {
  for (int64_t b = 0; b < k / QK; ++b) {
    quant::BlockQ8_0 blk;
    quant::quant_act_q8_0(x + b * QK, &blk, QK);
    std::memcpy(q + b * QK, blk.qs, QK);
    int sum = 0;
    for (int t = 0; t < QK; ++t) sum += blk.qs[t];
    d[b] = f16_to_f32(blk.d);
    s[b] = d[b] * float(sum);
  }
}

// Reference: integer sums per block, accumulated in double.
template <class W>
void qgemm_ref(const QGemmArgs& a, int64_t n0, int64_t n1) {
  const int64_t nb = a.k / QK;
  uint8_t u[QK];
  for (int64_t j = n0; j < n1; ++j) {
    const char* w = static_cast<const char*>(a.w) + j * a.ldw;
    for (int64_t i = 0; i < a.m; ++i) {
      const int8_t* x = a.xq + i * a.ldxq;
      double acc = 0;
      for (int64_t b = 0; b < nb; ++b) {
        float d, c;
        W::unpack(w + b * W::kBytes, u, d, c);
        int64_t isum = 0;
        for (int t = 0; t < QK; ++t) isum += int64_t(u[t]) * x[b * QK + t];
        acc += double(d) * a.xd[i * a.ldxs + b] * double(isum) + double(c) * a.xs[i * a.ldxs + b];
      }
      if (a.bias) acc += a.bias[j];
      a.y[i * a.ldy + j] = float(acc);
    }
  }
}

#elif defined(RUNNEL_ISA_AVX512)

// clamp(round_even(x * id), -127, 127), NaN to -127: the rounding of the
// scalar reference (quant_act_q8_0), 16 lanes.
RUNNEL_INLINE __m512i quant16(__m512 x, __m512 id) {
  __m512 v = _mm512_max_ps(_mm512_mul_ps(x, id), _mm512_set1_ps(-127.0f));  // NaN -> -127
  v = _mm512_min_ps(v, _mm512_set1_ps(127.0f));
  return _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

void quant_row(const float* x, int8_t* q, float* d, float* s, int64_t k) {
  for (int64_t b = 0; b < k / QK; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + b * QK), v1 = _mm512_loadu_ps(x + b * QK + 16);
    // max |x|, NaN ignored (max returns its second operand on NaN)
    const __m512 m = _mm512_max_ps(_mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps()));
    const float amax = _mm512_reduce_max_ps(m), dq = amax / 127;
    const __m512 id = _mm512_set1_ps(amax != 0 ? 127.0f / amax : 0.0f);
    const __m512i i0 = quant16(v0, id), i1 = quant16(v1, id);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * QK), _mm512_cvtsepi32_epi8(i0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * QK + 16), _mm512_cvtsepi32_epi8(i1));
    const float db = f16_to_f32(f32_to_f16(dq));
    d[b] = db;
    s[b] = db * float(_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1)));
  }
}

// A panel of 2 groups of 16 columns: for each block, 8 steps of
// [group][column][4 bytes] (1 KiB), then the scales and offset coefficients.
constexpr int kNR = 32;
constexpr int64_t kPanelBlockBytes = 8 * kNR * 4;

struct Panel {
  uint8_t* q = nullptr;  // [nb][8][2][16][4]
  float* d = nullptr;    // [nb][32]
  float* c = nullptr;    // [nb][32]
  size_t cap = 0;
  ~Panel() { std::free(q); }
  void reserve(int64_t nb) {
    const size_t want = size_t(nb) * (size_t(kPanelBlockBytes) + 2 * kNR * sizeof(float));
    if (want <= cap) return;
    std::free(q);
    q = static_cast<uint8_t*>(std::aligned_alloc(64, (want + 63) / 64 * 64));
    if (!q) throw std::bad_alloc();
    cap = want;
  }
  void layout(int64_t nb) {
    d = reinterpret_cast<float*>(q + nb * kPanelBlockBytes);
    c = d + nb * kNR;
  }
};

// The 32 unsigned values of one block, in order.
RUNNEL_INLINE __m256i nibbles_u(const uint8_t* qs) {
  const __m128i raw = qsimd::load16(qs), low = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), low), _mm_and_si128(raw, low));
}
template <class W>
RUNNEL_INLINE __m256i unpack_simd(const char* p, float& d, float& c);
template <>
RUNNEL_INLINE __m256i unpack_simd<Q8_0U>(const char* p, float& d, float& c) {
  const auto* b = reinterpret_cast<const quant::BlockQ8_0*>(p);
  d = qsimd::h2f(b->d);
  c = -128.0f * d;
  return _mm256_xor_si256(qsimd::load32(b->qs), _mm256_set1_epi8(char(0x80)));
}
template <>
RUNNEL_INLINE __m256i unpack_simd<Q4_0U>(const char* p, float& d, float& c) {
  const auto* b = reinterpret_cast<const quant::BlockQ4_0*>(p);
  d = qsimd::h2f(b->d);
  c = -8.0f * d;
  return nibbles_u(b->qs);
}
template <>
RUNNEL_INLINE __m256i unpack_simd<Q4_1U>(const char* p, float& d, float& c) {
  const auto* b = reinterpret_cast<const quant::BlockQ4_1*>(p);
  d = qsimd::h2f(b->d);
  c = qsimd::h2f(b->m);
  return nibbles_u(b->qs);
}

template <>
RUNNEL_INLINE __m256i unpack_simd<Q5_0U>(const char* p, float& d, float& c) {
  const auto* b = reinterpret_cast<const quant::BlockQ5_0*>(p);
  d = qsimd::h2f(b->d);
  c = -16.0f * d;
  return qsimd::q5_lanes(b->qs, b->qh);
}
template <>
RUNNEL_INLINE __m256i unpack_simd<Q5_1U>(const char* p, float& d, float& c) {
  const auto* b = reinterpret_cast<const quant::BlockQ5_1*>(p);
  d = qsimd::h2f(b->d);
  c = qsimd::h2f(b->m);
  return qsimd::q5_lanes(b->qs, b->qh);
}

// Per block and group of 16 columns: each column's 32 values into a 512-byte
// staging tile, then 8 gathers of one 4-byte step across the 16 columns.
template <class W>
void pack(const QGemmArgs& a, int64_t j0, int ncols, int64_t nb, Panel& p) {
  alignas(64) uint8_t tmp[16 * QK];
  const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                         _mm512_set1_epi32(QK));
  for (int g = 0; g < 2; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      for (int cc = 0; cc < 16; ++cc) {
        const int col = g * 16 + cc;
        float d = 0, c = 0;
        __m256i u = _mm256_setzero_si256();
        if (col < ncols) u = unpack_simd<W>(static_cast<const char*>(a.w) + (j0 + col) * a.ldw + b * W::kBytes, d, c);
        _mm256_store_si256(reinterpret_cast<__m256i*>(tmp + cc * QK), u);
        p.d[b * kNR + col] = d;
        p.c[b * kNR + col] = c;
      }
      uint8_t* dst = p.q + b * kPanelBlockBytes + g * 64;
      for (int s = 0; s < 8; ++s)
        _mm512_store_si512(dst + s * 128, _mm512_i32gather_epi32(idx, tmp + 4 * s, 1));
    }
  }
}

RUNNEL_INLINE __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

template <int MR>
RUNNEL_INLINE void tile(const QGemmArgs& a, const Panel& p, int64_t nb, int64_t i0, int64_t j0, int ncols) {
  const int8_t* x[MR];
  for (int i = 0; i < MR; ++i) x[i] = a.xq + (i0 + i) * a.ldxq;
  __m512 facc[MR][2];
  for (int i = 0; i < MR; ++i) facc[i][0] = facc[i][1] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m512i acc[MR][2];
    for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
    const uint8_t* q = p.q + b * kPanelBlockBytes;
    for (int s = 0; s < 8; ++s) {
      const __m512i w0 = _mm512_load_si512(q + s * 128), w1 = _mm512_load_si512(q + s * 128 + 64);
      for (int i = 0; i < MR; ++i) {
        const __m512i xb = bcast4(x[i] + b * QK + 4 * s);
        acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], w0, xb);
        acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], w1, xb);
      }
    }
    const __m512 d0 = _mm512_loadu_ps(p.d + b * kNR), d1 = _mm512_loadu_ps(p.d + b * kNR + 16);
    const __m512 c0 = _mm512_loadu_ps(p.c + b * kNR), c1 = _mm512_loadu_ps(p.c + b * kNR + 16);
    for (int i = 0; i < MR; ++i) {
      const __m512 dx = _mm512_set1_ps(a.xd[(i0 + i) * a.ldxs + b]);
      const __m512 xs = _mm512_set1_ps(a.xs[(i0 + i) * a.ldxs + b]);
      facc[i][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][0]), _mm512_mul_ps(d0, dx), facc[i][0]);
      facc[i][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][1]), _mm512_mul_ps(d1, dx), facc[i][1]);
      facc[i][0] = _mm512_fmadd_ps(c0, xs, facc[i][0]);
      facc[i][1] = _mm512_fmadd_ps(c1, xs, facc[i][1]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    alignas(64) float out[kNR];
    _mm512_store_ps(out, facc[i][0]);
    _mm512_store_ps(out + 16, facc[i][1]);
    float* y = a.y + (i0 + i) * a.ldy + j0;
    for (int c = 0; c < ncols; ++c) y[c] = out[c] + (a.bias ? a.bias[j0 + c] : 0.0f);
  }
}

constexpr int kMR = 4;

template <class W>
void qgemm_kernel(const QGemmArgs& a, int64_t n0, int64_t n1) {
  const int64_t nb = a.k / QK;
  thread_local Panel p;
  p.reserve(nb);
  p.layout(nb);
  for (int64_t j = n0; j < n1; j += kNR) {
    const int ncols = int(std::min<int64_t>(kNR, n1 - j));
    pack<W>(a, j, ncols, nb, p);
    int64_t i = 0;
    for (; i + kMR <= a.m; i += kMR) tile<kMR>(a, p, nb, i, j, ncols);
    switch (a.m - i) {
      case 3: tile<3>(a, p, nb, i, j, ncols); break;
      case 2: tile<2>(a, p, nb, i, j, ncols); break;
      case 1: tile<1>(a, p, nb, i, j, ncols); break;
      default: break;
    }
  }
}

#endif

}  // namespace

void register_qgemm(KernelTable& t) {
#if defined(RUNNEL_ISA_SCALAR)
  t.qgemm_quant = quant_row_ref;
  t.qgemm[int(DType::Q8_0)] = qgemm_ref<Q8_0U>;
  t.qgemm[int(DType::Q4_0)] = qgemm_ref<Q4_0U>;
  t.qgemm[int(DType::Q4_1)] = qgemm_ref<Q4_1U>;
  t.qgemm[int(DType::Q5_0)] = qgemm_ref<Q5_0U>;
  t.qgemm[int(DType::Q5_1)] = qgemm_ref<Q5_1U>;
#elif defined(RUNNEL_ISA_AVX512)
  t.qgemm_quant = quant_row;
  t.qgemm[int(DType::Q8_0)] = qgemm_kernel<Q8_0U>;
  t.qgemm[int(DType::Q4_0)] = qgemm_kernel<Q4_0U>;
  t.qgemm[int(DType::Q4_1)] = qgemm_kernel<Q4_1U>;
  t.qgemm[int(DType::Q5_0)] = qgemm_kernel<Q5_0U>;
  t.qgemm[int(DType::Q5_1)] = qgemm_kernel<Q5_1U>;
#else
  (void)t;  // AVX2: the f32 path (ops::matmul widens the weights)
#endif
}

}  // namespace runnel::cpu::RUNNEL_ISA_NS

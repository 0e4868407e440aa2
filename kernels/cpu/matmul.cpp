// Matrix-vector and small-batch products: y[i, j] = x[i, :] . w[j, :] + b[j].
// This is the decode path and is memory-bound: every weight byte is read once
// per call, so the kernel streams RB weight rows at a time and applies each
// loaded weight vector to up to XB rows of x.
#include "cpu/kernels.hpp"
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

#endif

}  // namespace

void register_matmul(KernelTable& t) {
  t.matmul[int(DType::F32)] = matmul_kernel<F32W>;
  t.matmul[int(DType::F16)] = matmul_kernel<F16W>;
  t.matmul[int(DType::BF16)] = matmul_kernel<BF16W>;
}

}  // namespace runnel::cpu::RUNNEL_ISA_NS

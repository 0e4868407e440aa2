// Large products with f32 weights, blocked over k so that a [m, KC] panel of x
// stays in L2 while 4 weight rows at a time stream past it.  This is the
// fallback for prompt processing when oneDNN is unavailable or disabled.
#include <algorithm>

#include "cpu/kernels.hpp"
#include "cpu/simd.hpp"

namespace runnel::cpu::RUNNEL_ISA_NS {
namespace {

[[maybe_unused]] constexpr int64_t KC = 256;  // k block (floats)
[[maybe_unused]] constexpr int64_t MC = 64;   // m block (rows of x)

#if defined(RUNNEL_ISA_SCALAR)

void gemm(const MatmulArgs& a, int64_t n0, int64_t n1) {
  for (int64_t i = 0; i < a.m; ++i) {
    const float* x = a.x + i * a.ldx;
    for (int64_t j = n0; j < n1; ++j) {
      const float* w = reinterpret_cast<const float*>(static_cast<const char*>(a.w) + j * a.ldw);
      double s = 0;
      for (int64_t k = 0; k < a.k; ++k) s += double(w[k]) * double(x[k]);
      if (a.bias) s += a.bias[j];
      a.y[i * a.ldy + j] = float(s);
    }
  }
}

#else

// y[i0.., j..] (+)= x[i0.., k0:k1] . w[j.., k0:k1] for RB weight rows and XB x rows.
template <int RB, int XB>
RUNNEL_INLINE void tile(const MatmulArgs& a, int64_t j, int64_t i0, int64_t k0, int64_t k1,
                        bool first) {
  const float* w[RB];
  for (int r = 0; r < RB; ++r)
    w[r] = reinterpret_cast<const float*>(static_cast<const char*>(a.w) + (j + r) * a.ldw);
  const float* x[XB];
  for (int c = 0; c < XB; ++c) x[c] = a.x + (i0 + c) * a.ldx;
  VF acc[RB][XB];
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < XB; ++c) acc[r][c] = VF::zero();
  const int64_t kv = k0 + (k1 - k0) / VF::N * VF::N;
  for (int64_t k = k0; k < kv; k += VF::N) {
    VF wv[RB];
    for (int r = 0; r < RB; ++r) wv[r] = VF::load(w[r] + k);
    for (int c = 0; c < XB; ++c) {
      const VF xv = VF::load(x[c] + k);
      for (int r = 0; r < RB; ++r) acc[r][c] = fma(wv[r], xv, acc[r][c]);
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < XB; ++c) {
      float s = acc[r][c].reduce_add();
      for (int64_t k = kv; k < k1; ++k) s += w[r][k] * x[c][k];
      float& out = a.y[(i0 + c) * a.ldy + j + r];
      if (first) out = s + (a.bias ? a.bias[j + r] : 0.0f);
      else out += s;
    }
}

template <int RB>
RUNNEL_INLINE void xrows(const MatmulArgs& a, int64_t j, int64_t i0, int64_t i1, int64_t k0,
                         int64_t k1, bool first) {
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) tile<RB, 4>(a, j, i, k0, k1, first);
  for (; i < i1; ++i) tile<RB, 1>(a, j, i, k0, k1, first);
}

void gemm(const MatmulArgs& a, int64_t n0, int64_t n1) {
  for (int64_t i0 = 0; i0 < a.m; i0 += MC) {
    const int64_t i1 = std::min(a.m, i0 + MC);
    for (int64_t k0 = 0; k0 < a.k || k0 == 0; k0 += KC) {
      const int64_t k1 = std::min(a.k, k0 + KC);
      const bool first = k0 == 0;
      int64_t j = n0;
      for (; j + 4 <= n1; j += 4) xrows<4>(a, j, i0, i1, k0, k1, first);
      for (; j < n1; ++j) xrows<1>(a, j, i0, i1, k0, k1, first);
      if (a.k == 0) break;
    }
  }
}

#endif

}  // namespace

void register_gemm(KernelTable& t) { t.gemm_f32 = gemm; }

}  // namespace runnel::cpu::RUNNEL_ISA_NS

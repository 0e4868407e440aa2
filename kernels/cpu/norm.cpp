// RMSNorm (LLaMA) and LayerNorm with optional affine weight and bias.
#include <cmath>

#include "cpu/kernels.hpp"
#include "cpu/simd.hpp"

namespace runnel::cpu::RUNNEL_ISA_NS {
namespace {

#if defined(RUNNEL_ISA_SCALAR)

void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const double r = 1.0 / std::sqrt(ss / double(n > 0 ? n : 1) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = float(x[i] * r * (w ? w[i] : 1.0f));
}

void layernorm(const float* x, const float* w, const float* b, float* y, int64_t n, float eps) {
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= double(n > 0 ? n : 1);
  double var = 0;
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= double(n > 0 ? n : 1);
  const double r = 1.0 / std::sqrt(var + eps);
  for (int64_t i = 0; i < n; ++i)
    y[i] = float((x[i] - mean) * r * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f));
}

#else

float sum_squares(const float* x, int64_t n, float shift) {
  VF a0 = VF::zero(), a1 = VF::zero();
  const VF s = VF::set1(shift);
  int64_t i = 0;
  for (; i + 2 * VF::N <= n; i += 2 * VF::N) {
    const VF u = VF::load(x + i) - s, v = VF::load(x + i + VF::N) - s;
    a0 = fma(u, u, a0);
    a1 = fma(v, v, a1);
  }
  for (; i + VF::N <= n; i += VF::N) {
    const VF u = VF::load(x + i) - s;
    a0 = fma(u, u, a0);
  }
  float t = (a0 + a1).reduce_add();
  for (; i < n; ++i) t += (x[i] - shift) * (x[i] - shift);
  return t;
}

// y = (x - shift) * r * w + b
void scale_row(const float* x, const float* w, const float* b, float* y, int64_t n, float shift,
               float r) {
  const VF vs = VF::set1(shift), vr = VF::set1(r);
  int64_t i = 0;
  for (; i + VF::N <= n; i += VF::N) {
    VF v = (VF::load(x + i) - vs) * vr;
    if (w) v = v * VF::load(w + i);
    if (b) v = v + VF::load(b + i);
    v.store(y + i);
  }
  for (; i < n; ++i) y[i] = (x[i] - shift) * r * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
}

// sum(x[i]^2) with each square rounded to f32 and the sum kept in f64, as
// ggml's RMSNorm does: an f32 accumulator loses bits over a row, and the
// mean's last bit decides how the normalized row rounds.
double sum_squares_f64(const float* x, int64_t n) {
  int64_t i = 0;
#if defined(RUNNEL_ISA_AVX512)
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  for (; i + 16 <= n; i += 16) {
    const __m256 lo = _mm256_loadu_ps(x + i), hi = _mm256_loadu_ps(x + i + 8);
    a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm256_mul_ps(lo, lo)));
    a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_mul_ps(hi, hi)));
  }
  double lanes[8];
  _mm512_storeu_pd(lanes, _mm512_add_pd(a0, a1));
  double s = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
#else
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i), sq = _mm256_mul_ps(v, v);
    a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
    a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
  }
  const __m256d a = _mm256_add_pd(a0, a1);
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  double s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
#endif
  for (; i < n; ++i) s += double(x[i] * x[i]);
  return s;
}

void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  const float mean = float(sum_squares_f64(x, n) / double(n > 0 ? n : 1));
  const float r = 1.0f / std::sqrt(mean + eps);
  scale_row(x, w, nullptr, y, n, 0.0f, r);
}

void layernorm(const float* x, const float* w, const float* b, float* y, int64_t n, float eps) {
  VF acc = VF::zero();
  int64_t i = 0;
  for (; i + VF::N <= n; i += VF::N) acc = acc + VF::load(x + i);
  float s = acc.reduce_add();
  for (; i < n; ++i) s += x[i];
  const float mean = s / float(n > 0 ? n : 1);
  const float var = sum_squares(x, n, mean) / float(n > 0 ? n : 1);
  scale_row(x, w, b, y, n, mean, 1.0f / std::sqrt(var + eps));
}

#endif

}  // namespace

void register_norm(KernelTable& t) {
  t.rmsnorm = rmsnorm;
  t.layernorm = layernorm;
}

}  // namespace runnel::cpu::RUNNEL_ISA_NS

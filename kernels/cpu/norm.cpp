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

void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  const float ss = sum_squares(x, n, 0.0f);
  const float r = 1.0f / std::sqrt(ss / float(n > 0 ? n : 1) + eps);
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

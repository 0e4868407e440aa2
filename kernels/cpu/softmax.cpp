// Numerically stable softmax with scale, an ALiBi slope and a causal limit.
#include <cmath>

#include "cpu/kernels.hpp"
#include "cpu/simd.hpp"

namespace runnel::cpu::RUNNEL_ISA_NS {
namespace {

#if defined(RUNNEL_ISA_SCALAR)

void softmax(const float* x, float* y, int64_t n, int64_t n_valid, float scale, float slope) {
  if (n_valid > n) n_valid = n;
  double mx = -INFINITY;
  for (int64_t j = 0; j < n_valid; ++j) mx = std::fmax(mx, double(scale) * x[j] + double(slope) * j);
  double sum = 0;
  for (int64_t j = 0; j < n_valid; ++j) sum += std::exp(double(scale) * x[j] + double(slope) * j - mx);
  for (int64_t j = 0; j < n_valid; ++j)
    y[j] = float(std::exp(double(scale) * x[j] + double(slope) * j - mx) / sum);
  for (int64_t j = n_valid < 0 ? 0 : n_valid; j < n; ++j) y[j] = 0.0f;
}

#else

void softmax(const float* x, float* y, int64_t n, int64_t n_valid, float scale, float slope) {
  if (n_valid > n) n_valid = n;
  if (n_valid < 0) n_valid = 0;
  const VF vs = VF::set1(scale), vsl = VF::set1(slope);
  int64_t j = 0;
  VF vmax = VF::set1(-INFINITY);
  for (; j + VF::N <= n_valid; j += VF::N)
    vmax = max(vmax, fma(VF::load(x + j), vs, VF::iota(float(j)) * vsl));
  float mx = vmax.reduce_max();
  for (; j < n_valid; ++j) mx = std::fmax(mx, scale * x[j] + slope * float(j));
  const VF vm = VF::set1(mx);
  VF vsum = VF::zero();
  j = 0;
  for (; j + VF::N <= n_valid; j += VF::N) {
    const VF e = exp(fma(VF::load(x + j), vs, VF::iota(float(j)) * vsl) - vm);
    e.store(y + j);
    vsum = vsum + e;
  }
  float sum = vsum.reduce_add();
  for (; j < n_valid; ++j) {
    const float e = std::exp(scale * x[j] + slope * float(j) - mx);
    y[j] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
  const VF vi = VF::set1(inv);
  j = 0;
  for (; j + VF::N <= n_valid; j += VF::N) (VF::load(y + j) * vi).store(y + j);
  for (; j < n_valid; ++j) y[j] *= inv;
  for (j = n_valid; j < n; ++j) y[j] = 0.0f;
}

#endif

}  // namespace

void register_softmax(KernelTable& t) { t.softmax = softmax; }

}  // namespace runnel::cpu::RUNNEL_ISA_NS

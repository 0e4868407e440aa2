// Roofline probes: streaming read bandwidth and register-only FMA throughput,
// in the same ISA as the kernels they are compared with.
#include "cpu/kernels.hpp"
#include "cpu/simd.hpp"

namespace runnel::cpu::RUNNEL_ISA_NS {
namespace {

float read_probe(const float* p, int64_t n) {
#if defined(RUNNEL_ISA_SCALAR)
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) { s0 += p[i]; s1 += p[i + 1]; s2 += p[i + 2]; s3 += p[i + 3]; }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
#else
  VF a0 = VF::zero(), a1 = VF::zero(), a2 = VF::zero(), a3 = VF::zero();
  int64_t i = 0;
  for (; i + 4 * VF::N <= n; i += 4 * VF::N) {
    a0 = a0 + VF::load(p + i);
    a1 = a1 + VF::load(p + i + VF::N);
    a2 = a2 + VF::load(p + i + 2 * VF::N);
    a3 = a3 + VF::load(p + i + 3 * VF::N);
  }
  float s = (a0 + a1 + a2 + a3).reduce_add();
  for (; i < n; ++i) s += p[i];
  return s;
#endif
}

// Returns a value depending on every FMA; performs iters * flops_per_iter() flops.
float fma_probe(int64_t iters) {
#if defined(RUNNEL_ISA_SCALAR)
  float a[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  for (int64_t i = 0; i < iters; ++i)
    for (float& x : a) x = x * 0.999999f + 1e-7f;
  return a[0] + a[7];
#else
  VF a[12];
  for (int j = 0; j < 12; ++j) a[j] = VF::set1(float(j));
  const VF m = VF::set1(0.999999f), c = VF::set1(1e-7f);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) a[j] = fma(a[j], m, c);
  VF s = a[0];
  for (int j = 1; j < 12; ++j) s = s + a[j];
  return s.reduce_add();
#endif
}

}  // namespace

void register_probe(KernelTable& t) {
  t.read_probe = read_probe;
  t.fma_probe = fma_probe;
#if defined(RUNNEL_ISA_SCALAR)
  t.fma_probe_flops = 8 * 2;
#else
  t.fma_probe_flops = 12 * 2 * VF::N;
#endif
}

}  // namespace runnel::cpu::RUNNEL_ISA_NS

// Element-wise residual add.
#include "cpu/kernels.hpp"
#include "cpu/simd.hpp"

namespace runnel::cpu::RUNNEL_ISA_NS {
namespace {

void add(const float* a, const float* b, float* y, int64_t n) {
  int64_t i = 0;
#if !defined(RUNNEL_ISA_SCALAR)
  for (; i + VF::N <= n; i += VF::N) (VF::load(a + i) + VF::load(b + i)).store(y + i);
#endif
  for (; i < n; ++i) y[i] = a[i] + b[i];
}

}  // namespace

void register_elementwise(KernelTable& t) { t.add = add; }

}  // namespace runnel::cpu::RUNNEL_ISA_NS

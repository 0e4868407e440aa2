// ReLU, exact GELU, tanh GELU, SiLU and fused SwiGLU.
#include <cmath>

#include "cpu/kernels.hpp"
#include "cpu/simd.hpp"

namespace runnel::cpu::RUNNEL_ISA_NS {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kInvSqrt2 = 0.7071067811865476f;

inline float relu_s(float x) { return x > 0.0f ? x : 0.0f; }
inline float gelu_s(float x) { return float(0.5 * x * (1.0 + std::erf(double(x) * kInvSqrt2))); }
inline float gelu_tanh_s(float x) {
  const double u = kSqrt2OverPi * (double(x) + 0.044715 * double(x) * x * x);
  return float(0.5 * x * (1.0 + std::tanh(u)));
}
inline float silu_s(float x) { return float(double(x) / (1.0 + std::exp(-double(x)))); }

#if !defined(RUNNEL_ISA_SCALAR)
RUNNEL_INLINE VF relu_v(VF x) { return max(x, VF::zero()); }
RUNNEL_INLINE VF gelu_v(VF x) {
  return VF::set1(0.5f) * x * (VF::set1(1.0f) + erf(x * VF::set1(kInvSqrt2)));
}
RUNNEL_INLINE VF gelu_tanh_v(VF x) {
  const VF u = VF::set1(kSqrt2OverPi) * fma(VF::set1(0.044715f) * x, x * x, x);
  return VF::set1(0.5f) * x * (VF::set1(1.0f) + tanh(u));
}
// x / (1 + exp(-x)) with ggml's exp, as llama.cpp's SiLU and SwiGLU.
RUNNEL_INLINE VF silu_v(VF x) { return x / (VF::set1(1.0f) + exp_ggml(VF::zero() - x)); }
#endif

template <float (*S)(float)
#if !defined(RUNNEL_ISA_SCALAR)
          , VF (*V)(VF)
#endif
          >
void apply(const float* x, float* y, int64_t n) {
  int64_t i = 0;
#if !defined(RUNNEL_ISA_SCALAR)
  for (; i + VF::N <= n; i += VF::N) V(VF::load(x + i)).store(y + i);
#endif
  for (; i < n; ++i) y[i] = S(x[i]);
}

#if defined(RUNNEL_ISA_SCALAR)
#define RUNNEL_ACT(s, v) apply<s>
#else
#define RUNNEL_ACT(s, v) apply<s, v>
#endif

void activation(Activation kind, const float* x, float* y, int64_t n) {
  switch (kind) {
    case Activation::Relu: return RUNNEL_ACT(relu_s, relu_v)(x, y, n);
    case Activation::Gelu: return RUNNEL_ACT(gelu_s, gelu_v)(x, y, n);
    case Activation::GeluTanh: return RUNNEL_ACT(gelu_tanh_s, gelu_tanh_v)(x, y, n);
    case Activation::Silu: return RUNNEL_ACT(silu_s, silu_v)(x, y, n);
  }
}

void swiglu(const float* gate, const float* up, float* y, int64_t n) {
  int64_t i = 0;
#if !defined(RUNNEL_ISA_SCALAR)
  for (; i + VF::N <= n; i += VF::N) (silu_v(VF::load(gate + i)) * VF::load(up + i)).store(y + i);
#endif
  for (; i < n; ++i) y[i] = silu_s(gate[i]) * up[i];
}

}  // namespace

void register_activation(KernelTable& t) {
  t.activation = activation;
  t.swiglu = swiglu;
}

}  // namespace runnel::cpu::RUNNEL_ISA_NS

// Rotary position embedding, in the GPT-NeoX (halves) and GPT-J (pairs) layouts.
#include "cpu/kernels.hpp"
#include "cpu/simd.hpp"

namespace runnel::cpu::RUNNEL_ISA_NS {
namespace {

void rope(float* x, int64_t n_heads, int64_t head_stride, int64_t rot_dim, const float* cos,
          const float* sin, RopeStyle style) {
  const int64_t half = rot_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_stride;
    if (style == RopeStyle::NeoX) {
      int64_t i = 0;
#if !defined(RUNNEL_ISA_SCALAR)
      for (; i + VF::N <= half; i += VF::N) {
        const VF a = VF::load(v + i), b = VF::load(v + half + i);
        const VF c = VF::load(cos + i), s = VF::load(sin + i);
        (a * c - b * s).store(v + i);
        fma(a, s, b * c).store(v + half + i);
      }
#endif
      for (; i < half; ++i) {
        const float a = v[i], b = v[half + i];
        v[i] = a * cos[i] - b * sin[i];
        v[half + i] = a * sin[i] + b * cos[i];
      }
    } else {
      for (int64_t i = 0; i < half; ++i) {
        const float a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = a * cos[i] - b * sin[i];
        v[2 * i + 1] = a * sin[i] + b * cos[i];
      }
    }
  }
}

}  // namespace

void register_rope(KernelTable& t) { t.rope = rope; }

}  // namespace runnel::cpu::RUNNEL_ISA_NS

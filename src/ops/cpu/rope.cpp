// Rotary embeddings on the CPU.
#include <algorithm>
#include <cmath>
#include <string>

#include "common.hpp"
#include "ops_cpu.hpp"

namespace runnel::ops::cpu_impl {
using namespace detail;

void rope(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& inv_freq_t,
          RopeStyle style, float theta_scale) {
  expect_cpu(x, "rope", "x");
  expect_dtype(x, DType::F32, "rope", "x");
  expect_ndim(x, 3, "rope", "x");
  const int64_t n_tok = x.dim(0), n_heads = x.dim(1), head_dim = x.dim(2);
  expect_ndim(inv_freq_t, 1, "rope", "inv_freq");
  const int64_t half = inv_freq_t.dim(0), rot = 2 * half;
  const float* inv_freq = f32_vector(inv_freq_t, half, "rope", "inv_freq");
  if (positions.ndim() != 1 || positions.dim(0) != n_tok)
    throw Error("rope: positions " + positions.shape_str() + " for " + std::to_string(n_tok) +
                " tokens");
  const int32_t* pos = i32_vector(positions, n_tok, "rope", "positions");
  if (rot == 0 || rot > head_dim)
    throw Error("rope: rotary dimension " + std::to_string(rot) + " does not fit head_dim " +
                std::to_string(head_dim));
  if (x.stride_bytes(2) != 4 || x.stride_bytes(1) % 4 != 0 || x.stride_bytes(0) % 4 != 0)
    throw Error("rope: x " + x.shape_str() + " must be contiguous within each head");
  if (n_tok == 0) return;
  const int64_t head_stride = x.stride_bytes(1) / 4, tok_stride = x.stride_bytes(0) / 4;
  float* base = x.data_as<float>();
  auto fn = K().rope;
  // Each thread's cos / sin row lives in the context's scratch.
  const int nt = int(std::min<int64_t>(ctx.pool.size(), n_tok));
  float* scratch = ctx.scratch(size_t(nt) * size_t(rot));
  auto body = [&](int t, int n) {
    if (t >= nt) return;
    float* cs = scratch + size_t(t) * size_t(rot);
    const int64_t t0 = n_tok * t / nt, t1 = n_tok * (t + 1) / nt;
    (void)n;
    for (int64_t tok = t0; tok < t1; ++tok) {
      const float p = float(pos[tok]);
      if (theta_scale > 0.0f) {
        float a = p;
        for (int64_t i = 0; i < half; ++i, a *= theta_scale) {
          cs[i] = std::cos(a);
          cs[half + i] = std::sin(a);
        }
      } else {
        for (int64_t i = 0; i < half; ++i) {
          const float a = p * inv_freq[i];
          cs[i] = std::cos(a);
          cs[half + i] = std::sin(a);
        }
      }
      fn(base + tok * tok_stride, n_heads, head_stride, rot, cs, cs + half, style);
    }
  };
  if (nt <= 1)
    body(0, 1);
  else
    ctx.pool.run(body);
}

}  // namespace runnel::ops::cpu_impl

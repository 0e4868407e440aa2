// Rotary embeddings (with HF's scaling rules) and ALiBi slopes.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common.hpp"

namespace runnel::ops {
using namespace detail;

std::vector<float> rope_inv_freq(const RopeConfig& cfg, int64_t seq_len) {
  if (cfg.rot_dim <= 0 || cfg.rot_dim % 2 != 0)
    throw Error("rope: rotary dimension " + std::to_string(cfg.rot_dim) + " must be positive and even");
  if (!(cfg.theta > 0.0f)) throw Error("rope: theta must be positive");
  const int64_t half = cfg.rot_dim / 2;
  float base = cfg.theta;
  if (cfg.scaling == RopeScaling::Dynamic && seq_len > cfg.max_positions) {
    // NTK-aware: grow the base with the sequence length (HF transformers).
    const double d = double(cfg.rot_dim);
    const double f = double(cfg.factor);
    base = float(double(cfg.theta) *
                 std::pow(f * double(seq_len) / double(cfg.max_positions) - (f - 1.0), d / (d - 2.0)));
  }
  std::vector<float> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float e = float(2 * i) / float(cfg.rot_dim);
    inv[size_t(i)] = 1.0f / std::pow(base, e);
  }
  switch (cfg.scaling) {
    case RopeScaling::None:
    case RopeScaling::Dynamic:
      break;
    case RopeScaling::Linear:
      if (!(cfg.factor > 0.0f)) throw Error("rope_scaling.factor must be positive");
      for (float& f : inv) f /= cfg.factor;
      break;
    case RopeScaling::Llama3: {
      if (!(cfg.factor > 0.0f) || !(cfg.high_freq_factor > cfg.low_freq_factor))
        throw Error("rope_scaling (llama3): need factor > 0 and high_freq_factor > low_freq_factor");
      const float old_ctx = float(cfg.original_max_positions);
      const float low_wavelen = old_ctx / cfg.low_freq_factor;
      const float high_wavelen = old_ctx / cfg.high_freq_factor;
      for (float& f : inv) {
        const float wavelen = 2.0f * float(M_PI) / f;
        if (wavelen > low_wavelen) {
          f = f / cfg.factor;
        } else if (wavelen >= high_wavelen) {
          const float smooth = (old_ctx / wavelen - cfg.low_freq_factor) /
                               (cfg.high_freq_factor - cfg.low_freq_factor);
          f = (1.0f - smooth) * f / cfg.factor + smooth * f;
        }
      }
      break;
    }
  }
  if (!cfg.freq_factors.empty()) {
    if (int64_t(cfg.freq_factors.size()) != half)
      throw Error("rope: " + std::to_string(cfg.freq_factors.size()) +
                  " frequency factors (rope_freqs) for rotary dimension " +
                  std::to_string(cfg.rot_dim) + ": expected rot_dim / 2 = " + std::to_string(half));
    for (int64_t i = 0; i < half; ++i) {
      const float f = cfg.freq_factors[size_t(i)];
      if (!(f > 0.0f) || !std::isfinite(f))
        throw Error("rope: frequency factor (rope_freqs) [" + std::to_string(i) +
                    "] = " + std::to_string(f) + " must be finite and positive");
      inv[size_t(i)] /= f;
    }
  }
  return inv;
}

float rope_theta_scale(const RopeConfig& cfg) {
  if (cfg.scaling != RopeScaling::None || !cfg.freq_factors.empty() || cfg.rot_dim <= 0 || !(cfg.theta > 0.0f))
    return 0.0f;
  return std::pow(cfg.theta, -2.0f / float(cfg.rot_dim));
}

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

std::vector<float> alibi_slopes(int64_t n_heads) {
  if (n_heads <= 0) throw Error("alibi: head count must be positive");
  // The BLOOM recipe: geometric slopes for the largest power of two <= n,
  // then every other slope of the next power of two for the remaining heads.
  int64_t cp = 1;
  while (cp * 2 <= n_heads) cp *= 2;
  const float base = float(std::pow(2.0, -std::pow(2.0, -(std::log2(double(cp)) - 3.0))));
  std::vector<float> s;
  s.reserve(size_t(n_heads));
  for (int64_t i = 1; i <= cp; ++i) s.push_back(std::pow(base, float(i)));
  if (cp != n_heads) {
    const float extra = float(std::pow(2.0, -std::pow(2.0, -(std::log2(double(2 * cp)) - 3.0))));
    const int64_t rem = std::min(cp, n_heads - cp);
    for (int64_t i = 0; i < rem; ++i) s.push_back(std::pow(extra, float(2 * i + 1)));
  }
  return s;
}

}  // namespace runnel::ops

// Host-side tables the model builds once: RoPE inverse frequencies (with
// HF's scaling rules), llama.cpp's theta scale, and ALiBi slopes.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "runnel/error.hpp"
#include "runnel/ops.hpp"

namespace runnel::ops {

std::vector<float> rope_inv_freq(const RopeConfig& cfg, int64_t seq_len) {
  std::vector<float> inv(size_t(std::max<int64_t>(cfg.rot_dim, 0) / 2));
  rope_inv_freq(cfg, seq_len, inv);
  return inv;
}

void rope_inv_freq(const RopeConfig& cfg, int64_t seq_len, std::span<float> inv) {
  if (cfg.rot_dim <= 0 || cfg.rot_dim % 2 != 0)
    throw Error("rope: rotary dimension " + std::to_string(cfg.rot_dim) + " must be positive and even");
  if (!(cfg.theta > 0.0f)) throw Error("rope: theta must be positive");
  const int64_t half = cfg.rot_dim / 2;
  if (int64_t(inv.size()) != half)
    throw Error("rope: " + std::to_string(inv.size()) + " frequencies asked for rotary dimension " +
                std::to_string(cfg.rot_dim));
  float base = cfg.theta;
  if (cfg.scaling == RopeScaling::Dynamic && seq_len > cfg.max_positions) {
    // NTK-aware: grow the base with the sequence length (HF transformers).
    const double d = double(cfg.rot_dim);
    const double f = double(cfg.factor);
    base = float(double(cfg.theta) *
                 std::pow(f * double(seq_len) / double(cfg.max_positions) - (f - 1.0), d / (d - 2.0)));
  }
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
}

float rope_theta_scale(const RopeConfig& cfg) {
  if (cfg.scaling != RopeScaling::None || !cfg.freq_factors.empty() || cfg.rot_dim <= 0 || !(cfg.theta > 0.0f))
    return 0.0f;
  return std::pow(cfg.theta, -2.0f / float(cfg.rot_dim));
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

#pragma once
// Shared helpers for the unit tests.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace runnel::test {

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A value no kernel produces from finite inputs: unwritten outputs stay NaN.
inline constexpr float kPoison = std::numeric_limits<float>::quiet_NaN();

inline std::vector<float> poisoned(size_t n) { return std::vector<float>(n, kPoison); }

// Normalised error: max |a - b| / max(max |b|, tiny).  NaN anywhere gives +inf.
inline double norm_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return num / den;
}
inline double norm_err(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  return norm_err(a.data(), b.data(), a.size());
}

}  // namespace runnel::test

#pragma once
// Op parameters: the small enums and structs that describe what an op
// computes (activation kind, RoPE style and scaling), shared by the model
// configuration (config.hpp), the ops (ops.hpp) and the kernel tables.  Plain
// data only: this header must stay free of tensors, threads and devices, so
// that config.hpp and the kernels can include it without the thread pool.
#include <cstdint>
#include <vector>

namespace runnel {

enum class Activation : unsigned char { Relu, Gelu, GeluTanh, Silu };
enum class RopeStyle : unsigned char {
  NeoX,  // rotate halves (x[i], x[i + d/2]): HF LLaMA, GPT-NeoX
  GptJ,  // rotate pairs (x[2i], x[2i + 1]): GPT-J, Meta's original LLaMA, llama2.c
};
enum class RopeScaling : unsigned char { None, Linear, Dynamic, Llama3 };

struct RopeConfig {
  int64_t rot_dim = 0;        // rotated dims per head (even)
  float theta = 10000.0f;
  RopeScaling scaling = RopeScaling::None;
  float factor = 1.0f;
  // llama3
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int64_t original_max_positions = 8192;
  // dynamic: scaling starts once the sequence exceeds this
  int64_t max_positions = 2048;
  // Empty, or rot_dim / 2 divisors of the inverse frequencies, applied after
  // the scaling above (GGUF's rope_freqs.weight, as LLaMA 3.1 files carry).
  std::vector<float> freq_factors;
};

}  // namespace runnel

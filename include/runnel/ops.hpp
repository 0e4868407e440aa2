#pragma once
// Ops: the checked front of the kernel layer.  Each op takes tensor views,
// checks dtypes and shapes (throwing runnel::Error on any mismatch), splits the
// work over the context's thread pool and calls the selected ISA's kernels.
// Outputs are written through views; ops never allocate tensors.
#include <cstdint>
#include <span>
#include <vector>

#include "runnel/op_params.hpp"
#include "runnel/tensor.hpp"
#include "runnel/thread_pool.hpp"

namespace runnel {

// What ops run on: a thread pool (and, later, a device stream).
struct Context {
  explicit Context(int n_threads);
  ThreadPool pool;
  // Products with at least this many rows of x go to oneDNN (or the blocked
  // fallback); fewer rows use the memory-bound small-batch kernels.
  int64_t gemm_min_rows = 16;
  bool use_dnnl = true;  // false forces runnel's own blocked kernel
  // Many rows against Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 weights: int8 activations and the
  // VNNI kernel where the CPU has it (false: f32 activations, as for f16).
  bool use_qgemm = true;
  // ... from this many rows on, even below gemm_min_rows: repacking the
  // weights once per call pays off against the small-batch int8 kernels.
  int64_t qgemm_min_rows = 16;
  // Quantized products take the dot-product kernels at every row count (no
  // int8 GEMM, no f32 fallback): their per-block order is ggml's, so prompts
  // sum as llama.cpp sums them (slower prompts).
  bool llama_cpp_order = false;

  // Grows and returns per-call scratch of at least n floats.
  float* scratch(size_t n);

 private:
  std::vector<float> scratch_;
};

namespace ops {

// y[m, n] = x[m, k] w[n, k]^T (+ bias[n]).  x, y, bias: f32.  w: f32, f16, bf16.
void matmul(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);

// Row-wise over the last dimension.  x, y: [..., n] f32; w, b: [n] f32.
void rmsnorm(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y, float eps);
void layernorm(Context& ctx, const Tensor& x, const Tensor* w, const Tensor* b, const Tensor& y,
               float eps);

// Inverse frequencies [rot_dim / 2] as HF transformers computes them, for a
// sequence of `seq_len` tokens (which only matters for dynamic scaling),
// each divided by its freq_factors entry when there are any (as llama.cpp).
std::vector<float> rope_inv_freq(const RopeConfig& cfg, int64_t seq_len);
// theta^(-2 / rot_dim) where cfg leaves the frequencies unscaled (no scaling,
// no freq_factors), else 0.  Given to rope, it makes the angles
// p * theta_scale^i by repeated multiplication, as llama.cpp computes them.
float rope_theta_scale(const RopeConfig& cfg);
// Rotates x [n_tok, n_heads, head_dim] f32 in place; token t sits at
// positions[t].  Only the first rot_dim = 2 * inv_freq.size() dims rotate.
// Angles: p * inv_freq[i], or with theta_scale > 0 (see rope_theta_scale)
// p * theta_scale * ... * theta_scale (i factors).
void rope(Context& ctx, const Tensor& x, std::span<const int32_t> positions,
          std::span<const float> inv_freq, RopeStyle style, float theta_scale = 0.0f);

// ALiBi slopes for n_heads, including head counts that are not powers of two.
std::vector<float> alibi_slopes(int64_t n_heads);

// y[r, j] = softmax_j(scale * x[r, j]) over [rows, n].  With `causal`, row r
// only sees j <= r + causal_offset (later entries become 0).
void softmax(Context& ctx, const Tensor& x, const Tensor& y, float scale, bool causal = false,
             int64_t causal_offset = 0);

void activation(Context& ctx, Activation kind, const Tensor& x, const Tensor& y);
void swiglu(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& y);  // silu(gate) * up
void add(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& y);

// y[i, :] = table[ids[i], :] as f32.  table: [vocab, d] f32/f16/bf16.
void embedding(Context& ctx, const Tensor& table, std::span<const int32_t> ids, const Tensor& y);

// Converts a tensor to another float dtype (same shape).
void convert(Context& ctx, const Tensor& x, const Tensor& y);

// A KV cache seen by attention: k and v are [n_blocks, block_size, n_kv_heads,
// head_dim] (f32 or f16); token t of the sequence lives in block
// block_table[t / block_size], or in block t / block_size when block_table is
// empty (a contiguous cache is one block of n_ctx tokens).
struct KvView {
  Tensor k, v;
  std::span<const int32_t> block_table;
};

// Causal attention: q, out [n_q, n_heads, head_dim] f32; query i is at
// position pos0 + i and sees keys 0 .. pos0 + i, which must already be in the
// cache.  n_heads must be a multiple of n_kv_heads (grouped-query attention).
// alibi_slopes is empty or [n_heads].
void attention(Context& ctx, const Tensor& q, const KvView& kv, int64_t pos0, float scale,
               std::span<const float> alibi_slopes, const Tensor& out);

}  // namespace ops
}  // namespace runnel

#pragma once
// Ops: the checked front of the kernel layer.  Each op takes tensor views,
// checks that they are all on one device and calls that device's
// implementation (src/ops/cpu/ for host memory; a device without one is an
// error).  The CPU implementation checks dtypes and shapes (throwing
// runnel::Error on any mismatch), splits the work over the context's thread
// pool and calls the selected ISA's kernels.  Outputs are written through
// views; ops never allocate tensors.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "runnel/backend.hpp"
#include "runnel/device.hpp"
#include "runnel/op_params.hpp"
#include "runnel/tensor.hpp"
#include "runnel/thread_pool.hpp"

namespace runnel {

// The CPU implementation's knobs for the products.
struct CpuTuning {
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
};

// Wall time inside each op front, per op and (for matmul) weight dtype, when a
// Context points at one (`runnel bench --profile`).  On the CPU an op's time
// includes its threads' wait at the end of the op.  Not thread-safe: one
// forward pass at a time.
struct OpProfile {
  struct Entry {
    const char* op = "";
    DType dtype = DType::F32;  // matmul: the weights'; other ops: f32
    int64_t calls = 0;
    int64_t ns = 0;
  };
  std::vector<Entry> entries;  // in first-call order
  void add(const char* op, DType dtype, int64_t ns);
  int64_t total_ns() const;
};

// What ops run on: a device, the backend that holds its memory, and that
// device's resources.  Every context has a host thread pool: the CPU's ops
// run on it, and host-side work (conversion at load, sampling) uses it.
class Context {
 public:
  // The CPU, with n_threads threads.
  explicit Context(int n_threads);
  // `device` with n_threads host threads.  Throws runnel::Error naming the
  // device when this build or this machine has no backend for it.
  Context(Device device, int n_threads);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  Device device() const { return device_; }
  // Allocates, copies and synchronises memory on device().
  Backend& backend() const { return *backend_; }
  // Null on the CPU.
  DeviceResources* resources() const { return resources_.get(); }

  ThreadPool pool;
  CpuTuning cpu;
  // When set, every op adds its wall time here.
  OpProfile* profile = nullptr;

  // Grows and returns per-call host scratch of at least n floats.
  float* scratch(size_t n);

 private:
  Device device_ = Device::CPU;
  Backend* backend_ = nullptr;
  std::unique_ptr<DeviceResources> resources_;
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
// The same into `out` [rot_dim / 2], allocating nothing.
void rope_inv_freq(const RopeConfig& cfg, int64_t seq_len, std::span<float> out);
// theta^(-2 / rot_dim) where cfg leaves the frequencies unscaled (no scaling,
// no freq_factors), else 0.  Given to rope, it makes the angles
// p * theta_scale^i by repeated multiplication, as llama.cpp computes them.
float rope_theta_scale(const RopeConfig& cfg);
// Rotates x [n_tok, n_heads, head_dim] f32 in place (each head contiguous,
// heads and tokens at any stride); token t sits at positions[t].  positions:
// [n_tok] i32; inv_freq: [rot_dim / 2] f32; only the first rot_dim dims rotate.
// Angles: p * inv_freq[i], or with theta_scale > 0 (see rope_theta_scale)
// p * theta_scale * ... * theta_scale (i factors).
void rope(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
          RopeStyle style, float theta_scale = 0.0f);

// ALiBi slopes for n_heads, including head counts that are not powers of two.
std::vector<float> alibi_slopes(int64_t n_heads);

// y[r, j] = softmax_j(scale * x[r, j]) over [rows, n].  With `causal`, row r
// only sees j <= r + causal_offset (later entries become 0).
void softmax(Context& ctx, const Tensor& x, const Tensor& y, float scale, bool causal = false,
             int64_t causal_offset = 0);

void activation(Context& ctx, Activation kind, const Tensor& x, const Tensor& y);
void swiglu(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& y);  // silu(gate) * up
void add(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& y);

// y[i, :] = table[ids[i], :] as f32.  table: [vocab, d] f32/f16/bf16 or a
// quantized type; ids: [n] i32 (each checked against vocab).  With an f32
// table this is the row gather of activations too.
void embedding(Context& ctx, const Tensor& table, const Tensor& ids, const Tensor& y);

// Converts a tensor to another float dtype (same shape).
void convert(Context& ctx, const Tensor& x, const Tensor& y);

// The KV cache of one layer: k and v are [n_blocks, block_size, n_kv_heads,
// head_dim] (f32 or f16).  Token t of a sequence lives in row t % block_size
// of block block_table[t / block_size].  A contiguous cache is one block of
// its capacity.
struct KvPool {
  Tensor k, v;
};

// One forward step's view of the cache for a batch of B sequences, built once
// per step (and, on a GPU, uploaded once).  All i32:
//   block_tables [B, max_blocks]: row b holds sequence b's blocks (entries
//     past its length are not read);
//   seq_lens [B]: keys sequence b holds after this step's writes;
//   query_starts [B + 1]: sequence b's queries are rows query_starts[b] ..
//     query_starts[b + 1] of q, at the positions just before seq_lens[b].
struct KvBatch {
  Tensor block_tables, seq_lens, query_starts;
};

// Writes k, v [n, n_kv_heads, head_dim] f32 (heads contiguous, any token and
// head stride) into the pool rows `slots` [n] i32, slot = block * block_size
// + row, converted to the pool's dtype.
void kv_store(Context& ctx, const Tensor& k, const Tensor& v, const KvPool& pool,
              const Tensor& slots);

// Causal attention for a batch: q, out [n_q, n_heads, head_dim] f32 (q's heads
// contiguous, any token and head stride; out contiguous within a token).  A
// query at position p sees its sequence's keys 0 .. p, which must already be
// in the cache.  n_heads must be a multiple of n_kv_heads (grouped-query
// attention).  alibi_slopes is null or [n_heads] f32.
void attention(Context& ctx, const Tensor& q, const KvPool& pool, const KvBatch& batch,
               float scale, const Tensor* alibi_slopes, const Tensor& out);

}  // namespace ops
}  // namespace runnel

#pragma once
// The CPU kernel table.  Kernels take raw pointers and sizes; they know nothing
// of tensors or threads.  Every kernel source under kernels/cpu is compiled
// once per ISA (scalar, avx2, avx512) and fills its entries of a KernelTable
// through a register_<op>() function in namespace runnel::cpu::<isa>.
//
// Adding an op: add its entry here, write kernels/cpu/<op>.cpp with a scalar
// reference (#if RUNNEL_ISA_SCALAR) and a SIMD body, add its register call to
// RUNNEL_CPU_KERNEL_OPS below, and list the file in kernels/CMakeLists.txt.
#include <cstddef>
#include <cstdint>

#include "runnel/dtype.hpp"
#include "runnel/op_params.hpp"

namespace runnel::cpu {

enum class Isa : unsigned char { Scalar = 0, Avx2 = 1, Avx512 = 2 };
inline constexpr int kNumIsas = 3;
const char* isa_name(Isa isa);

// y[i, j] = sum_k x[i, k] * w[j, k] + bias[j], for i in [0, m), j in [n0, n1).
struct MatmulArgs {
  const float* x;     // [m, k] f32, rows ldx floats apart
  int64_t ldx;
  const void* w;      // [n, k] weight dtype, rows ldw bytes apart
  int64_t ldw;
  const float* bias;  // [n] f32 or null
  float* y;           // [m, n] f32, rows ldy floats apart
  int64_t ldy;
  int64_t m, k;
};
using MatmulFn = void (*)(const MatmulArgs& a, int64_t n0, int64_t n1);

// The same product with quantized weights over activations already quantized
// (from_f32[vec_dot_type] of each row of x): integer dot products per block.
struct QMatmulArgs {
  const void* xq;     // [m, k] in traits(w dtype).vec_dot_type, rows ldxq bytes apart
  int64_t ldxq;
  const void* w;      // [n, k] weight dtype, rows ldw bytes apart
  int64_t ldw;
  const float* bias;  // [n] f32 or null
  float* y;           // [m, n] f32, rows ldy floats apart
  int64_t ldy;
  int64_t m, k;
};
using QMatmulFn = void (*)(const QMatmulArgs& a, int64_t n0, int64_t n1);

// Many rows of x against block-quantized weights (Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1): x's rows quantized by qgemm_quant to int8 per block of 32, with
// per-block scales d (f16-exact) and s = d * sum(q).
struct QGemmArgs {
  const int8_t* xq;   // [m, k] int8, rows ldxq bytes apart
  int64_t ldxq;
  const float* xd;    // [m, k / 32] block scales, rows ldxs floats apart
  const float* xs;    // [m, k / 32] d * sum(q)
  int64_t ldxs;
  const void* w;      // [n, k] weight dtype, rows ldw bytes apart
  int64_t ldw;
  const float* bias;  // [n] f32 or null
  float* y;           // [m, n] f32, rows ldy floats apart
  int64_t ldy;
  int64_t m, k;
};
using QGemmFn = void (*)(const QGemmArgs& a, int64_t n0, int64_t n1);

using runnel::Activation;
using runnel::RopeStyle;

// Causal attention of n_q queries over a KV cache, for heads [h0, h1).
// Query i sits at position pos0 + i and sees keys 0 .. pos0 + i.
// K and V may be paged: token t lives in block block_table[t / block_size]
// (block_table null means one contiguous block).
struct AttentionArgs {
  const float* q;         // [n_q, n_heads, head_dim] f32
  int64_t q_tok_stride;   // floats between query tokens
  int64_t q_head_stride;  // floats between the heads of a query token
  float* out;             // [n_q, n_heads, head_dim] f32
  int64_t out_tok_stride; // floats between output tokens
  const void* k;          // cache base, dtype kv_dtype
  const void* v;
  DType kv_dtype;         // F32 or F16
  int64_t kv_tok_stride;  // bytes between tokens of a block
  int64_t kv_head_stride; // bytes between kv heads of a token
  int64_t block_size;     // tokens per block
  int64_t block_stride;   // bytes between blocks
  const int32_t* block_table;  // [ceil(n_kv / block_size)] or null
  int64_t n_q, n_heads, n_kv_heads, head_dim;
  int64_t pos0;           // position of query 0; keys 0 .. pos0 + n_q - 1 exist
  float scale;
  const float* alibi_slopes;  // [n_heads] or null
  // f16 caches on AVX-512: sum in the order ggml uses for a block of queries
  // (its GEMM) rather than for one (its dot product); see attention.cpp.
  bool block_order;
};
// `scratch` holds at least pos0 + n_q floats.
using AttentionFn = void (*)(const AttentionArgs& a, int64_t h0, int64_t h1, float* scratch);

struct KernelTable {
  Isa isa;
  // Row conversions, indexed by dtype.  Null where a dtype has none.
  void (*to_f32[kNumDTypes])(const void* src, float* dst, int64_t n);
  void (*from_f32[kNumDTypes])(const float* src, void* dst, int64_t n);
  // Activation quantizers, indexed by vec_dot_type (Q8_0, Q8_1, Q8_K): they
  // round as ggml's SIMD quantizers do (halves to even, x * 127 / max |x|),
  // where from_f32 rounds as the reference weight quantizers.
  void (*quant_act[kNumDTypes])(const float* src, void* dst, int64_t n);
  // Matrix-vector and small-batch products, indexed by the weight dtype:
  // over f32 activations, and (quantized weights) over int8 activations.
  // ops::matmul prefers qmatmul where both exist.
  MatmulFn matmul[kNumDTypes];
  QMatmulFn qmatmul[kNumDTypes];
  // Large products with quantized weights over int8 activations (null where
  // this ISA has none), and the row quantizer they take x from.
  QGemmFn qgemm[kNumDTypes];
  void (*qgemm_quant)(const float* x, int8_t* q, float* d, float* s, int64_t k);
  // Large products with f32 weights, blocked for cache (the oneDNN fallback).
  MatmulFn gemm_f32;
  // y = x / rms(x) * w (w may be null)
  void (*rmsnorm)(const float* x, const float* w, float* y, int64_t n, float eps);
  // y = (x - mean) / sqrt(var + eps) * w + b (w, b may be null)
  void (*layernorm)(const float* x, const float* w, const float* b, float* y, int64_t n,
                    float eps);
  // Rotates rot_dim leading dims of each of n_heads heads (head_stride floats
  // apart) in place; cos/sin have rot_dim / 2 entries for this position.
  void (*rope)(float* x, int64_t n_heads, int64_t head_stride, int64_t rot_dim,
               const float* cos, const float* sin, RopeStyle style);
  // y[j] = softmax_j(scale * x[j] + slope * j) over j < n_valid; y[j] = 0 for
  // n_valid <= j < n.  In place is allowed.
  void (*softmax)(const float* x, float* y, int64_t n, int64_t n_valid, float scale,
                  float slope);
  void (*activation)(Activation kind, const float* x, float* y, int64_t n);
  // y = silu(gate) * up
  void (*swiglu)(const float* gate, const float* up, float* y, int64_t n);
  // y = a + b
  void (*add)(const float* a, const float* b, float* y, int64_t n);
  AttentionFn attention;
  // Roofline probes (benchmarks): a streaming read of n floats, and a chain
  // of FMAs doing iters * fma_probe_flops flops.
  float (*read_probe)(const float* p, int64_t n);
  float (*fma_probe)(int64_t iters);
  int64_t fma_probe_flops;
};

// The table for the ISA chosen at start-up (cpuid, or RUNNEL_CPU_ISA).
const KernelTable& kernels();
// The table of one ISA, or null when this CPU cannot run it.
const KernelTable* kernels_for(Isa isa);
Isa selected_isa();
bool isa_supported(Isa isa);
// Forces an ISA (tests, benchmarks); throws if the CPU cannot run it.
void select_isa(Isa isa);

// X-macro of the ops: each kernel file defines register_<op>(KernelTable&) in
// every ISA namespace.
#define RUNNEL_CPU_KERNEL_OPS(X) \
  X(convert)                     \
  X(matmul)                      \
  X(gemm)                        \
  X(qgemm)                       \
  X(norm)                        \
  X(rope)                        \
  X(softmax)                     \
  X(activation)                  \
  X(elementwise)                 \
  X(attention)                   \
  X(probe)

#define RUNNEL_DECLARE_REGISTER(op) void register_##op(KernelTable& t);
namespace scalar { RUNNEL_CPU_KERNEL_OPS(RUNNEL_DECLARE_REGISTER) }
namespace avx2 { RUNNEL_CPU_KERNEL_OPS(RUNNEL_DECLARE_REGISTER) }
namespace avx512 { RUNNEL_CPU_KERNEL_OPS(RUNNEL_DECLARE_REGISTER) }
#undef RUNNEL_DECLARE_REGISTER

}  // namespace runnel::cpu

#pragma once
// The CPU implementations of the ops, called by the fronts in src/ops/ops.cpp
// once every tensor is known to be in host memory.  Each checks its dtypes and
// shapes, splits the work over the context's pool and calls the kernels
// selected for this CPU (kernels/cpu).  Signatures are the fronts'.
#include "runnel/ops.hpp"

namespace runnel::ops::cpu_impl {

void matmul(Context& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);
void rmsnorm(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& y, float eps);
void layernorm(Context& ctx, const Tensor& x, const Tensor* w, const Tensor* b, const Tensor& y,
               float eps);
void rope(Context& ctx, const Tensor& x, const Tensor& positions, const Tensor& inv_freq,
          RopeStyle style, float theta_scale);
void softmax(Context& ctx, const Tensor& x, const Tensor& y, float scale, bool causal,
             int64_t causal_offset);
void activation(Context& ctx, Activation kind, const Tensor& x, const Tensor& y);
void swiglu(Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& y);
void add(Context& ctx, const Tensor& a, const Tensor& b, const Tensor& y);
void embedding(Context& ctx, const Tensor& table, const Tensor& ids, const Tensor& y);
void convert(Context& ctx, const Tensor& x, const Tensor& y);
void kv_store(Context& ctx, const Tensor& k, const Tensor& v, const KvPool& pool,
              const Tensor& slots);
void attention(Context& ctx, const Tensor& q, const KvPool& pool, const KvBatch& batch,
               float scale, const Tensor* alibi_slopes, const Tensor& out);

}  // namespace runnel::ops::cpu_impl

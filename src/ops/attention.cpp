// Causal attention over a KV view (contiguous or paged).
#include <string>

#include "common.hpp"

namespace runnel::ops {
using namespace detail;

void attention(Context& ctx, const Tensor& q, const KvView& kv, int64_t pos0, float scale,
               std::span<const float> alibi_slopes, const Tensor& out) {
  const char* op = "attention";
  expect_cpu(q, op, "q");
  expect_cpu(out, op, "out");
  expect_dtype(q, DType::F32, op, "q");
  expect_dtype(out, DType::F32, op, "out");
  expect_ndim(q, 3, op, "q");
  same_shape(q, out, op, "q", "out");
  expect_ndim(kv.k, 4, op, "k cache");
  same_shape(kv.k, kv.v, op, "k cache", "v cache");
  if (kv.k.dtype() != kv.v.dtype() || (kv.k.dtype() != DType::F32 && kv.k.dtype() != DType::F16))
    throw Error("attention: the KV cache must be f32 or f16, got " + kv.k.shape_str() + " / " + kv.v.shape_str());
  for (int i = 0; i < 4; ++i)
    if (kv.k.stride_bytes(i) != kv.v.stride_bytes(i))
      throw Error("attention: k and v caches must have the same layout");
  const int64_t n_q = q.dim(0), n_heads = q.dim(1), head_dim = q.dim(2);
  const int64_t n_blocks = kv.k.dim(0), block_size = kv.k.dim(1), n_kv_heads = kv.k.dim(2);
  const int64_t esize = traits(kv.k.dtype()).type_size;
  if (kv.k.dim(3) != head_dim)
    throw Error("attention: cache head_dim " + std::to_string(kv.k.dim(3)) + " differs from q's " +
                std::to_string(head_dim));
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0)
    throw Error("attention: " + std::to_string(n_heads) + " query heads are not a multiple of " +
                std::to_string(n_kv_heads) + " kv heads");
  if (q.stride_bytes(2) != 4 || q.stride_bytes(1) != 4 * head_dim || out.stride_bytes(2) != 4 ||
      out.stride_bytes(1) != 4 * head_dim || q.stride_bytes(0) % 4 || out.stride_bytes(0) % 4)
    throw Error("attention: q and out must be contiguous within each token");
  if (kv.k.stride_bytes(3) != esize) throw Error("attention: cache rows must be contiguous");
  if (!alibi_slopes.empty() && int64_t(alibi_slopes.size()) != n_heads)
    throw Error("attention: " + std::to_string(alibi_slopes.size()) + " ALiBi slopes for " +
                std::to_string(n_heads) + " heads");
  if (pos0 < 0 || block_size <= 0) throw Error("attention: negative position or empty cache blocks");
  const int64_t n_kv = pos0 + n_q;
  const int64_t blocks_needed = (n_kv + block_size - 1) / block_size;
  if (kv.block_table.empty()) {
    if (blocks_needed > n_blocks)
      throw Error("attention: " + std::to_string(n_kv) + " tokens do not fit the cache of " +
                  std::to_string(n_blocks * block_size));
  } else {
    if (int64_t(kv.block_table.size()) < blocks_needed)
      throw Error("attention: the block table has " + std::to_string(kv.block_table.size()) +
                  " entries, " + std::to_string(blocks_needed) + " are needed");
    for (int64_t b = 0; b < blocks_needed; ++b)
      if (kv.block_table[size_t(b)] < 0 || kv.block_table[size_t(b)] >= n_blocks)
        throw Error("attention: block table entry " + std::to_string(b) + " = " +
                    std::to_string(kv.block_table[size_t(b)]) + " is outside the pool");
  }
  if (n_q == 0) return;

  cpu::AttentionArgs a{};
  a.q = q.data_as<const float>();
  a.q_tok_stride = q.stride_bytes(0) / 4;
  a.out = out.data_as<float>();
  a.out_tok_stride = out.stride_bytes(0) / 4;
  a.k = kv.k.data();
  a.v = kv.v.data();
  a.kv_dtype = kv.k.dtype();
  a.kv_tok_stride = kv.k.stride_bytes(1);
  a.kv_head_stride = kv.k.stride_bytes(2);
  a.block_size = block_size;
  a.block_stride = kv.k.stride_bytes(0);
  a.block_table = kv.block_table.empty() ? nullptr : kv.block_table.data();
  a.n_heads = n_heads;
  a.n_kv_heads = n_kv_heads;
  a.head_dim = head_dim;
  a.scale = scale;
  a.alibi_slopes = alibi_slopes.empty() ? nullptr : alibi_slopes.data();
  a.block_order = n_q >= 2;

  const int nt = ctx.pool.size();
  float* scratch = ctx.scratch(size_t(nt) * size_t(n_kv));
  auto fn = K().attention;
  // One work item per (query, head); each thread has its own score row.
  ctx.pool.run([&](int t, int n) {
    const int64_t items = n_q * n_heads;
    const int64_t b = items * t / n, e = items * (t + 1) / n;
    float* sc = scratch + size_t(t) * size_t(n_kv);
    for (int64_t it = b; it < e; ++it) {
      const int64_t i = it / n_heads, h = it % n_heads;
      cpu::AttentionArgs ai = a;
      ai.q = a.q + i * a.q_tok_stride;
      ai.out = a.out + i * a.out_tok_stride;
      ai.n_q = 1;
      ai.pos0 = pos0 + i;
      fn(ai, h, h + 1, sc);
    }
  });
}

}  // namespace runnel::ops

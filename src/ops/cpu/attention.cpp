// Causal attention and the cache write for a batch of sequences over one
// layer's KV pool (paged, or one block for a contiguous cache).
#include <algorithm>
#include <string>

#include "common.hpp"
#include "ops_cpu.hpp"

namespace runnel::ops::cpu_impl {
using namespace detail;

namespace {

void check_pool(const KvPool& kv, const char* op) {
  expect_cpu(kv.k, op, "k cache");
  expect_cpu(kv.v, op, "v cache");
  expect_ndim(kv.k, 4, op, "k cache");
  same_shape(kv.k, kv.v, op, "k cache", "v cache");
  if (kv.k.dtype() != kv.v.dtype() || (kv.k.dtype() != DType::F32 && kv.k.dtype() != DType::F16))
    throw Error(std::string(op) + ": the KV cache must be f32 or f16, got " + kv.k.shape_str() +
                " / " + kv.v.shape_str());
  for (int i = 0; i < 4; ++i)
    if (kv.k.stride_bytes(i) != kv.v.stride_bytes(i))
      throw Error(std::string(op) + ": k and v caches must have the same layout");
  if (kv.k.stride_bytes(3) != traits(kv.k.dtype()).type_size)
    throw Error(std::string(op) + ": cache rows must be contiguous");
  if (kv.k.dim(1) <= 0) throw Error(std::string(op) + ": empty cache blocks");
}

// Two f32 [tokens, heads, head_dim] operands of one shape, in host memory.
void check_f32_pair(const Tensor& a, const Tensor& b, const char* op, const char* an,
                    const char* bn) {
  expect_cpu(a, op, an);
  expect_cpu(b, op, bn);
  expect_dtype(a, DType::F32, op, an);
  expect_dtype(b, DType::F32, op, bn);
  expect_ndim(a, 3, op, an);
  same_shape(a, b, op, an, bn);
}

}  // namespace

void kv_store(Context& ctx, const Tensor& k, const Tensor& v, const KvPool& pool,
              const Tensor& slots) {
  const char* op = "kv_store";
  check_pool(pool, op);
  check_f32_pair(k, v, op, "k", "v");
  const int64_t n = k.dim(0), n_kv_heads = pool.k.dim(2), head_dim = pool.k.dim(3);
  if (k.dim(1) != n_kv_heads || k.dim(2) != head_dim)
    throw Error("kv_store: k " + k.shape_str() + " does not match the cache's " +
                std::to_string(n_kv_heads) + " kv heads of " + std::to_string(head_dim));
  for (const Tensor* t : {&k, &v})
    if (t->stride_bytes(2) != 4 || t->stride_bytes(1) % 4 || t->stride_bytes(0) % 4)
      throw Error("kv_store: k and v must be contiguous within each head");
  const int32_t* slot = i32_vector(slots, n, op, "slots");
  const int64_t bs = pool.k.dim(1), n_slots = pool.k.dim(0) * bs;
  for (int64_t i = 0; i < n; ++i)
    if (slot[i] < 0 || slot[i] >= n_slots)
      throw Error("kv_store: slot " + std::to_string(slot[i]) + " of token " + std::to_string(i) +
                  " is outside the pool of " + std::to_string(n_slots));
  auto from = K().from_f32[int(pool.k.dtype())];
  const int64_t bstride = pool.k.stride_bytes(0), tstride = pool.k.stride_bytes(1),
                hstride = pool.k.stride_bytes(2);
  const char* kb = static_cast<const char*>(k.data());
  const char* vb = static_cast<const char*>(v.data());
  char* kp = static_cast<char*>(pool.k.data());
  char* vp = static_cast<char*>(pool.v.data());
  // One row per (token, kv head), converted as ops::convert converts it.
  ctx.pool.parallel_for(n * n_kv_heads, row_grain(head_dim), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r / n_kv_heads, h = r % n_kv_heads;
      const int64_t at = (slot[i] / bs) * bstride + (slot[i] % bs) * tstride + h * hstride;
      from(reinterpret_cast<const float*>(kb + i * k.stride_bytes(0) + h * k.stride_bytes(1)),
           kp + at, head_dim);
      from(reinterpret_cast<const float*>(vb + i * v.stride_bytes(0) + h * v.stride_bytes(1)),
           vp + at, head_dim);
    }
  });
}

void attention(Context& ctx, const Tensor& q, const KvPool& kv, const KvBatch& batch,
               float scale, const Tensor* alibi_slopes, const Tensor& out) {
  const char* op = "attention";
  check_pool(kv, op);
  check_f32_pair(q, out, op, "q", "out");
  const int64_t n_q = q.dim(0), n_heads = q.dim(1), head_dim = q.dim(2);
  const int64_t n_blocks = kv.k.dim(0), block_size = kv.k.dim(1), n_kv_heads = kv.k.dim(2);
  if (kv.k.dim(3) != head_dim)
    throw Error("attention: cache head_dim " + std::to_string(kv.k.dim(3)) + " differs from q's " +
                std::to_string(head_dim));
  if (n_kv_heads <= 0 || n_heads % n_kv_heads != 0)
    throw Error("attention: " + std::to_string(n_heads) + " query heads are not a multiple of " +
                std::to_string(n_kv_heads) + " kv heads");
  if (q.stride_bytes(2) != 4 || q.stride_bytes(1) % 4 || q.stride_bytes(0) % 4 ||
      out.stride_bytes(2) != 4 || out.stride_bytes(1) != 4 * head_dim || out.stride_bytes(0) % 4)
    throw Error("attention: q's heads and out's tokens must be contiguous");
  const float* slopes = nullptr;
  if (alibi_slopes) slopes = f32_vector(*alibi_slopes, n_heads, op, "alibi slopes");

  // The batch: every sequence's table and lengths, checked before any work.
  const Tensor& bt = batch.block_tables;
  expect_cpu(bt, op, "block tables");
  expect_dtype(bt, DType::I32, op, "block tables");
  expect_ndim(bt, 2, op, "block tables");
  if (bt.stride_bytes(1) != 4 || bt.stride_bytes(0) % 4)
    throw Error("attention: block tables " + bt.shape_str() + " must have contiguous rows");
  const int64_t B = bt.dim(0), max_blocks = bt.dim(1), bt_stride = bt.stride_bytes(0) / 4;
  const int32_t* tables = bt.data_as<const int32_t>();
  const int32_t* lens = i32_vector(batch.seq_lens, B, op, "sequence lengths");
  const int32_t* starts = i32_vector(batch.query_starts, B + 1, op, "query starts");
  if (starts[0] != 0 || starts[B] != n_q)
    throw Error("attention: query starts run from " + std::to_string(starts[0]) + " to " +
                std::to_string(starts[B]) + ", not 0 to " + std::to_string(n_q));
  int64_t max_kv = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t nq = int64_t(starts[b + 1]) - starts[b], len = lens[b];
    if (nq < 0) throw Error("attention: query starts decrease at sequence " + std::to_string(b));
    if (nq == 0) continue;
    if (len < nq)
      throw Error("attention: sequence " + std::to_string(b) + " has " + std::to_string(nq) +
                  " queries but only " + std::to_string(len) + " keys");
    const int64_t need = (len + block_size - 1) / block_size;
    if (need > max_blocks)
      throw Error("attention: sequence " + std::to_string(b) + " needs " + std::to_string(need) +
                  " blocks, its table has " + std::to_string(max_blocks));
    for (int64_t j = 0; j < need; ++j) {
      const int32_t blk = tables[b * bt_stride + j];
      if (blk < 0 || blk >= n_blocks)
        throw Error("attention: block table entry " + std::to_string(j) + " of sequence " +
                    std::to_string(b) + " = " + std::to_string(blk) + " is outside the pool of " +
                    std::to_string(n_blocks));
    }
    max_kv = std::max(max_kv, len);
  }
  if (n_q == 0) return;

  cpu::AttentionArgs a{};
  a.q = q.data_as<const float>();
  a.q_tok_stride = q.stride_bytes(0) / 4;
  a.q_head_stride = q.stride_bytes(1) / 4;
  a.out = out.data_as<float>();
  a.out_tok_stride = out.stride_bytes(0) / 4;
  a.k = kv.k.data();
  a.v = kv.v.data();
  a.kv_dtype = kv.k.dtype();
  a.kv_tok_stride = kv.k.stride_bytes(1);
  a.kv_head_stride = kv.k.stride_bytes(2);
  a.block_size = block_size;
  a.block_stride = kv.k.stride_bytes(0);
  a.n_heads = n_heads;
  a.n_kv_heads = n_kv_heads;
  a.head_dim = head_dim;
  a.scale = scale;
  a.alibi_slopes = slopes;

  const int nt = ctx.pool.size();
  float* scratch = ctx.scratch(size_t(nt) * size_t(max_kv));
  auto fn = K().attention;
  // One work item per (query, head) over the whole batch; each thread has its
  // own score row.
  ctx.pool.run([&](int t, int n) {
    const int64_t items = n_q * n_heads;
    const int64_t first = items * t / n, last = items * (t + 1) / n;
    float* sc = scratch + size_t(t) * size_t(max_kv);
    int64_t b = 0;
    for (int64_t it = first; it < last; ++it) {
      const int64_t i = it / n_heads, h = it % n_heads;
      while (starts[b + 1] <= i) ++b;
      const int64_t nq = int64_t(starts[b + 1]) - starts[b];
      cpu::AttentionArgs ai = a;
      ai.q = a.q + i * a.q_tok_stride;
      ai.out = a.out + i * a.out_tok_stride;
      ai.n_q = 1;
      ai.pos0 = int64_t(lens[b]) - nq + (i - starts[b]);
      ai.block_table = tables + b * bt_stride;
      // f16 caches on AVX-512 sum a prompt's queries in ggml's GEMM order.
      ai.block_order = nq >= 2;
      fn(ai, h, h + 1, sc);
    }
  });
}

}  // namespace runnel::ops::cpu_impl

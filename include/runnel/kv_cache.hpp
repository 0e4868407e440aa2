#pragma once
// KV caches.  KvCache is one sequence's cache as the model sees it: a pool per
// layer, a block table, and reserve(), the one call that allocates or copies.
// ContiguousKvCache is one sequence in one block per layer.  PagedKvCache is
// the paged manager: one pool of fixed-size blocks per layer for K and V, a
// block table per sequence, and reference-counted blocks so sequences share a
// prompt prefix and fork without copying.  A shared block is copied when a
// sequence reserves positions in it for writing (copy-on-write of the last,
// partially filled block after a fork).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runnel/backend.hpp"
#include "runnel/buffer.hpp"
#include "runnel/config.hpp"
#include "runnel/error.hpp"
#include "runnel/ops.hpp"
#include "runnel/tensor.hpp"

namespace runnel {

// The K/V storage of one sequence, seen by the model.  Accessors have no side
// effects; only reserve() allocates, grows or copies, and the model calls it
// before the first op of a forward pass.
class KvCache {
 public:
  virtual ~KvCache() = default;
  virtual DType dtype() const = 0;
  // Makes positions [0, n_tokens) addressable, keeping what is stored, and
  // positions [write_from, n_tokens) writable (shared blocks there are
  // copied).  write_from < 0: from the positions reserved before.
  virtual void reserve(int64_t n_tokens, int64_t write_from = -1) = 0;
  // Most tokens the sequence can hold without its storage moving or growing.
  virtual int64_t capacity() const = 0;
  // Layer `layer`'s pool: k, v [n_blocks, block_size, n_kv_heads, head_dim].
  virtual ops::KvPool pool(int64_t layer) const = 0;
  // The sequence's blocks in that pool, in position order.
  virtual std::span<const int32_t> block_table() const = 0;
  // Caches with the same id share their pools (sequences of one PagedKvCache);
  // a batch of them runs one cache write and one attention call per layer.
  virtual const void* pool_id() const = 0;
};

// One sequence in one block of its capacity per layer, f32 or f16.  Growing
// (in reserve) reallocates and copies; reserve the whole length up front, or
// give max_tokens, to keep the storage in place.
class ContiguousKvCache final : public KvCache {
 public:
  // The storage comes from `backend` (null: the CPU's).
  ContiguousKvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, DType dtype,
                    int64_t max_tokens = 0 /* 0: unbounded */, Backend* backend = nullptr);
  DType dtype() const override { return dtype_; }
  void reserve(int64_t n_tokens, int64_t write_from = -1) override;
  int64_t capacity() const override { return capacity_; }
  ops::KvPool pool(int64_t layer) const override;
  std::span<const int32_t> block_table() const override;
  const void* pool_id() const override { return this; }

 private:
  int64_t n_layers_, n_kv_heads_, head_dim_, max_tokens_;
  DType dtype_;
  int64_t capacity_ = 0;
  int32_t table_[1] = {0};
  Backend* backend_;
  std::vector<std::shared_ptr<Buffer>> k_, v_;  // per layer [capacity, n_kv_heads, head_dim]
};

struct KvCacheOptions {
  int64_t n_layers = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  DType dtype = DType::F32;    // f32 or f16
  int64_t block_size = 16;     // tokens per block
  int64_t n_blocks = 0;        // blocks in the pool (see blocks_for_tokens / blocks_for_bytes)
  int64_t max_seq_tokens = 0;  // longest sequence (the model's context); 0: no limit
  Backend* backend = nullptr;  // where the pools live (the model's Context's); null: the CPU

  // The dimensions of `config`'s cache; n_blocks is left 0.
  static KvCacheOptions for_model(const ModelConfig& config, DType dtype = DType::F32,
                                  int64_t block_size = 16);
  // Bytes one block takes over every layer, K and V.
  int64_t block_bytes() const;
  // Blocks that hold `tokens` tokens (--ctx-size), and blocks that fit in
  // `bytes` (--kv-cache-mb).  Both throw runnel::Error when the result is 0.
  int64_t blocks_for_tokens(int64_t tokens) const;
  int64_t blocks_for_bytes(int64_t bytes) const;
};

// The pool has no free block for a sequence.  The sequence keeps what it had;
// the others are untouched.  A scheduler can free or preempt and retry.
class KvCacheFull : public Error {
 public:
  KvCacheFull(int32_t seq, int64_t needed, int64_t free_blocks);
  int32_t seq() const { return seq_; }
  int64_t needed() const { return needed_; }

 private:
  int32_t seq_;
  int64_t needed_;
};

// A sequence would grow past KvCacheOptions::max_seq_tokens.
class ContextFull : public Error {
 public:
  ContextFull(int32_t seq, int64_t tokens, int64_t limit);
  int32_t seq() const { return seq_; }

 private:
  int32_t seq_;
};

class PagedKvCache {
 public:
  using SeqId = int32_t;

  explicit PagedKvCache(const KvCacheOptions& options);
  PagedKvCache(const PagedKvCache&) = delete;
  PagedKvCache& operator=(const PagedKvCache&) = delete;

  const KvCacheOptions& options() const { return o_; }

  // Sequences.  Ids of freed sequences are reused.
  SeqId add_sequence();
  // A new sequence sharing the first `n_tokens` positions of `parent` (-1: all
  // of them) without copying: its blocks are the parent's, with their counts raised.
  SeqId fork(SeqId parent, int64_t n_tokens = -1);
  // Ends a sequence (finished or cancelled) and releases its blocks.
  void free(SeqId seq);
  bool alive(SeqId seq) const;
  size_t n_sequences() const;

  // Makes positions [0, n_tokens) of `seq` addressable and positions
  // [write_from, n_tokens) writable: allocates the blocks still missing and
  // copies the shared blocks in that range (write_from < 0: from the positions
  // reserved before, so only the block the new positions start in).  All or
  // nothing: throws KvCacheFull or ContextFull and leaves `seq` as it was.
  void reserve(SeqId seq, int64_t n_tokens, int64_t write_from = -1);
  // Forgets positions from n_tokens on, releasing the blocks past them.
  void truncate(SeqId seq, int64_t n_tokens);
  int64_t n_tokens(SeqId seq) const;  // positions reserved
  std::span<const int32_t> block_table(SeqId seq) const;

  // Stores k, v [n, n_kv_heads, head_dim] f32 at positions [pos0, pos0 + n)
  // of `layer`, converted to the cache dtype (ops::kv_store).  The range must
  // be reserved for writing: a shared block there is an error.
  void store(Context& ctx, SeqId seq, int64_t layer, int64_t pos0, const Tensor& k,
             const Tensor& v);
  // Layer `layer`'s pool [n_blocks, block_size, n_kv_heads, head_dim].
  ops::KvPool pool(int64_t layer) const;
  // Most tokens one sequence can hold: max_seq_tokens, bounded by the pool.
  int64_t seq_capacity() const;

  // Accounting.
  int64_t n_blocks() const { return o_.n_blocks; }
  int64_t free_blocks() const { return int64_t(free_.size()); }
  int32_t ref_count(int32_t block) const;
  // Recounts every reference from the live block tables and checks the free
  // list against it; throws runnel::Error describing the first inconsistency.
  void check_consistency() const;

 private:
  struct Seq {
    bool alive = false;
    int64_t n_tokens = 0;
    std::vector<int32_t> blocks;
  };
  Seq& get(SeqId seq, const char* what);
  const Seq& get(SeqId seq, const char* what) const;
  int32_t take_block();
  void release(int32_t block);
  void copy_block(int32_t dst, int32_t src, int64_t rows);
  void make_writable(SeqId id, Seq& s, int64_t block_index);

  KvCacheOptions o_;
  int64_t max_table_ = 0;  // most blocks one sequence can hold
  size_t row_bytes_ = 0;  // one token of one layer: n_kv_heads * head_dim in dtype
  Backend* backend_;
  std::vector<std::shared_ptr<Buffer>> k_,
      v_;                      // per layer [n_blocks, block_size, n_kv_heads, head_dim]
  std::vector<int32_t> refs_;  // [n_blocks]
  std::vector<int32_t> free_;  // stack of free block ids
  std::vector<Seq> seqs_;
  std::vector<SeqId> free_ids_;
};

// One sequence of a PagedKvCache seen through the KvCache interface, so that
// Model::forward runs on it unchanged.  It does not own the sequence.
class PagedSequenceCache final : public KvCache {
 public:
  PagedSequenceCache(PagedKvCache& cache, PagedKvCache::SeqId seq) : cache_(&cache), seq_(seq) {}
  DType dtype() const override { return cache_->options().dtype; }
  void reserve(int64_t n_tokens, int64_t write_from = -1) override {
    cache_->reserve(seq_, n_tokens, write_from);
  }
  int64_t capacity() const override { return cache_->seq_capacity(); }
  ops::KvPool pool(int64_t layer) const override { return cache_->pool(layer); }
  std::span<const int32_t> block_table() const override { return cache_->block_table(seq_); }
  const void* pool_id() const override { return cache_; }
  PagedKvCache::SeqId seq() const { return seq_; }

 private:
  PagedKvCache* cache_;
  PagedKvCache::SeqId seq_;
};

}  // namespace runnel

#pragma once
// The paged KV-cache manager: one pool of fixed-size blocks per layer for K and
// V, a block table per sequence, and reference-counted blocks so sequences
// share a prompt prefix and fork without copying.  A shared block is copied
// only when a sequence writes into it (copy-on-write of the last, partially
// filled block after a fork).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runnel/buffer.hpp"
#include "runnel/error.hpp"
#include "runnel/model.hpp"
#include "runnel/ops.hpp"
#include "runnel/tensor.hpp"

namespace runnel {

struct KvCacheOptions {
  int64_t n_layers = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  DType dtype = DType::F32;    // f32 or f16
  int64_t block_size = 16;     // tokens per block
  int64_t n_blocks = 0;        // blocks in the pool (see blocks_for_tokens / blocks_for_bytes)
  int64_t max_seq_tokens = 0;  // longest sequence (the model's context); 0: no limit

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

  // Makes positions [0, n_tokens) of `seq` writable: allocates the blocks
  // still missing and copies the shared block the new positions start in.
  // All or nothing: throws KvCacheFull or ContextFull and leaves `seq` as it was.
  void reserve(SeqId seq, int64_t n_tokens);
  // Forgets positions from n_tokens on, releasing the blocks past them.
  void truncate(SeqId seq, int64_t n_tokens);
  int64_t n_tokens(SeqId seq) const;  // positions reserved
  std::span<const int32_t> block_table(SeqId seq) const;

  // Stores k, v [n, n_kv_heads, head_dim] f32 at positions [pos0, pos0 + n)
  // of `layer`, converted to the cache dtype.  Shared blocks in the range are
  // copied first (which may throw KvCacheFull).
  void store(Context& ctx, SeqId seq, int64_t layer, int64_t pos0, const Tensor& k,
             const Tensor& v);
  // The rows of positions [pos0, pos0 + n) of `layer` as one view [n,
  // n_kv_heads, head_dim]; the range must lie within one block.
  Tensor keys(SeqId seq, int64_t layer, int64_t pos0, int64_t n);
  Tensor values(SeqId seq, int64_t layer, int64_t pos0, int64_t n);
  // What attention reads; the block table span stays valid until the
  // sequence's table changes (reserve, truncate, store into a shared block, free).
  ops::KvView view(SeqId seq, int64_t layer);

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
  Tensor rows(const std::vector<std::unique_ptr<HostBuffer>>& pool, SeqId seq, int64_t layer,
              int64_t pos0, int64_t n);

  KvCacheOptions o_;
  size_t row_bytes_ = 0;  // one token of one layer: n_kv_heads * head_dim in dtype
  std::vector<std::unique_ptr<HostBuffer>> k_,
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
  void reserve(int64_t n_tokens) override { cache_->reserve(seq_, n_tokens); }
  Tensor keys(int64_t layer, int64_t pos0, int64_t n) override {
    return cache_->keys(seq_, layer, pos0, n);
  }
  Tensor values(int64_t layer, int64_t pos0, int64_t n) override {
    return cache_->values(seq_, layer, pos0, n);
  }
  void store(Context& ctx, int64_t layer, int64_t pos0, const Tensor& k, const Tensor& v) override {
    cache_->store(ctx, seq_, layer, pos0, k, v);
  }
  ops::KvView view(int64_t layer) override { return cache_->view(seq_, layer); }
  PagedKvCache::SeqId seq() const { return seq_; }

 private:
  PagedKvCache* cache_;
  PagedKvCache::SeqId seq_;
};

}  // namespace runnel

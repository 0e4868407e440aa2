// The paged KV-cache manager: block pool, block tables, reference counts and
// copy-on-write.
#include "runnel/kv_cache.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>

namespace runnel {

// ---------------------------------------------------------------------------
// Options and errors

KvCacheOptions KvCacheOptions::for_model(const ModelConfig& config, DType dtype,
                                         int64_t block_size) {
  KvCacheOptions o;
  o.n_layers = config.n_layers;
  o.n_kv_heads = config.n_kv_heads;
  o.head_dim = config.head_dim;
  o.dtype = dtype;
  o.block_size = block_size;
  o.max_seq_tokens = config.max_positions;
  return o;
}

namespace {

void check_dims(const KvCacheOptions& o) {
  if (o.dtype != DType::F32 && o.dtype != DType::F16)
    throw Error(fmt::format("KV cache: dtype must be f32 or f16, not {}", dtype_name(o.dtype)));
  if (o.n_layers < 1 || o.n_kv_heads < 1 || o.head_dim < 1)
    throw Error(fmt::format("KV cache: bad dimensions: {} layers, {} kv heads, head_dim {}",
                            o.n_layers, o.n_kv_heads, o.head_dim));
  if (o.block_size < 1 || o.block_size > 4096)
    throw Error(fmt::format("KV cache: block size must be in [1, 4096], got {}", o.block_size));
  if (o.max_seq_tokens < 0)
    throw Error(fmt::format("KV cache: max_seq_tokens must be >= 0, got {}", o.max_seq_tokens));
  // Keep every byte count below 2^62.
  const int64_t limit = int64_t(1) << 30;
  if (o.n_layers > limit || o.n_kv_heads > limit || o.head_dim > limit ||
      o.n_kv_heads * o.head_dim > limit || o.n_layers * o.block_size > limit)
    throw Error("KV cache: dimensions too large");
}

}  // namespace

int64_t KvCacheOptions::block_bytes() const {
  check_dims(*this);
  const int64_t row = int64_t(row_bytes(dtype, n_kv_heads * head_dim));
  if (row > (int64_t(1) << 62) / (2 * n_layers * block_size))
    throw Error("KV cache: block size overflows");
  return 2 * n_layers * block_size * row;
}

int64_t KvCacheOptions::blocks_for_tokens(int64_t tokens) const {
  check_dims(*this);
  if (tokens < 1)
    throw Error(fmt::format("--ctx-size: expected a positive number, got {}", tokens));
  if (tokens > std::numeric_limits<int64_t>::max() - block_size)
    throw Error("--ctx-size: too large");
  return (tokens + block_size - 1) / block_size;
}

int64_t KvCacheOptions::blocks_for_bytes(int64_t bytes) const {
  const int64_t per = block_bytes();
  const int64_t n = bytes > 0 ? bytes / per : 0;
  if (n < 1)
    throw Error(fmt::format("--kv-cache-mb: {} bytes hold no block of {} tokens ({} bytes)", bytes,
                            block_size, per));
  return n;
}

KvCacheFull::KvCacheFull(int32_t seq, int64_t needed, int64_t free_blocks)
    : Error(fmt::format("KV cache full: sequence {} needs {} more block(s), {} free", seq, needed,
                        free_blocks)),
      seq_(seq),
      needed_(needed) {}

ContextFull::ContextFull(int32_t seq, int64_t tokens, int64_t limit)
    : Error(fmt::format("sequence {}: {} tokens exceed the context of {}", seq, tokens, limit)),
      seq_(seq) {}

// ---------------------------------------------------------------------------
// Contiguous cache

ContiguousKvCache::ContiguousKvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim,
                                     DType dtype, int64_t max_tokens, Backend* backend)
    : n_layers_(n_layers),
      n_kv_heads_(n_kv_heads),
      head_dim_(head_dim),
      max_tokens_(max_tokens),
      dtype_(dtype),
      backend_(backend ? backend : &cpu_backend()) {
  if (dtype != DType::F32 && dtype != DType::F16)
    throw Error("KV cache dtype must be f32 or f16, not " + std::string(dtype_name(dtype)));
  if (n_layers < 1 || n_kv_heads < 1 || head_dim < 1) throw Error("KV cache: bad dimensions");
  k_.resize(size_t(n_layers));
  v_.resize(size_t(n_layers));
}

void ContiguousKvCache::reserve(int64_t n_tokens, int64_t /*write_from: nothing is shared*/) {
  if (n_tokens <= capacity_) return;
  if (max_tokens_ > 0 && n_tokens > max_tokens_)
    throw Error(fmt::format("a sequence of {} tokens exceeds the model's {} positions", n_tokens,
                            max_tokens_));
  if (n_tokens > int64_t(std::numeric_limits<int32_t>::max()))
    throw Error(fmt::format("a sequence of {} tokens is too long", n_tokens));
  int64_t cap = std::max<int64_t>({n_tokens, 2 * capacity_, 64});
  if (max_tokens_ > 0) cap = std::min(cap, max_tokens_);
  cap = std::min<int64_t>(cap, std::numeric_limits<int32_t>::max());
  const size_t row = row_bytes(dtype_, n_kv_heads_ * head_dim_);
  for (int64_t l = 0; l < n_layers_; ++l) {
    for (auto* bufs : {&k_, &v_}) {
      std::shared_ptr<Buffer> nb = backend_->allocate(row * size_t(cap));
      if ((*bufs)[size_t(l)])
        backend_->copy(nb->data(), nb->device(), (*bufs)[size_t(l)]->data(), nb->device(),
                       row * size_t(capacity_));
      (*bufs)[size_t(l)] = std::move(nb);
    }
  }
  capacity_ = cap;
}

ops::KvPool ContiguousKvCache::pool(int64_t layer) const {
  if (layer < 0 || layer >= n_layers_ || capacity_ == 0)
    throw Error("KV cache: no storage for layer " + std::to_string(layer));
  ops::KvPool p;
  const Device dev = backend_->device();
  p.k = Tensor::view(k_[size_t(layer)]->data(), dtype_, {1, capacity_, n_kv_heads_, head_dim_},
                     dev);
  p.v = Tensor::view(v_[size_t(layer)]->data(), dtype_, {1, capacity_, n_kv_heads_, head_dim_},
                     dev);
  return p;
}

std::span<const int32_t> ContiguousKvCache::block_table() const {
  return capacity_ > 0 ? std::span<const int32_t>(table_, 1) : std::span<const int32_t>();
}

// ---------------------------------------------------------------------------
// Pool

PagedKvCache::PagedKvCache(const KvCacheOptions& options)
    : o_(options), backend_(options.backend ? options.backend : &cpu_backend()) {
  const int64_t per = o_.block_bytes();  // checks the dimensions
  if (o_.n_blocks < 1 || o_.n_blocks > std::numeric_limits<int32_t>::max())
    throw Error(fmt::format("KV cache: the pool needs 1 .. 2^31-1 blocks, got {}", o_.n_blocks));
  if (o_.n_blocks > (int64_t(1) << 62) / per) throw Error("KV cache: pool size overflows");
  row_bytes_ = row_bytes(o_.dtype, o_.n_kv_heads * o_.head_dim);
  const size_t layer_bytes = row_bytes_ * size_t(o_.block_size) * size_t(o_.n_blocks);
  for (int64_t l = 0; l < o_.n_layers; ++l) {
    k_.push_back(backend_->allocate(layer_bytes));
    v_.push_back(backend_->allocate(layer_bytes));
  }
  max_table_ = o_.n_blocks;
  if (o_.max_seq_tokens > 0)
    max_table_ = std::min(max_table_, (o_.max_seq_tokens + o_.block_size - 1) / o_.block_size);
  refs_.assign(size_t(o_.n_blocks), 0);
  free_.reserve(size_t(o_.n_blocks));
  // Lowest ids on top of the stack, so a fresh pool hands out 0, 1, 2, ...
  for (int64_t b = o_.n_blocks - 1; b >= 0; --b) free_.push_back(int32_t(b));
}

PagedKvCache::Seq& PagedKvCache::get(SeqId seq, const char* what) {
  return const_cast<Seq&>(static_cast<const PagedKvCache*>(this)->get(seq, what));
}

const PagedKvCache::Seq& PagedKvCache::get(SeqId seq, const char* what) const {
  if (seq < 0 || size_t(seq) >= seqs_.size() || !seqs_[size_t(seq)].alive)
    throw Error(fmt::format("KV cache {}: no sequence {}", what, seq));
  return seqs_[size_t(seq)];
}

int32_t PagedKvCache::take_block() {
  const int32_t b = free_.back();  // callers check free_ first
  free_.pop_back();
  refs_[size_t(b)] = 1;
  return b;
}

void PagedKvCache::release(int32_t block) {
  if (--refs_[size_t(block)] == 0) free_.push_back(block);
}

void PagedKvCache::copy_block(int32_t dst, int32_t src, int64_t rows) {
  const size_t block = row_bytes_ * size_t(o_.block_size);
  const size_t bytes = row_bytes_ * size_t(rows);
  for (int64_t l = 0; l < o_.n_layers; ++l)
    for (auto* pool : {&k_, &v_}) {
      auto* base = static_cast<uint8_t*>((*pool)[size_t(l)]->data());
      const Device dev = backend_->device();
      backend_->copy(base + size_t(dst) * block, dev, base + size_t(src) * block, dev, bytes);
    }
}

PagedKvCache::SeqId PagedKvCache::add_sequence() {
  SeqId id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    if (seqs_.size() >= size_t(std::numeric_limits<int32_t>::max()))
      throw Error("KV cache: too many sequences");
    id = SeqId(seqs_.size());
    seqs_.emplace_back();
  }
  Seq& s = seqs_[size_t(id)];
  s.alive = true;
  s.n_tokens = 0;
  s.blocks.clear();
  // The table never reallocates while the sequence grows (a decode step
  // allocates nothing).
  s.blocks.reserve(size_t(std::min<int64_t>(max_table_, int64_t(1) << 16)));
  return id;
}

PagedKvCache::SeqId PagedKvCache::fork(SeqId parent, int64_t n_tokens) {
  const Seq& p = get(parent, "fork");
  if (n_tokens < 0) n_tokens = p.n_tokens;
  if (n_tokens > p.n_tokens)
    throw Error(fmt::format("KV cache fork: sequence {} has {} tokens, {} requested", parent,
                            p.n_tokens, n_tokens));
  const size_t nb = size_t((n_tokens + o_.block_size - 1) / o_.block_size);
  std::vector<int32_t> shared(p.blocks.begin(), p.blocks.begin() + ptrdiff_t(nb));
  const SeqId id = add_sequence();  // may move seqs_: `p` is not used past here
  Seq& s = seqs_[size_t(id)];
  s.blocks.assign(shared.begin(), shared.end());
  s.n_tokens = n_tokens;
  for (int32_t b : s.blocks) ++refs_[size_t(b)];
  return id;
}

void PagedKvCache::free(SeqId seq) {
  Seq& s = get(seq, "free");
  for (int32_t b : s.blocks) release(b);
  s.blocks.clear();
  s.blocks.shrink_to_fit();
  s.n_tokens = 0;
  s.alive = false;
  free_ids_.push_back(seq);
}

bool PagedKvCache::alive(SeqId seq) const {
  return seq >= 0 && size_t(seq) < seqs_.size() && seqs_[size_t(seq)].alive;
}

size_t PagedKvCache::n_sequences() const { return seqs_.size() - free_ids_.size(); }

void PagedKvCache::reserve(SeqId seq, int64_t n_tokens, int64_t write_from) {
  Seq& s = get(seq, "reserve");
  if (write_from < 0 || write_from > s.n_tokens) write_from = s.n_tokens;
  if (n_tokens > s.n_tokens) {
    if (o_.max_seq_tokens > 0 && n_tokens > o_.max_seq_tokens)
      throw ContextFull(seq, n_tokens, o_.max_seq_tokens);
    if (n_tokens > int64_t(std::numeric_limits<int32_t>::max()))
      throw ContextFull(seq, n_tokens, std::numeric_limits<int32_t>::max());
  }
  const int64_t end = std::max(n_tokens, s.n_tokens);
  if (write_from >= n_tokens && end == s.n_tokens) return;
  const int64_t have = int64_t(s.blocks.size());
  const int64_t want = (end + o_.block_size - 1) / o_.block_size;
  // Blocks already held that the written range touches must be this
  // sequence's alone before anyone writes there (after a fork, the partly
  // filled last block is shared).
  const int64_t first = write_from / o_.block_size;
  const int64_t last =
      write_from < n_tokens ? std::min(have, (n_tokens + o_.block_size - 1) / o_.block_size) : 0;
  int64_t shared = 0;
  for (int64_t i = first; i < last; ++i) shared += refs_[size_t(s.blocks[size_t(i)])] > 1;
  const int64_t needed = (want - have) + shared;
  if (needed > free_blocks()) throw KvCacheFull(seq, needed, free_blocks());
  for (int64_t i = first; i < last; ++i) make_writable(seq, s, i);
  while (int64_t(s.blocks.size()) < want) s.blocks.push_back(take_block());
  s.n_tokens = end;
}

void PagedKvCache::truncate(SeqId seq, int64_t n_tokens) {
  Seq& s = get(seq, "truncate");
  if (n_tokens < 0) throw Error(fmt::format("KV cache truncate: negative length {}", n_tokens));
  if (n_tokens >= s.n_tokens) return;
  const size_t keep = size_t((n_tokens + o_.block_size - 1) / o_.block_size);
  for (size_t i = keep; i < s.blocks.size(); ++i) release(s.blocks[i]);
  s.blocks.resize(keep);
  s.n_tokens = n_tokens;
}

int64_t PagedKvCache::n_tokens(SeqId seq) const { return get(seq, "n_tokens").n_tokens; }

std::span<const int32_t> PagedKvCache::block_table(SeqId seq) const {
  return get(seq, "block_table").blocks;
}

void PagedKvCache::make_writable(SeqId id, Seq& s, int64_t block_index) {
  const int32_t old = s.blocks[size_t(block_index)];
  if (refs_[size_t(old)] == 1) return;
  if (free_.empty()) throw KvCacheFull(id, 1, 0);
  const int32_t fresh = take_block();
  const int64_t rows = std::min(o_.block_size, s.n_tokens - block_index * o_.block_size);
  if (rows > 0) copy_block(fresh, old, rows);
  s.blocks[size_t(block_index)] = fresh;
  release(old);
}

void PagedKvCache::store(Context& ctx, SeqId seq, int64_t layer, int64_t pos0, const Tensor& k,
                         const Tensor& v) {
  const Seq& s = get(seq, "store");
  expect_ndim(k, 3, "KV cache store", "k");
  expect_ndim(v, 3, "KV cache store", "v");
  const int64_t n = k.dim(0);
  if (v.dim(0) != n || k.dim(1) != o_.n_kv_heads || k.dim(2) != o_.head_dim ||
      v.dim(1) != o_.n_kv_heads || v.dim(2) != o_.head_dim)
    throw Error(fmt::format("KV cache store: k {} and v {} must be [n, {}, {}]", k.shape_str(),
                            v.shape_str(), o_.n_kv_heads, o_.head_dim));
  if (layer < 0 || layer >= o_.n_layers || pos0 < 0 || pos0 > s.n_tokens - n)
    throw Error(
        fmt::format("KV cache store: layer {} positions [{}, {}) outside sequence {} of {} "
                    "reserved tokens",
                    layer, pos0, pos0 + n, seq, s.n_tokens));
  const int64_t bs = o_.block_size;
  std::vector<int32_t> slots(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pos = pos0 + i;
    const int32_t blk = s.blocks[size_t(pos / bs)];
    if (refs_[size_t(blk)] > 1)
      throw Error(fmt::format("KV cache store: position {} of sequence {} is in shared block {}; "
                              "reserve it for writing first",
                              pos, seq, blk));
    slots[size_t(i)] = int32_t(int64_t(blk) * bs + pos % bs);
  }
  ops::kv_store(ctx, k, v, pool(layer), Tensor::view(slots.data(), DType::I32, {n}));
}

ops::KvPool PagedKvCache::pool(int64_t layer) const {
  if (layer < 0 || layer >= o_.n_layers)
    throw Error(fmt::format("KV cache: no layer {} (the cache has {})", layer, o_.n_layers));
  ops::KvPool p;
  const Device dev = backend_->device();
  p.k = Tensor::view(k_[size_t(layer)]->data(), o_.dtype,
                     {o_.n_blocks, o_.block_size, o_.n_kv_heads, o_.head_dim}, dev);
  p.v = Tensor::view(v_[size_t(layer)]->data(), o_.dtype,
                     {o_.n_blocks, o_.block_size, o_.n_kv_heads, o_.head_dim}, dev);
  return p;
}

int64_t PagedKvCache::seq_capacity() const { return max_table_ * o_.block_size; }

int32_t PagedKvCache::ref_count(int32_t block) const {
  if (block < 0 || block >= o_.n_blocks)
    throw Error(fmt::format("KV cache: no block {} (the pool has {})", block, o_.n_blocks));
  return refs_[size_t(block)];
}

void PagedKvCache::check_consistency() const {
  std::vector<int32_t> refs(refs_.size(), 0);
  size_t live = 0;
  for (size_t id = 0; id < seqs_.size(); ++id) {
    const Seq& s = seqs_[id];
    if (!s.alive) {
      if (!s.blocks.empty())
        throw Error(fmt::format("KV cache: dead sequence {} holds blocks", id));
      continue;
    }
    ++live;
    const int64_t want = (s.n_tokens + o_.block_size - 1) / o_.block_size;
    if (int64_t(s.blocks.size()) != want)
      throw Error(fmt::format("KV cache: sequence {} has {} tokens but {} blocks", id, s.n_tokens,
                              s.blocks.size()));
    for (int32_t b : s.blocks) {
      if (b < 0 || b >= o_.n_blocks)
        throw Error(fmt::format("KV cache: sequence {} refers to block {}", id, b));
      ++refs[size_t(b)];
    }
  }
  if (live != n_sequences()) throw Error("KV cache: sequence count mismatch");
  std::vector<char> is_free(refs_.size(), 0);
  for (int32_t b : free_) {
    if (b < 0 || b >= o_.n_blocks || is_free[size_t(b)])
      throw Error(fmt::format("KV cache: free list holds block {} twice or out of range", b));
    is_free[size_t(b)] = 1;
  }
  for (size_t b = 0; b < refs_.size(); ++b) {
    if (refs[b] != refs_[b])
      throw Error(
          fmt::format("KV cache: block {} has count {} but {} references", b, refs_[b], refs[b]));
    if ((refs[b] == 0) != bool(is_free[b]))
      throw Error(fmt::format("KV cache: block {} with {} references is {}on the free list", b,
                              refs[b], is_free[b] ? "" : "not "));
  }
}

}  // namespace runnel

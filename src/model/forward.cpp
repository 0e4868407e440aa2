// The forward pass of every family, from the bound slots and the config:
// the workspace, the step's integer inputs, and the ops of each layer.
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "model/model_impl.hpp"
#include "runnel/error.hpp"

namespace runnel {

using namespace model_detail;
using model::Slot;

namespace {

// Views into the workspace, on the device the context runs on.
Tensor view2(Device dev, float* p, int64_t rows, int64_t cols) {
  return Tensor::view(p, DType::F32, {rows, cols}, dev);
}
Tensor view3(Device dev, float* p, int64_t a, int64_t b, int64_t c) {
  return Tensor::view(p, DType::F32, {a, b, c}, dev);
}
const Tensor* opt(const Tensor& t) { return t.empty() ? nullptr : &t; }

// Writes an f32 tensor as a .npy file (row-major, little-endian).
void write_npy(const std::string& path, const Tensor& t) {
  std::string shape = "(";
  for (int i = 0; i < t.ndim(); ++i) shape += std::to_string(t.dim(i)) + ", ";
  shape += ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error(path + ": cannot write: " + std::strerror(errno));
  const uint16_t hlen = uint16_t(header.size());
  std::fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  std::fwrite(&hlen, 2, 1, f);
  std::fwrite(header.data(), 1, header.size(), f);
  const int64_t rows = t.rows(), n = t.dim(-1);
  for (int64_t r = 0; r < rows; ++r) std::fwrite(t.row(r), sizeof(float), size_t(n), f);
  std::fclose(f);
}

}  // namespace

void Model::Impl::norm(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y) {
  if (cfg.norm == NormKind::RmsNorm)
    ops::rmsnorm(*ctx, x, w, y, cfg.norm_eps);
  else
    ops::layernorm(*ctx, x, &w, opt(b), y, cfg.norm_eps);
}

namespace {

// `t` in memory of `backend`'s device: itself on the CPU, else a copy made
// once (kept in `keep`).  `placed` maps host addresses already copied, so a
// tied head shares its embedding's copy.
Tensor place(const Tensor& t, Backend& backend, std::vector<std::shared_ptr<Buffer>>& keep,
             std::map<const void*, void*>& placed) {
  if (t.empty() || t.device() == backend.device()) return t;
  if (!t.is_contiguous()) throw Error("placing the weights: a weight view is not contiguous");
  void*& at = placed[t.data()];
  if (!at) {
    std::shared_ptr<Buffer> buf = backend.allocate(t.nbytes());
    backend.copy(buf->data(), backend.device(), t.data(), t.device(), t.nbytes());
    at = buf->data();
    keep.push_back(std::move(buf));
  }
  std::array<int64_t, kMaxDims> shape{};
  for (int i = 0; i < t.ndim(); ++i) shape[size_t(i)] = t.dim(i);
  return Tensor::view(at, t.dtype(), shape.data(), t.ndim(), backend.device());
}

}  // namespace

void Model::Impl::prepare() {
  if (cfg.position == PositionKind::Alibi) alibi = ops::alibi_slopes(cfg.n_heads);
  if (cfg.position == PositionKind::Rope) rope_freq = ops::rope_inv_freq(cfg.rope, 0);
  if (!alibi.empty()) alibi_t = Tensor::view(alibi.data(), DType::F32, {int64_t(alibi.size())});
  if (!rope_freq.empty())
    rope_freq_t = Tensor::view(rope_freq.data(), DType::F32, {int64_t(rope_freq.size())});
  // Weights and tables move to the context's device once, here (on the CPU
  // they stay where they are: mapped from the file, or converted at load).
  Backend& be = ctx->backend();
  std::map<const void*, void*> placed;
  for (Tensor& t : global) t = place(t, be, placed_weights, placed);
  for (auto& layer : layers)
    for (Tensor& t : layer) t = place(t, be, placed_weights, placed);
  alibi_t = place(alibi_t, be, placed_weights, placed);
  rope_freq_t = place(rope_freq_t, be, placed_weights, placed);
  if (be.device() != Device::CPU) be.synchronize();
  groups.reserve(8);
}

void Model::Impl::dump(const Tensor& t, const char* name, int64_t layer) {
  if (dump_dir.empty()) return;
  const std::string file = layer >= 0
                               ? fmt::format("{}/{:04d}-{}-{}.npy", dump_dir, calls, name, layer)
                               : fmt::format("{}/{:04d}-{}.npy", dump_dir, calls, name);
  write_npy(file, t);
}

void Model::Impl::forward(std::span<const Model::BatchItem> items) {
  const ModelConfig& c = cfg;
  Context& cx = *ctx;
  const Device dev = cx.device();
  if (items.empty()) throw Error("forward: no sequences");
  // Validate every item before touching any cache.
  int64_t n = 0, R = 0;
  for (size_t b = 0; b < items.size(); ++b) {
    const Model::BatchItem& it = items[b];
    const int64_t ni = int64_t(it.ids.size());
    if (!it.cache) throw Error(fmt::format("forward: batch item {} has no KV cache", b));
    if (ni == 0) throw Error("forward: no tokens");
    if (it.pos0 < 0 || it.pos0 + ni > int64_t(INT32_MAX))
      throw Error("forward: position out of range");
    for (int32_t id : it.ids)
      if (id < 0 || id >= c.vocab_size)
        throw Error(
            fmt::format("token id {} is outside the vocabulary (size {})", id, c.vocab_size));
    if (c.position == PositionKind::Learned && it.pos0 + ni > c.max_positions)
      throw Error(fmt::format("a sequence of {} tokens exceeds max_position_embeddings = {}",
                              it.pos0 + ni, c.max_positions));
    for (size_t o = 0; o < b; ++o)
      if (items[o].cache == it.cache)
        throw Error("forward: two batch items share one KV cache");
    n += ni;
    if (it.logits || it.logits_view || it.hidden) R += it.which == Logits::All ? ni : 1;
  }
  // The only step that may allocate or copy cache memory: growth and
  // copy-on-write happen here, before the first op.
  int64_t max_capacity = 0;
  for (const Model::BatchItem& it : items) {
    it.cache->reserve(it.pos0 + int64_t(it.ids.size()), it.pos0);
    max_capacity = std::max(max_capacity, it.cache->capacity());
  }

  const int64_t H = c.hidden_size, E = c.embed_dim, QD = c.n_heads * c.head_dim;
  const int64_t KD = c.n_kv_heads * c.head_dim, F = c.ffn_dim, V = c.vocab_size;
  const bool fused = c.qkv_layout != QkvLayout::Separate;

  // Workspace: one arena, carved into named buffers.  It grows only when a
  // step is larger than every step before it.
  struct Part {
    float** ptr;
    int64_t floats;
  };
  float *x, *t, *a, *en, *q, *k, *v, *att, *qkv, *u, *g, *pe, *hx, *hn, *he, *lg;
  const Part parts[] = {
      {&x, n * H},
      {&t, n * H},
      {&a, n * H},
      {&en, c.embedding_norm == EmbeddingNorm::None && c.projection == EmbeddingProjection::None
                ? 0
                : 2 * n * E},
      {&q, fused ? 0 : n * QD},
      {&k, fused ? 0 : n * KD},
      {&v, fused ? 0 : n * KD},
      {&att, n * QD},
      {&qkv, fused ? n * 3 * QD : 0},
      {&u, n * F},
      {&g, c.mlp == MlpKind::Gated ? n * F : 0},
      {&pe, c.position == PositionKind::Learned ? n * H : 0},
      {&hx, R * H},
      {&hn, R * H},
      {&he, R * E},
      {&lg, R * V},
  };
  size_t total = 0;
  for (const Part& p : parts) total += (size_t(p.floats) + 15) / 16 * 16;
  if (total > ws_floats) {
    ws = cx.backend().allocate(total * sizeof(float));
    ws_floats = total;
  }
  {
    float* base = static_cast<float*>(ws->data());
    for (const Part& p : parts) {
      *p.ptr = p.floats ? base : nullptr;
      base += (size_t(p.floats) + 15) / 16 * 16;
    }
  }
  // Attention's score rows for the longest sequence the caches can hold.
  cx.scratch(size_t(cx.pool.size()) * size_t(max_capacity));

  // The step's integer inputs, in one i32 arena (on a GPU, one upload):
  // ids and positions [n], position-table rows [n] (learned positions), the
  // rows the head reads [R], and per group of items sharing a KV pool its
  // slot mapping, block tables, sequence lengths and query starts.
  groups.clear();
  for (size_t b = 0; b < items.size(); ++b) {
    const void* id = items[b].cache->pool_id();
    if (groups.empty() || groups.back().pool_id != id) groups.push_back({id, b, b, 0, 0, {}});
    Group& gr = groups.back();
    gr.end = b + 1;
    // Tables as wide as the longest sequence the caches can hold, so that the
    // step's inputs keep their shapes (and addresses) while sequences grow.
    const KvCache& kc = *items[b].cache;
    const int64_t bs = kc.pool(0).k.dim(1);
    gr.max_blocks = std::max(gr.max_blocks, (kc.capacity() + bs - 1) / bs);
  }
  const int64_t n_pos_rows = c.position == PositionKind::Learned ? n : 0;
  size_t meta_n = size_t(2 * n + n_pos_rows + R);
  for (Group& gr : groups) {
    const int64_t nb = int64_t(gr.end - gr.begin);
    gr.at = meta_n;
    meta_n += size_t(nb * gr.max_blocks + nb + nb + 1);  // tables, lengths, starts
  }
  meta_n += size_t(n);  // slots
  meta.resize(meta_n);
  int32_t* m = meta.data();
  int32_t* ids = m;
  int32_t* positions = m + n;
  int32_t* pos_rows = m + 2 * n;
  int32_t* head_rows = pos_rows + n_pos_rows;
  int32_t* slots = m + meta_n - size_t(n);
  offset.resize(items.size() + 1);
  offset[0] = 0;
  for (size_t b = 0; b < items.size(); ++b) {
    const int64_t ni = int64_t(items[b].ids.size());
    for (int64_t i = 0; i < ni; ++i) {
      ids[offset[b] + i] = items[b].ids[size_t(i)];
      positions[offset[b] + i] = int32_t(items[b].pos0 + i);
    }
    offset[b + 1] = offset[b] + ni;
  }
  for (int64_t i = 0; i < n_pos_rows; ++i)
    pos_rows[i] = positions[i] + int32_t(c.position_offset);
  {
    int64_t r = 0;
    for (size_t b = 0; b < items.size(); ++b) {
      const Model::BatchItem& it = items[b];
      if (!it.logits && !it.logits_view && !it.hidden) continue;
      const int64_t first = it.which == Logits::All ? offset[b] : offset[b + 1] - 1;
      for (int64_t i = first; i < offset[b + 1]; ++i) head_rows[r++] = int32_t(i);
    }
  }
  for (Group& gr : groups) {
    const int64_t nb = int64_t(gr.end - gr.begin);
    int32_t* tables = m + gr.at;
    int32_t* lens = tables + nb * gr.max_blocks;
    int32_t* starts = lens + nb;
    starts[0] = 0;
    for (int64_t j = 0; j < nb; ++j) {
      const Model::BatchItem& it = items[gr.begin + size_t(j)];
      const std::span<const int32_t> table = it.cache->block_table();
      const int64_t bs = it.cache->pool(0).k.dim(1);
      const int64_t ni = int64_t(it.ids.size());
      std::fill(tables + j * gr.max_blocks, tables + (j + 1) * gr.max_blocks, 0);
      std::copy(table.begin(), table.end(), tables + j * gr.max_blocks);
      lens[j] = int32_t(it.pos0 + ni);
      starts[j + 1] = starts[j] + int32_t(ni);
      for (int64_t i = 0; i < ni; ++i) {
        const int64_t p = it.pos0 + i;
        slots[offset[gr.begin + size_t(j)] + i] = int32_t(int64_t(table[size_t(p / bs)]) * bs + p % bs);
      }
    }
    gr.batch.block_tables = Tensor::view(tables, DType::I32, {nb, gr.max_blocks});
    gr.batch.seq_lens = Tensor::view(lens, DType::I32, {nb});
    gr.batch.query_starts = Tensor::view(starts, DType::I32, {nb + 1});
  }
  auto i32 = [](int32_t* p, int64_t len) { return Tensor::view(p, DType::I32, {len}); };

  const Tensor X = view2(dev, x, n, H), T = view2(dev, t, n, H), A = view2(dev, a, n, H);

  // Embeddings, straight into the residual stream when nothing follows them.
  if (c.embedding_norm == EmbeddingNorm::None && c.projection == EmbeddingProjection::None) {
    ops::embedding(cx, G(Slot::TokenEmbedding), i32(ids, n), X);
  } else {
    const Tensor EMB = view2(dev, en, n, E);
    ops::embedding(cx, G(Slot::TokenEmbedding), i32(ids, n), EMB);
    if (c.embedding_norm == EmbeddingNorm::LayerNorm) {
      const Tensor EMB2 = c.projection == EmbeddingProjection::None ? X : view2(dev, en + n * E, n, E);
      ops::layernorm(cx, EMB, &G(Slot::EmbeddingNormWeight), &G(Slot::EmbeddingNormBias), EMB2,
                     c.norm_eps);
      if (c.projection == EmbeddingProjection::InOut)
        ops::matmul(cx, EMB2, G(Slot::ProjectIn), nullptr, X);
    } else {
      ops::matmul(cx, EMB, G(Slot::ProjectIn), nullptr, X);
    }
  }
  if (c.position == PositionKind::Learned) {
    const Tensor PE = view2(dev, pe, n, H);
    ops::embedding(cx, G(Slot::PositionEmbedding), i32(pos_rows, n), PE);
    ops::add(cx, X, PE, X);
  }
  dump(X, "inp_embd");

  // RoPE frequencies: fixed, except under dynamic scaling for a sequence
  // longer than the trained context (then per item).
  bool per_item_rope = false;
  if (c.position == PositionKind::Rope && c.rope.scaling == RopeScaling::Dynamic)
    for (const Model::BatchItem& it : items)
      per_item_rope = per_item_rope || it.pos0 + int64_t(it.ids.size()) > c.rope.max_positions;
  const Tensor& freq = rope_freq_t;
  // Under dynamic scaling, room for each item's frequencies is sized every
  // step (so a warmed-up step never allocates), and filled once per step
  // when an item runs past the trained context.
  if (c.position == PositionKind::Rope && c.rope.scaling == RopeScaling::Dynamic)
    dyn_freq.resize(items.size() * size_t(c.rope.rot_dim / 2));
  if (per_item_rope) {
    const size_t half = size_t(c.rope.rot_dim / 2);
    for (size_t b = 0; b < items.size(); ++b)
      ops::rope_inv_freq(c.rope, items[b].pos0 + int64_t(items[b].ids.size()),
                         std::span<float>(dyn_freq).subspan(b * half, half));
  }
  const Tensor& slopes = alibi_t;
  const float theta_scale = c.position == PositionKind::Rope ? ops::rope_theta_scale(c.rope) : 0.0f;

  // q, k, v [n, heads, head_dim]: views into the fused product where there is one.
  const int64_t hd = c.head_dim, f4 = sizeof(float);
  Tensor Q3, K3, V3;
  if (c.qkv_layout == QkvLayout::Separate) {
    Q3 = view3(dev, q, n, c.n_heads, hd);
    K3 = view3(dev, k, n, c.n_kv_heads, hd);
    V3 = view3(dev, v, n, c.n_kv_heads, hd);
  } else if (c.qkv_layout == QkvLayout::FusedBlocks) {
    // [n, 3, QD]: token rows of 3 * QD.
    Q3 = view3(dev, qkv, n, c.n_heads, hd).with_strides({3 * QD * f4, hd * f4, f4});
    K3 = view3(dev, qkv + QD, n, c.n_kv_heads, hd).with_strides({3 * QD * f4, hd * f4, f4});
    V3 = view3(dev, qkv + 2 * QD, n, c.n_kv_heads, hd).with_strides({3 * QD * f4, hd * f4, f4});
  } else {
    // [n, heads, 3, head_dim].
    Q3 = view3(dev, qkv, n, c.n_heads, hd).with_strides({3 * QD * f4, 3 * hd * f4, f4});
    K3 = view3(dev, qkv + hd, n, c.n_kv_heads, hd).with_strides({3 * QD * f4, 3 * hd * f4, f4});
    V3 = view3(dev, qkv + 2 * hd, n, c.n_kv_heads, hd).with_strides({3 * QD * f4, 3 * hd * f4, f4});
  }
  const Tensor ATT3 = view3(dev, att, n, c.n_heads, hd);

  for (int64_t l = 0; l < c.n_layers; ++l) {
    // Attention block.
    const Tensor& IN = c.norm_placement == NormPlacement::Pre ? T : X;
    if (c.norm_placement == NormPlacement::Pre) {
      norm(X, W(l, Slot::AttnNormWeight), W(l, Slot::AttnNormBias), T);
      dump(T, "attn_norm", l);
    }
    if (c.qkv_layout == QkvLayout::Separate) {
      ops::matmul(cx, IN, W(l, Slot::QWeight), opt(W(l, Slot::QBias)), view2(dev, q, n, QD));
      ops::matmul(cx, IN, W(l, Slot::KWeight), opt(W(l, Slot::KBias)), view2(dev, k, n, KD));
      ops::matmul(cx, IN, W(l, Slot::VWeight), opt(W(l, Slot::VBias)), view2(dev, v, n, KD));
    } else {
      ops::matmul(cx, IN, W(l, Slot::QkvWeight), opt(W(l, Slot::QkvBias)), view2(dev, qkv, n, 3 * QD));
    }
    if (c.position == PositionKind::Rope) {
      if (!per_item_rope) {
        ops::rope(cx, Q3, i32(positions, n), freq, c.rope_style, theta_scale);
        ops::rope(cx, K3, i32(positions, n), freq, c.rope_style, theta_scale);
      } else {
        for (size_t b = 0; b < items.size(); ++b) {
          const int64_t o0 = offset[b], o1 = offset[b + 1];
          const int64_t half = c.rope.rot_dim / 2;
          const Tensor fb = Tensor::view(dyn_freq.data() + b * size_t(half), DType::F32, {half});
          const Tensor pb = i32(positions + o0, o1 - o0);
          ops::rope(cx, Q3.slice(0, o0, o1), pb, fb, c.rope_style, theta_scale);
          ops::rope(cx, K3.slice(0, o0, o1), pb, fb, c.rope_style, theta_scale);
        }
      }
    }
    // One cache write and one attention call per group of items sharing a
    // pool (the whole batch for the scheduler's paged cache).
    for (const Group& gr : groups) {
      const int64_t o0 = offset[gr.begin], o1 = offset[gr.end];
      const ops::KvPool pool = items[gr.begin].cache->pool(l);
      ops::kv_store(cx, K3.slice(0, o0, o1), V3.slice(0, o0, o1), pool, i32(slots + o0, o1 - o0));
      ops::attention(cx, Q3.slice(0, o0, o1), pool, gr.batch, c.attn_scale,
                     slopes.empty() ? nullptr : &slopes, ATT3.slice(0, o0, o1));
    }
    // A block's output joins the residual stream: added in place (pre-norm),
    // or added and then normed by the block's norm (post-norm).
    auto residual = [&](Slot norm_w, Slot norm_b) {
      if (c.norm_placement == NormPlacement::Pre) {
        ops::add(cx, X, A, X);
      } else {
        ops::add(cx, X, A, T);
        norm(T, W(l, norm_w), W(l, norm_b), X);
      }
    };
    ops::matmul(cx, view2(dev, att, n, QD), W(l, Slot::OutWeight), opt(W(l, Slot::OutBias)), A);
    dump(A, "attn_out", l);
    residual(Slot::AttnNormWeight, Slot::AttnNormBias);
    dump(X, "ffn_inp", l);

    // MLP block.
    if (c.norm_placement == NormPlacement::Pre) {
      norm(X, W(l, Slot::FfnNormWeight), W(l, Slot::FfnNormBias), T);
      dump(T, "ffn_norm", l);
    }
    const Tensor U = view2(dev, u, n, F);
    ops::matmul(cx, IN, W(l, Slot::UpWeight), opt(W(l, Slot::UpBias)), U);
    if (c.mlp == MlpKind::Gated) {
      const Tensor Gt = view2(dev, g, n, F);
      ops::matmul(cx, IN, W(l, Slot::GateWeight), opt(W(l, Slot::GateBias)), Gt);
      ops::swiglu(cx, Gt, U, U);
    } else {
      ops::activation(cx, c.activation, U, U);
    }
    ops::matmul(cx, U, W(l, Slot::DownWeight), opt(W(l, Slot::DownBias)), A);
    dump(A, "ffn_out", l);
    residual(Slot::FfnNormWeight, Slot::FfnNormBias);
    dump(X, "l_out", l);
  }

  // Head: only the rows whose logits or hidden states are wanted, gathered.
  if (R > 0) {
    Tensor HR = view2(dev, hx, R, H);
    ops::embedding(cx, X, i32(head_rows, R), HR);
    if (c.final_norm == FinalNorm::Present) {
      const Tensor HN = view2(dev, hn, R, H);
      norm(HR, G(Slot::FinalNormWeight), G(Slot::FinalNormBias), HN);
      HR = HN;
    }
    if (c.projection == EmbeddingProjection::InOut) {
      const Tensor P = view2(dev, he, R, E);
      ops::matmul(cx, HR, G(Slot::ProjectOut), nullptr, P);
      HR = P;
    }
    dump(HR, "result_norm");
    // Rows of items that want logits only are needed by the head; running the
    // head over every gathered row keeps this simple (hidden-only rows are rare).
    const Tensor L = view2(dev, lg, R, V);
    bool any_logits = false;
    for (const Model::BatchItem& it : items) any_logits = any_logits || it.logits || it.logits_view;
    if (any_logits) {
      ops::matmul(cx, HR, G(Slot::LmHead), nullptr, L);
      dump(L, "result_output");
    }
    // The results the caller asked for are the only data read back, and
    // views are not even that.
    Backend& be = cx.backend();
    auto read_back = [&](std::vector<float>& out, const float* src, int64_t count) {
      out.resize(size_t(count));
      be.copy(out.data(), Device::CPU, src, dev, size_t(count) * sizeof(float));
    };
    int64_t r = 0;
    for (const Model::BatchItem& it : items) {
      if (!it.logits && !it.logits_view && !it.hidden) continue;
      const int64_t rows = it.which == Logits::All ? int64_t(it.ids.size()) : 1;
      if (it.logits) read_back(*it.logits, lg + r * V, rows * V);
      if (it.logits_view) *it.logits_view = L.slice(0, r, r + rows);
      if (it.hidden) read_back(*it.hidden, static_cast<const float*>(HR.row(r)), rows * E);
      r += rows;
    }
  }
  ++calls;
}

}  // namespace runnel

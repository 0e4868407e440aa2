// The generic block builder: binds a checkpoint's tensors to the logical slots
// its ModelConfig needs, then runs every family's forward pass from that data.
#include "runnel/model.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "gguf/names.hpp"
#include "model/arch.hpp"
#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "runnel/loader.hpp"
#include "runnel/tokenizer.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace runnel {

using model::Slot;

namespace {

enum class Role : unsigned char {
  Matrix,  // matmul weights and token embeddings: the compute dtype
  Vector,  // norms, biases, position tables: f32
};

struct Need {
  Slot slot;
  std::vector<int64_t> shape;
  Role role;
};

// The model-level tensors `c` needs, with their shapes.
std::vector<Need> model_needs(const ModelConfig& c) {
  std::vector<Need> n;
  n.push_back({Slot::TokenEmbedding, {c.vocab_size, c.embed_dim}, Role::Matrix});
  if (c.position == PositionKind::Learned)
    n.push_back({Slot::PositionEmbedding,
                 {c.max_positions + c.position_offset, c.hidden_size},
                 Role::Vector});
  if (c.embedding_norm == EmbeddingNorm::LayerNorm) {
    n.push_back({Slot::EmbeddingNormWeight, {c.embed_dim}, Role::Vector});
    n.push_back({Slot::EmbeddingNormBias, {c.embed_dim}, Role::Vector});
  }
  if (c.projection == EmbeddingProjection::InOut) {
    n.push_back({Slot::ProjectIn, {c.hidden_size, c.embed_dim}, Role::Matrix});
    n.push_back({Slot::ProjectOut, {c.embed_dim, c.hidden_size}, Role::Matrix});
  }
  if (c.final_norm == FinalNorm::Present) {
    n.push_back({Slot::FinalNormWeight, {c.hidden_size}, Role::Vector});
    if (c.norm_bias == Bias::Present)
      n.push_back({Slot::FinalNormBias, {c.hidden_size}, Role::Vector});
  }
  if (c.lm_head == LmHead::Separate)
    n.push_back({Slot::LmHead, {c.vocab_size, c.embed_dim}, Role::Matrix});
  return n;
}

// The tensors each layer of `c` needs.
std::vector<Need> layer_needs(const ModelConfig& c) {
  const int64_t H = c.hidden_size, QD = c.n_heads * c.head_dim, KD = c.n_kv_heads * c.head_dim;
  const int64_t F = c.ffn_dim;
  std::vector<Need> n;
  auto norm = [&](Slot w, Slot b) {
    n.push_back({w, {H}, Role::Vector});
    if (c.norm_bias == Bias::Present) n.push_back({b, {H}, Role::Vector});
  };
  auto linear = [&](Slot w, Slot b, int64_t out, int64_t in, Bias bias) {
    n.push_back({w, {out, in}, Role::Matrix});
    if (bias == Bias::Present) n.push_back({b, {out}, Role::Vector});
  };
  norm(Slot::AttnNormWeight, Slot::AttnNormBias);
  if (c.qkv_layout == QkvLayout::Separate) {
    linear(Slot::QWeight, Slot::QBias, QD, H, c.qkv_bias);
    linear(Slot::KWeight, Slot::KBias, KD, H, c.qkv_bias);
    linear(Slot::VWeight, Slot::VBias, KD, H, c.qkv_bias);
  } else {
    linear(Slot::QkvWeight, Slot::QkvBias, 3 * QD, H, c.qkv_bias);
  }
  linear(Slot::OutWeight, Slot::OutBias, H, QD, c.out_bias);
  norm(Slot::FfnNormWeight, Slot::FfnNormBias);
  if (c.mlp == MlpKind::Gated) linear(Slot::GateWeight, Slot::GateBias, F, H, c.mlp_bias);
  linear(Slot::UpWeight, Slot::UpBias, F, H, c.mlp_bias);
  linear(Slot::DownWeight, Slot::DownBias, H, F, c.mlp_bias);
  return n;
}

std::string shape_list(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

Tensor view2(float* p, int64_t rows, int64_t cols) {
  return Tensor::view(p, DType::F32, {rows, cols});
}
Tensor view3(float* p, int64_t a, int64_t b, int64_t c) {
  return Tensor::view(p, DType::F32, {a, b, c});
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

// ---------------------------------------------------------------------------
// Model

// Batched decode gives products of a few to a few dozen rows.  The
// small-batch kernels read the weights once for all rows and stay ahead of
// the blocked path (which first widens f16 / bf16 / quantized weights to f32
// panels) up to about this many rows (measured with 2 threads on f16 weights
// of 5632 x 2048: 64 rows 66 ms against 185 ms).
constexpr int64_t kGemmMinRows = 64;

namespace {

// The dtype with the highest count (the first in dtype order among equals),
// or `fallback` when there is none.
DType most_common(const std::map<DType, int64_t>& counts, DType fallback) {
  DType most = fallback;
  int64_t n = 0;
  for (const auto& [dt, count] : counts)
    if (count > n) most = dt, n = count;
  return most;
}

}  // namespace

struct Model::Impl {
  std::string path, format;
  ModelConfig cfg;
  const model::ArchDescriptor* arch = nullptr;
  WeightStore store;                               // keeps the mapped files alive
  std::vector<std::unique_ptr<HostBuffer>> owned;  // converted weights
  DType wdtype = DType::F32, fdtype = DType::F32;
  bool mapped = true;
  int64_t file_type = -1;                 // GGUF general.file_type, or -1
  std::map<DType, int64_t> matrix_types;  // bound matrix weights per dtype
  int64_t bound_bytes = 0;                // bytes of every bound weight
  std::array<Tensor, model::kNumSlots> global{};
  std::vector<std::array<Tensor, model::kNumSlots>> layers;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Context> ctx;
  std::vector<float> alibi;      // [n_heads] or empty
  std::vector<float> rope_freq;  // [rot_dim / 2] (dynamic scaling: within the trained context)
  // Per-step state, kept so that a step no larger than those before it
  // allocates nothing.
  struct Group {  // consecutive batch items sharing one KV pool
    const void* pool_id;
    size_t begin, end;
    int64_t max_blocks;
    size_t at;  // its block tables, lengths and starts in `meta`
    ops::KvBatch batch;
  };
  std::vector<Group> groups;
  std::vector<int32_t> meta;
  std::vector<int64_t> offset;
  std::string dump_dir;
  int64_t calls = 0;
  std::unique_ptr<HostBuffer> ws;  // activations workspace
  size_t ws_floats = 0;

  const Tensor& G(Slot s) const { return global[size_t(s)]; }
  const Tensor& W(int64_t l, Slot s) const { return layers[size_t(l)][size_t(s)]; }

  const WeightStore::Entry* lookup(const std::string& name, std::string* found) const;
  bool ignorable(const std::string& name) const;
  void bind(std::optional<DType> dtype, const std::function<void(double)>& progress = {});
  void norm(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y);
  void dump(const Tensor& t, const char* name, int64_t layer = -1);
  void prepare();  // tables computed once the weights are bound
  void forward(std::span<const Model::BatchItem> items);
};

const WeightStore::Entry* Model::Impl::lookup(const std::string& name, std::string* found) const {
  if (const auto* e = store.find(name)) {
    *found = name;
    return e;
  }
  for (const char* p : arch->optional_prefixes) {
    const size_t len = std::strlen(p);
    if (name.compare(0, len, p) != 0) continue;
    if (const auto* e = store.find(name.substr(len))) {
      *found = name.substr(len);
      return e;
    }
  }
  return nullptr;
}

bool Model::Impl::ignorable(const std::string& name) const {
  std::vector<std::string> patterns;
  for (const char* p : arch->ignored) patterns.emplace_back(p);
  // A tied head may still be stored; transformers ignores it too.
  if (cfg.lm_head == LmHead::Tied) {
    const std::string head = model::tensor_name(*arch, Slot::LmHead, 0);
    if (!head.empty()) patterns.push_back(head);
  }
  for (const std::string& pat : patterns) {
    if (model::name_matches(pat, name)) return true;
    for (const char* p : arch->optional_prefixes) {
      const size_t len = std::strlen(p);
      if (pat.compare(0, len, p) == 0 &&
          model::name_matches(std::string_view(pat).substr(len), name))
        return true;
    }
  }
  return false;
}

void Model::Impl::bind(std::optional<DType> dtype, const std::function<void(double)>& progress) {
  const std::string tok_name = model::tensor_name(*arch, Slot::TokenEmbedding, 0);
  std::string found;
  const WeightStore::Entry* tok = lookup(tok_name, &found);
  if (!tok)
    throw Error(fmt::format("{}: missing tensor \"{}\" (the token embeddings)", path, tok_name));
  fdtype = tok->tensor.dtype();
  wdtype = dtype.value_or(fdtype);
  if (!traits(wdtype).is_float)
    throw Error("compute dtype must be f32, f16, bf16 or a quantized weight type");

  matrix_types.clear();
  bound_bytes = 0;
  std::map<DType, int64_t> stored_types;  // the same, as stored
  std::set<std::string> used;
  auto bind_one = [&](const Need& need, int64_t layer) -> Tensor {
    const std::string what = layer >= 0
                                 ? fmt::format("{} of layer {}", model::slot_name(need.slot), layer)
                                 : std::string(model::slot_name(need.slot));
    const std::string name = model::tensor_name(*arch, need.slot, layer);
    if (name.empty())
      throw Error(
          fmt::format("{}: the {} descriptor names no tensor for {}, which this "
                      "configuration needs",
                      cfg.source, cfg.family, what));
    const WeightStore::Entry* e = lookup(name, &found);
    if (!e) {
      // A GGUF's tensors are named as llama.cpp names them.
      const std::string gname = format == "gguf" ? gguf::tensor_name(need.slot, layer) : "";
      throw Error(fmt::format("{}: missing tensor \"{}\" ({}), needed by this {} configuration",
                              path, gname.empty() ? name : gname, what, cfg.family));
    }
    used.insert(found);
    const Tensor& t = e->tensor;
    // Messages name the tensor as its file does.
    const std::string& shown = e->file_name.empty() ? found : e->file_name;
    const std::string& where = e->file_name.empty() ? e->source : path;
    bool shape_ok = t.ndim() == int(need.shape.size());
    for (int i = 0; shape_ok && i < t.ndim(); ++i) shape_ok = t.dim(i) == need.shape[size_t(i)];
    if (!shape_ok)
      throw Error(fmt::format("{}: tensor \"{}\" has shape {} but {} implies {}", where, shown,
                              t.shape_str(),
                              format == "gguf" ? "its metadata" : cfg.source,
                              shape_list(need.shape)));
    if (!traits(t.dtype()).is_float)
      throw Error(fmt::format("{}: tensor \"{}\": dtype {} is not supported (f32, f16, bf16, "
                              "q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q6_k)",
                              where, shown, dtype_name(t.dtype())));
    DType want = need.role == Role::Matrix ? wdtype : DType::F32;
    // Quantized files mix types (some matrices stay f16 or f32): unless a
    // compute dtype is asked for, each matrix keeps the type it is stored in.
    if (need.role == Role::Matrix && !dtype &&
        (traits(t.dtype()).block_size > 1 || traits(wdtype).block_size > 1))
      want = t.dtype();
    if (need.role == Role::Matrix) ++matrix_types[want], ++stored_types[t.dtype()];
    if (t.dtype() == want) {
      bound_bytes += int64_t(t.nbytes());
      return t;
    }
    if (need.role == Role::Matrix) mapped = false;
    size_t bytes = row_bytes(want, t.numel());
    auto buf = std::make_unique<HostBuffer>(bytes);
    Tensor dst = Tensor::view(buf->data(), want, need.shape.data(), int(need.shape.size()));
    ops::convert(*ctx, t, dst);
    owned.push_back(std::move(buf));
    bound_bytes += int64_t(bytes);
    return dst;
  };

  for (const Need& need : model_needs(cfg)) global[size_t(need.slot)] = bind_one(need, -1);
  if (cfg.lm_head == LmHead::Tied) global[size_t(Slot::LmHead)] = G(Slot::TokenEmbedding);
  const std::vector<Need> per_layer = layer_needs(cfg);
  layers.resize(size_t(cfg.n_layers));
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    for (const Need& need : per_layer) layers[size_t(l)][size_t(need.slot)] = bind_one(need, l);
    if (progress) progress(double(l + 1) / double(cfg.n_layers + 1));
  }

  std::vector<std::string> extra;  // as their files name them
  const WeightStore::Entry* first_extra = nullptr;
  for (const auto& [name, e] : store.entries())
    if (!used.count(name) && !ignorable(name)) {
      extra.push_back(e.file_name.empty() ? name : e.file_name);
      if (!first_extra) first_extra = &e;
    }
  if (!extra.empty()) {
    std::string more;
    if (extra.size() > 1) {
      more = fmt::format(" (and {} more:", extra.size() - 1);
      for (size_t i = 1; i < extra.size() && i < 6; ++i) more += " \"" + extra[i] + "\"";
      more += extra.size() > 6 ? " ...)" : ")";
    }
    throw Error(fmt::format(
        "{}: tensor \"{}\" is not used by this {} configuration{}; the "
        "checkpoint does not match {}",
        first_extra->file_name.empty() ? first_extra->source : path, extra[0], cfg.family, more,
        format == "gguf" ? "its metadata" : cfg.source));
  }
  // Quantized files mix types (llama.cpp's Q4_1 files keep a Q8_0 token
  // embedding; its Q4_K_M mixes Q4_K, Q6_K and Q5_0): the file's dtype is the
  // one most matrices are stored in, and so is the compute dtype unless one
  // was asked for.
  fdtype = most_common(stored_types, fdtype);
  if (!dtype) wdtype = most_common(matrix_types, wdtype);
  if (progress) progress(1.0);
}

void Model::Impl::norm(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y) {
  if (cfg.norm == NormKind::RmsNorm)
    ops::rmsnorm(*ctx, x, w, y, cfg.norm_eps);
  else
    ops::layernorm(*ctx, x, &w, opt(b), y, cfg.norm_eps);
}

void Model::Impl::prepare() {
  if (cfg.position == PositionKind::Alibi) alibi = ops::alibi_slopes(cfg.n_heads);
  if (cfg.position == PositionKind::Rope) rope_freq = ops::rope_inv_freq(cfg.rope, 0);
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
    if (it.logits || it.hidden) R += it.which == Logits::All ? ni : 1;
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
    ws = std::make_unique<HostBuffer>(total * sizeof(float));
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
      if (!it.logits && !it.hidden) continue;
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

  const Tensor X = view2(x, n, H), T = view2(t, n, H), A = view2(a, n, H);

  // Embeddings, straight into the residual stream when nothing follows them.
  if (c.embedding_norm == EmbeddingNorm::None && c.projection == EmbeddingProjection::None) {
    ops::embedding(cx, G(Slot::TokenEmbedding), i32(ids, n), X);
  } else {
    const Tensor EMB = view2(en, n, E);
    ops::embedding(cx, G(Slot::TokenEmbedding), i32(ids, n), EMB);
    if (c.embedding_norm == EmbeddingNorm::LayerNorm) {
      const Tensor EMB2 = c.projection == EmbeddingProjection::None ? X : view2(en + n * E, n, E);
      ops::layernorm(cx, EMB, &G(Slot::EmbeddingNormWeight), &G(Slot::EmbeddingNormBias), EMB2,
                     c.norm_eps);
      if (c.projection == EmbeddingProjection::InOut)
        ops::matmul(cx, EMB2, G(Slot::ProjectIn), nullptr, X);
    } else {
      ops::matmul(cx, EMB, G(Slot::ProjectIn), nullptr, X);
    }
  }
  if (c.position == PositionKind::Learned) {
    const Tensor PE = view2(pe, n, H);
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
  const Tensor freq =
      rope_freq.empty() ? Tensor() : Tensor::view(rope_freq.data(), DType::F32, {int64_t(rope_freq.size())});
  const Tensor slopes =
      alibi.empty() ? Tensor() : Tensor::view(alibi.data(), DType::F32, {int64_t(alibi.size())});
  const float theta_scale = c.position == PositionKind::Rope ? ops::rope_theta_scale(c.rope) : 0.0f;

  // q, k, v [n, heads, head_dim]: views into the fused product where there is one.
  const int64_t hd = c.head_dim, f4 = sizeof(float);
  Tensor Q3, K3, V3;
  if (c.qkv_layout == QkvLayout::Separate) {
    Q3 = view3(q, n, c.n_heads, hd);
    K3 = view3(k, n, c.n_kv_heads, hd);
    V3 = view3(v, n, c.n_kv_heads, hd);
  } else if (c.qkv_layout == QkvLayout::FusedBlocks) {
    // [n, 3, QD]: token rows of 3 * QD.
    Q3 = view3(qkv, n, c.n_heads, hd).with_strides({3 * QD * f4, hd * f4, f4});
    K3 = view3(qkv + QD, n, c.n_kv_heads, hd).with_strides({3 * QD * f4, hd * f4, f4});
    V3 = view3(qkv + 2 * QD, n, c.n_kv_heads, hd).with_strides({3 * QD * f4, hd * f4, f4});
  } else {
    // [n, heads, 3, head_dim].
    Q3 = view3(qkv, n, c.n_heads, hd).with_strides({3 * QD * f4, 3 * hd * f4, f4});
    K3 = view3(qkv + hd, n, c.n_kv_heads, hd).with_strides({3 * QD * f4, 3 * hd * f4, f4});
    V3 = view3(qkv + 2 * hd, n, c.n_kv_heads, hd).with_strides({3 * QD * f4, 3 * hd * f4, f4});
  }
  const Tensor ATT3 = view3(att, n, c.n_heads, hd);

  for (int64_t l = 0; l < c.n_layers; ++l) {
    // Attention block.
    const Tensor& IN = c.norm_placement == NormPlacement::Pre ? T : X;
    if (c.norm_placement == NormPlacement::Pre) {
      norm(X, W(l, Slot::AttnNormWeight), W(l, Slot::AttnNormBias), T);
      dump(T, "attn_norm", l);
    }
    if (c.qkv_layout == QkvLayout::Separate) {
      ops::matmul(cx, IN, W(l, Slot::QWeight), opt(W(l, Slot::QBias)), view2(q, n, QD));
      ops::matmul(cx, IN, W(l, Slot::KWeight), opt(W(l, Slot::KBias)), view2(k, n, KD));
      ops::matmul(cx, IN, W(l, Slot::VWeight), opt(W(l, Slot::VBias)), view2(v, n, KD));
    } else {
      ops::matmul(cx, IN, W(l, Slot::QkvWeight), opt(W(l, Slot::QkvBias)), view2(qkv, n, 3 * QD));
    }
    if (c.position == PositionKind::Rope) {
      if (!per_item_rope) {
        ops::rope(cx, Q3, i32(positions, n), freq, c.rope_style, theta_scale);
        ops::rope(cx, K3, i32(positions, n), freq, c.rope_style, theta_scale);
      } else {
        for (size_t b = 0; b < items.size(); ++b) {
          const int64_t o0 = offset[b], o1 = offset[b + 1];
          const std::vector<float> f = ops::rope_inv_freq(c.rope, items[b].pos0 + (o1 - o0));
          const Tensor fb = Tensor::view(const_cast<float*>(f.data()), DType::F32, {int64_t(f.size())});
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
    ops::matmul(cx, view2(att, n, QD), W(l, Slot::OutWeight), opt(W(l, Slot::OutBias)), A);
    dump(A, "attn_out", l);
    if (c.norm_placement == NormPlacement::Pre) {
      ops::add(cx, X, A, X);
    } else {
      ops::add(cx, X, A, T);
      norm(T, W(l, Slot::AttnNormWeight), W(l, Slot::AttnNormBias), X);
    }
    dump(X, "ffn_inp", l);

    // MLP block.
    if (c.norm_placement == NormPlacement::Pre) {
      norm(X, W(l, Slot::FfnNormWeight), W(l, Slot::FfnNormBias), T);
      dump(T, "ffn_norm", l);
    }
    const Tensor U = view2(u, n, F);
    ops::matmul(cx, IN, W(l, Slot::UpWeight), opt(W(l, Slot::UpBias)), U);
    if (c.mlp == MlpKind::Gated) {
      const Tensor Gt = view2(g, n, F);
      ops::matmul(cx, IN, W(l, Slot::GateWeight), opt(W(l, Slot::GateBias)), Gt);
      ops::swiglu(cx, Gt, U, U);
    } else {
      ops::activation(cx, c.activation, U, U);
    }
    ops::matmul(cx, U, W(l, Slot::DownWeight), opt(W(l, Slot::DownBias)), A);
    dump(A, "ffn_out", l);
    if (c.norm_placement == NormPlacement::Pre) {
      ops::add(cx, X, A, X);
    } else {
      ops::add(cx, X, A, T);
      norm(T, W(l, Slot::FfnNormWeight), W(l, Slot::FfnNormBias), X);
    }
    dump(X, "l_out", l);
  }

  // Head: only the rows whose logits or hidden states are wanted, gathered.
  if (R > 0) {
    Tensor HR = view2(hx, R, H);
    ops::embedding(cx, X, i32(head_rows, R), HR);
    if (c.final_norm == FinalNorm::Present) {
      const Tensor HN = view2(hn, R, H);
      norm(HR, G(Slot::FinalNormWeight), G(Slot::FinalNormBias), HN);
      HR = HN;
    }
    if (c.projection == EmbeddingProjection::InOut) {
      const Tensor P = view2(he, R, E);
      ops::matmul(cx, HR, G(Slot::ProjectOut), nullptr, P);
      HR = P;
    }
    dump(HR, "result_norm");
    // Rows of items that want logits only are needed by the head; running the
    // head over every gathered row keeps this simple (hidden-only rows are rare).
    const Tensor L = view2(lg, R, V);
    bool any_logits = false;
    for (const Model::BatchItem& it : items) any_logits = any_logits || it.logits;
    if (any_logits) {
      ops::matmul(cx, HR, G(Slot::LmHead), nullptr, L);
      dump(L, "result_output");
    }
    // The results the caller asked for are the only data read back.
    int64_t r = 0;
    for (const Model::BatchItem& it : items) {
      if (!it.logits && !it.hidden) continue;
      const int64_t rows = it.which == Logits::All ? int64_t(it.ids.size()) : 1;
      if (it.logits) it.logits->assign(lg + r * V, lg + (r + rows) * V);
      if (it.hidden) {
        const float* src = static_cast<const float*>(HR.row(r));
        it.hidden->assign(src, src + rows * E);
      }
      r += rows;
    }
  }
  ++calls;
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

namespace {

// The dump directory (--dump-layers, $RUNNEL_DUMP): an existing writable
// directory, or one new last component under an existing directory; never a
// chain of new directories.
void prepare_dump_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string what = "dump directory (--dump-layers / RUNNEL_DUMP) " + dir;
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (st.type() == fs::file_type::directory) {
    if (::access(dir.c_str(), W_OK | X_OK) != 0)
      throw Error(what + ": not writable: " + std::strerror(errno));
    return;
  }
  if (st.type() != fs::file_type::not_found) {
    if (ec) throw Error(what + ": cannot access: " + ec.message());
    throw Error(what + ": exists and is not a directory");
  }
  fs::path norm = fs::path(dir).lexically_normal();
  if (!norm.has_filename()) norm = norm.parent_path();  // "a/b/"
  fs::path parent = norm.parent_path();
  if (parent.empty()) parent = ".";
  if (!fs::is_directory(parent, ec))
    throw Error(what + ": its parent " + parent.string() +
                " is not an existing directory (only the last component is created)");
  if (::mkdir(dir.c_str(), 0777) != 0)
    throw Error(what + ": cannot create: " + std::strerror(errno));
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  auto impl = std::make_unique<Impl>();
  // The files this load opens are mapped (or read) as the options say.
  struct ModeScope {
    MapMode saved = MappedFile::thread_default();
    explicit ModeScope(MapMode m) { MappedFile::thread_default() = m; }
    ~ModeScope() { MappedFile::thread_default() = saved; }
  } mode_scope(MapMode{options.mmap, options.mlock});
  Checkpoint ck = open_checkpoint(path);
  impl->path = ck.path;
  impl->format = ck.format;
  impl->cfg = ck.config;
  impl->store = std::move(ck.weights);
  impl->file_type = ck.file_type;
  impl->arch = model::find_arch(impl->cfg.family);
  if (!impl->arch) throw Error(path + ": no descriptor for family " + impl->cfg.family);
  const int threads = options.threads > 0 ? options.threads : ThreadPool::hardware_threads();
  impl->ctx = std::make_unique<Context>(threads);
  impl->ctx->gemm_min_rows = kGemmMinRows;
  impl->bind(options.dtype, options.progress);
  impl->prepare();
  const std::string tok_path =
      !options.tokenizer_path.empty() ? options.tokenizer_path : ck.tokenizer_path;
  if (!tok_path.empty())
    impl->tokenizer = std::make_unique<Tokenizer>(load_tokenizer(tok_path));
  else if (ck.vocab)  // embedded in the model file (GGUF)
    impl->tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_vocab(*ck.vocab));
  // A llama2.c tokenizer.bin holds no token count: one with fewer tokens than
  // the model's embedding rows would fail only when an id past its end is
  // decoded.
  if (impl->tokenizer && impl->tokenizer->impl().llama2c &&
      int64_t(impl->tokenizer->vocab_size()) < impl->cfg.vocab_size)
    throw Error(fmt::format("{}: the llama2.c tokenizer has {} tokens but the model {} has a "
                            "vocabulary of {}: not its tokenizer",
                            impl->tokenizer->impl().name.empty() ? tok_path
                                                                 : impl->tokenizer->impl().name,
                            impl->tokenizer->vocab_size(), path,
                            impl->cfg.vocab_size));
  if (!options.dump_dir.empty()) {
    impl->dump_dir = options.dump_dir;
  } else if (const char* env = std::getenv("RUNNEL_DUMP"); env && *env) {
    impl->dump_dir = env;
  }
  if (!impl->dump_dir.empty()) prepare_dump_dir(impl->dump_dir);
  return std::unique_ptr<Model>(new Model(std::move(impl)));
}

namespace {

// splitmix64: a stateless hash, so each row's values depend only on the seed
// and the row, not on the thread that draws them.
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

int64_t need_bytes(const Need& need, DType matrix) {
  int64_t n = 1;
  for (int64_t d : need.shape) n *= d;
  return int64_t(row_bytes(need.role == Role::Matrix ? matrix : DType::F32, n));
}

}  // namespace

int64_t Model::weight_bytes(const ModelConfig& config, DType dtype) {
  config.validate();
  int64_t total = 0;
  for (const Need& need : model_needs(config)) total += need_bytes(need, dtype);
  int64_t layer = 0;
  for (const Need& need : layer_needs(config)) layer += need_bytes(need, dtype);
  return total + layer * config.n_layers;
}

std::unique_ptr<Model> Model::random(const ModelConfig& config, const RandomOptions& options) {
  config.validate();
  const DTypeTraits& wt = traits(options.dtype);
  if (!wt.is_float || !wt.from_float)
    throw Error("random weights: dtype " + std::string(wt.name) + " cannot hold weights");
  auto impl = std::make_unique<Impl>();
  impl->path = "random:" + (config.source.empty() ? config.family : config.source);
  impl->format = "random";
  impl->cfg = config;
  impl->arch = model::find_arch(config.family);
  if (!impl->arch) throw Error("random weights: no descriptor for family " + config.family);
  const int threads = options.threads > 0 ? options.threads : ThreadPool::hardware_threads();
  impl->ctx = std::make_unique<Context>(threads);
  impl->ctx->gemm_min_rows = kGemmMinRows;

  // Every tensor the configuration needs, under the descriptor's names.
  struct Job {
    std::string name;
    Need need;
  };
  std::vector<Job> jobs;
  for (const Need& need : model_needs(config))
    if (!(need.slot == Slot::LmHead && config.lm_head == LmHead::Tied))
      jobs.push_back({model::tensor_name(*impl->arch, need.slot, -1), need});
  const std::vector<Need> per_layer = layer_needs(config);
  for (int64_t l = 0; l < config.n_layers; ++l)
    for (const Need& need : per_layer)
      jobs.push_back({model::tensor_name(*impl->arch, need.slot, l), need});
  int64_t total_bytes = 0, done_bytes = 0;
  for (const Job& j : jobs) total_bytes += need_bytes(j.need, options.dtype);

  for (size_t ji = 0; ji < jobs.size(); ++ji) {
    const Job& j = jobs[ji];
    if (j.name.empty())
      throw Error("random weights: the " + config.family + " descriptor names no tensor for " +
                  std::string(model::slot_name(j.need.slot)));
    const DType dt = j.need.role == Role::Matrix ? options.dtype : DType::F32;
    const int64_t cols = j.need.shape.back();
    int64_t rows = 1;
    for (size_t d = 0; d + 1 < j.need.shape.size(); ++d) rows *= j.need.shape[d];
    if (cols % traits(dt).block_size != 0)
      throw Error(fmt::format("random weights: tensor \"{}\" has rows of {} values, not a "
                              "multiple of {}'s block of {}",
                              j.name, cols, traits(dt).name, traits(dt).block_size));
    const size_t rb = row_bytes(dt, cols);
    auto buf = std::make_shared<HostBuffer>(rb * size_t(rows));
    auto* base = static_cast<uint8_t*>(buf->data());
    const Slot sl = j.need.slot;
    const bool is_norm_weight = sl == Slot::EmbeddingNormWeight || sl == Slot::FinalNormWeight ||
                                sl == Slot::AttnNormWeight || sl == Slot::FfnNormWeight;
    const bool is_bias = j.need.role == Role::Vector && !is_norm_weight &&
                         sl != Slot::PositionEmbedding;
    const uint64_t tensor_seed = mix64(options.seed ^ mix64(uint64_t(ji) + 1));
    // Uniform on [-a, a] with standard deviation 0.02.
    const float a = 0.02f * std::sqrt(3.0f);
    impl->ctx->pool.parallel_for(rows, 1, [&](int64_t r0, int64_t r1) {
      std::vector<float> tmp(static_cast<size_t>(cols));
      for (int64_t r = r0; r < r1; ++r) {
        if (is_norm_weight || is_bias) {
          std::fill(tmp.begin(), tmp.end(), is_norm_weight ? 1.0f : 0.0f);
        } else {
          uint64_t st = mix64(tensor_seed + uint64_t(r));
          for (int64_t i = 0; i < cols; ++i) {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            const float u = float(st >> 40) * (1.0f / 16777216.0f);  // [0, 1)
            tmp[size_t(i)] = (2.0f * u - 1.0f) * a;
          }
        }
        traits(dt).from_float(tmp.data(), base + rb * size_t(r), cols);
      }
    });
    impl->store.add(j.name,
                    Tensor::view(buf->data(), dt, j.need.shape.data(), int(j.need.shape.size())),
                    impl->path);
    impl->store.keep_alive(buf);
    done_bytes += need_bytes(j.need, options.dtype);
    if (options.progress) options.progress(0.99 * double(done_bytes) / double(total_bytes));
  }
  impl->bind(options.dtype);
  impl->mapped = false;
  impl->prepare();
  if (options.progress) options.progress(1.0);
  return std::unique_ptr<Model>(new Model(std::move(impl)));
}

const ModelConfig& Model::config() const { return impl_->cfg; }
const std::string& Model::path() const { return impl_->path; }
const std::string& Model::format() const { return impl_->format; }
DType Model::weight_dtype() const { return impl_->wdtype; }
DType Model::file_dtype() const { return impl_->fdtype; }
bool Model::weights_mapped() const { return impl_->mapped; }

std::string Model::type_name() const {
  if (impl_->mapped && impl_->file_type >= 0) {
    const std::string_view name = gguf::file_type_name(impl_->file_type);
    if (!name.empty()) return std::string(name);
  }
  const DType most = most_common(impl_->matrix_types, impl_->wdtype);
  try {
    if (const gguf::GgmlTypeInfo* info = gguf::ggml_type_info(uint32_t(gguf::ggml_type_of(most))))
      return std::string(info->name);
  } catch (const Error&) {
  }
  return std::string(dtype_name(most));
}

int64_t Model::stored_weight_bytes() const { return impl_->bound_bytes; }
const Tokenizer* Model::tokenizer() const { return impl_->tokenizer.get(); }
Context& Model::context() { return *impl_->ctx; }

std::unique_ptr<KvCache> Model::new_cache(DType kv_dtype) const {
  const ModelConfig& c = impl_->cfg;
  return std::make_unique<ContiguousKvCache>(
      c.n_layers, c.n_kv_heads, c.head_dim, kv_dtype,
      c.position == PositionKind::Learned ? c.max_positions : 0);
}

void Model::forward(KvCache& cache, std::span<const int32_t> ids, int64_t pos0, Logits which,
                    std::vector<float>& logits) {
  BatchItem item;
  item.cache = &cache;
  item.ids = ids;
  item.pos0 = pos0;
  item.which = which;
  item.logits = &logits;
  impl_->forward(std::span<const BatchItem>(&item, 1));
}

void Model::forward(std::span<const BatchItem> items) { impl_->forward(items); }

void Model::set_dump_dir(const std::string& dir) {
  if (!dir.empty()) prepare_dump_dir(dir);
  impl_->dump_dir = dir;
}

// ---------------------------------------------------------------------------
// Sequence and generation

Sequence::Sequence(Model& model, DType kv_dtype)
    : model_(&model), cache_(model.new_cache(kv_dtype)) {}

std::vector<float> Sequence::prefill(std::span<const int32_t> ids, Logits which) {
  std::vector<float> logits;
  model_->forward(*cache_, ids, n_past(), which, logits);
  tokens_.insert(tokens_.end(), ids.begin(), ids.end());
  return logits;
}

std::vector<float> Sequence::decode(int32_t id) {
  std::vector<float> logits;
  model_->forward(*cache_, std::span<const int32_t>(&id, 1), n_past(), Logits::Last, logits);
  tokens_.push_back(id);
  return logits;
}

void Sequence::reset() { tokens_.clear(); }

int32_t argmax(std::span<const float> logits) {
  if (logits.empty()) throw Error("argmax of empty logits");
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return int32_t(best);
}

namespace {

int32_t sample(std::span<const float> logits, float temperature, std::mt19937_64& rng) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i)
    sum += p[i] = std::exp(double(logits[i] - mx) / temperature);
  const double r = std::uniform_real_distribution<double>(0.0, sum)(rng);
  double acc = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if ((acc += p[i]) > r) return int32_t(i);
  return int32_t(p.size() - 1);
}

}  // namespace

std::vector<int32_t> generate(Sequence& seq, std::span<const int32_t> prompt,
                              const GenerateOptions& options,
                              const std::function<bool(int32_t)>& on_token) {
  if (!(options.temperature >= 0.0f) || !std::isfinite(options.temperature))
    throw Error("temperature must be a finite number >= 0");
  std::vector<int32_t> out;
  if (options.max_new_tokens <= 0) return out;
  std::vector<float> logits = seq.prefill(prompt, Logits::Last);
  std::mt19937_64 rng(options.seed);
  for (int i = 0; i < options.max_new_tokens; ++i) {
    const int32_t next =
        options.temperature == 0.0f ? argmax(logits) : sample(logits, options.temperature, rng);
    out.push_back(next);
    const bool go = on_token ? on_token(next) : true;
    const bool stop =
        std::find(options.stop_ids.begin(), options.stop_ids.end(), next) != options.stop_ids.end();
    if (!go || stop || i + 1 == options.max_new_tokens) break;
    logits = seq.decode(next);
  }
  return out;
}

}  // namespace runnel

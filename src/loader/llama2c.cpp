// llama2.c checkpoints (github.com/karpathy/llama2.c, run.c and export.py).
//
// Legacy: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len); a negative vocab_size means the classifier is not shared with the
// embeddings.  Weights follow as fp32, grouped by kind across layers, with the
// old RoPE tables (freq_cis_real/imag) before the optional classifier.
// Versioned: uint32 magic "ak42", int32 version, the 7 int32, a uint8
// shared_classifier flag, padded to 256 bytes.  Version 1 is fp32 (norms
// first, no RoPE tables); version 2 is int8 Q8_0 and is refused.
//
// Meta's LLaMA layout (which llama2.c keeps) rotates adjacent pairs, so these
// models map onto the LLaMA descriptor with RopeStyle::GptJ.
#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "loader/llama2c.hpp"
#include "model/arch.hpp"
#include "runnel/error.hpp"

namespace runnel {
namespace {

constexpr uint32_t kMagic = 0x616b3432;  // "ak42" read little-endian

int32_t read_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

struct Layout {
  // float counts
  uint64_t emb, layer_norm, wq, wk, wv, wo, w1, w2, w3, final_norm, freq, cls;
};

Layout layout_of(const Llama2cHeader& h) {
  const uint64_t dim = uint64_t(h.dim), hid = uint64_t(h.hidden_dim), L = uint64_t(h.n_layers);
  const uint64_t hs = dim / uint64_t(h.n_heads);
  const uint64_t kv_dim = hs * uint64_t(h.n_kv_heads);
  Layout l{};
  l.emb = uint64_t(h.vocab_size) * dim;
  l.layer_norm = L * dim;
  l.wq = L * dim * dim;
  l.wk = L * dim * kv_dim;
  l.wv = L * dim * kv_dim;
  l.wo = L * dim * dim;
  l.w1 = L * dim * hid;
  l.w2 = L * hid * dim;
  l.w3 = L * dim * hid;
  l.final_norm = dim;
  l.freq = h.version == 0 ? uint64_t(h.seq_len) * hs : 0;  // real + imag, seq_len * hs/2 each
  l.cls = h.shared_classifier ? 0 : l.emb;
  return l;
}

uint64_t total_floats(const Layout& l) {
  return l.emb + 2 * l.layer_norm + l.wq + l.wk + l.wv + l.wo + l.w1 + l.w2 + l.w3 + l.final_norm +
         l.freq + l.cls;
}

}  // namespace

Llama2cHeader parse_llama2c_header(const uint8_t* data, size_t size, const std::string& source) {
  const std::string what = source + ": llama2.c header";
  if (size < 28)
    throw Error(what + ": the file has " + std::to_string(size) +
                " bytes, fewer than the 28-byte header");
  Llama2cHeader h;
  int32_t p[7];
  uint32_t magic;
  std::memcpy(&magic, data, 4);
  if (magic == kMagic) {
    if (size < 256) throw Error(what + ": versioned header is 256 bytes but the file is shorter");
    const int32_t version = read_i32(data + 4);
    if (version == 2)
      throw Error(what +
                  ": version 2 (int8 Q8_0 weights) is not supported; export the model "
                  "with llama2.c's export.py --version 1 (fp32)");
    if (version != 1)
      throw Error(what + ": unknown version " + std::to_string(version) + " (supported: 1)");
    h.version = 1;
    for (int i = 0; i < 7; ++i) p[i] = read_i32(data + 8 + 4 * i);
    const uint8_t shared = data[36];
    if (shared > 1) throw Error(what + ": shared_classifier flag must be 0 or 1");
    h.shared_classifier = shared == 1;
    h.header_bytes = 256;
  } else {
    h.version = 0;
    for (int i = 0; i < 7; ++i) p[i] = read_i32(data + 4 * i);
    h.shared_classifier = p[5] > 0;
    if (p[5] == INT32_MIN) throw Error(what + ": vocab_size is out of range");
    p[5] = p[5] < 0 ? -p[5] : p[5];
    h.header_bytes = 28;
  }
  h.dim = p[0];
  h.hidden_dim = p[1];
  h.n_layers = p[2];
  h.n_heads = p[3];
  h.n_kv_heads = p[4];
  h.vocab_size = p[5];
  h.seq_len = p[6];
  auto range = [&](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
      throw Error(fmt::format("{}: {} = {} is out of range [{}, {}] (not a llama2.c checkpoint?)",
                              what, name, v, lo, hi));
  };
  range("dim", h.dim, 1, 1 << 16);
  range("hidden_dim", h.hidden_dim, 1, 1 << 20);
  range("n_layers", h.n_layers, 1, 1024);
  range("n_heads", h.n_heads, 1, 1024);
  range("n_kv_heads", h.n_kv_heads, 1, h.n_heads);
  range("vocab_size", h.vocab_size, 1, 1 << 22);
  range("seq_len", h.seq_len, 1, 1 << 22);
  if (h.n_heads % h.n_kv_heads != 0)
    throw Error(fmt::format("{}: n_heads = {} is not a multiple of n_kv_heads = {}", what,
                            h.n_heads, h.n_kv_heads));
  if (h.dim % h.n_heads != 0 || (h.dim / h.n_heads) % 2 != 0)
    throw Error(fmt::format("{}: dim = {} is not n_heads = {} times an even head size", what, h.dim,
                            h.n_heads));
  const uint64_t floats = total_floats(layout_of(h));
  h.weight_bytes = floats * 4;
  const uint64_t expect = h.header_bytes + h.weight_bytes;
  if (expect != size)
    throw Error(fmt::format(
        "{}: the header (dim {}, hidden_dim {}, n_layers {}, n_heads {}, n_kv_heads {}, vocab {}, "
        "seq_len {}, {} classifier) implies {} bytes but the file has {}: {}",
        what, h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len,
        h.shared_classifier ? "shared" : "separate", expect, size,
        expect > size ? "truncated file?" : "not a llama2.c checkpoint?"));
  return h;
}

ModelConfig llama2c_config(const Llama2cHeader& h, const std::string& source) {
  ModelConfig c;
  c.family = "llama";
  c.source = source;
  c.vocab_size = h.vocab_size;
  c.hidden_size = h.dim;
  c.embed_dim = h.dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.ffn_dim = h.hidden_dim;
  c.max_positions = h.seq_len;
  c.norm = NormKind::RmsNorm;
  c.norm_placement = NormPlacement::Pre;
  c.norm_bias = Bias::None;
  c.norm_eps = 1e-5f;  // run.c's rmsnorm
  c.embedding_norm = EmbeddingNorm::None;
  c.final_norm = FinalNorm::Present;
  c.projection = EmbeddingProjection::None;
  c.position = PositionKind::Rope;
  c.position_offset = 0;
  c.rope_style = RopeStyle::GptJ;
  c.rope.rot_dim = c.head_dim;
  c.rope.theta = 10000.0f;
  c.rope.scaling = RopeScaling::None;
  c.rope.max_positions = h.seq_len;
  c.qkv_layout = QkvLayout::Separate;
  c.qkv_bias = Bias::None;
  c.out_bias = Bias::None;
  c.attn_scale = 1.0f / std::sqrt(float(c.head_dim));
  c.mlp = MlpKind::Gated;
  c.activation = Activation::Silu;
  c.mlp_bias = Bias::None;
  c.lm_head = h.shared_classifier ? LmHead::Tied : LmHead::Separate;
  // llama2.c's tokenizer: BOS 1, EOS 2.  run.c stops when the model emits BOS,
  // which separates the stories of its training data, so both end generation.
  c.bos_id = 1;
  c.eos_ids = {1, 2};
  c.validate();
  return c;
}

void load_llama2c(const std::string& path, ModelConfig& config, WeightStore& store) {
  using model::Slot;
  auto file = std::make_shared<MappedFile>(path);
  const auto* base = static_cast<const uint8_t*>(file->data());
  const Llama2cHeader h = parse_llama2c_header(base, file->size(), path);
  config = llama2c_config(h, path);
  store.keep_alive(file);

  const Layout lay = layout_of(h);
  const int64_t dim = h.dim, hid = h.hidden_dim, L = h.n_layers;
  const int64_t kv_dim = dim / h.n_heads * h.n_kv_heads;
  uint64_t pos = h.header_bytes;
  // Takes `floats` floats at the cursor.
  auto take = [&](uint64_t floats) {
    const uint8_t* p = file->range(pos, floats * 4, "weights");
    pos += floats * 4;
    return const_cast<float*>(reinterpret_cast<const float*>(p));
  };
  const model::ArchDescriptor& arch = model::kLlamaArch;
  auto add = [&](Slot slot, int64_t layer, float* p, std::initializer_list<int64_t> shape) {
    store.add(model::tensor_name(arch, slot, layer), Tensor::view(p, DType::F32, shape), path);
  };
  // Registers `L` per-layer tensors of shape [rows, cols] laid out back to back.
  auto per_layer = [&](Slot slot, float* p, int64_t rows, int64_t cols) {
    for (int64_t l = 0; l < L; ++l) {
      if (rows == 1)
        add(slot, l, p + l * cols, {cols});
      else
        add(slot, l, p + l * rows * cols, {rows, cols});
    }
  };

  if (h.version == 0) {
    add(Slot::TokenEmbedding, 0, take(lay.emb), {h.vocab_size, dim});
    per_layer(Slot::AttnNormWeight, take(lay.layer_norm), 1, dim);
    per_layer(Slot::QWeight, take(lay.wq), dim, dim);
    per_layer(Slot::KWeight, take(lay.wk), kv_dim, dim);
    per_layer(Slot::VWeight, take(lay.wv), kv_dim, dim);
    per_layer(Slot::OutWeight, take(lay.wo), dim, dim);
    per_layer(Slot::FfnNormWeight, take(lay.layer_norm), 1, dim);
    per_layer(Slot::GateWeight, take(lay.w1), hid, dim);
    per_layer(Slot::DownWeight, take(lay.w2), dim, hid);
    per_layer(Slot::UpWeight, take(lay.w3), hid, dim);
    add(Slot::FinalNormWeight, 0, take(lay.final_norm), {dim});
    take(lay.freq);  // RoPE tables: recomputed instead
  } else {
    per_layer(Slot::AttnNormWeight, take(lay.layer_norm), 1, dim);
    per_layer(Slot::FfnNormWeight, take(lay.layer_norm), 1, dim);
    add(Slot::FinalNormWeight, 0, take(lay.final_norm), {dim});
    add(Slot::TokenEmbedding, 0, take(lay.emb), {h.vocab_size, dim});
    per_layer(Slot::QWeight, take(lay.wq), dim, dim);
    per_layer(Slot::KWeight, take(lay.wk), kv_dim, dim);
    per_layer(Slot::VWeight, take(lay.wv), kv_dim, dim);
    per_layer(Slot::OutWeight, take(lay.wo), dim, dim);
    per_layer(Slot::GateWeight, take(lay.w1), hid, dim);
    per_layer(Slot::DownWeight, take(lay.w2), dim, hid);
    per_layer(Slot::UpWeight, take(lay.w3), hid, dim);
  }
  if (!h.shared_classifier) add(Slot::LmHead, 0, take(lay.cls), {h.vocab_size, dim});
  if (pos != file->size())
    throw Error(path + ": llama2.c weights do not end at the end of the file");
}

}  // namespace runnel

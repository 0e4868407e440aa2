// GGUF writer (v3) and the conversion of opened checkpoints to GGUF in
// llama.cpp's layout (see model.cpp for what differs from Hugging Face).
#include <fmt/format.h>

#include <cstdio>
#include <cstring>

#include "gguf/names.hpp"
#include "model/arch.hpp"
#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "runnel/loader.hpp"
#include "runnel/ops.hpp"
#include "runnel/tokenizer.hpp"

namespace runnel::gguf {

namespace {

template <class T>
void append(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void append_string(std::string& out, std::string_view s) {
  append<uint64_t>(out, s.size());
  out.append(s);
}

}  // namespace

Writer::Writer(uint64_t alignment) : alignment_(alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > (uint64_t(1) << 30))
    throw Error("GGUF writer: alignment must be a power of two");
  if (alignment != kDefaultAlignment) set_u32("general.alignment", uint32_t(alignment));
}

void Writer::put(const std::string& key, ValueType type, std::string payload) {
  for (Kv& kv : kv_)
    if (kv.key == key) {
      kv.type = type;
      kv.payload = std::move(payload);
      return;
    }
  kv_.push_back({key, type, std::move(payload)});
}

void Writer::set_u32(const std::string& key, uint32_t v) {
  std::string p;
  append(p, v);
  put(key, ValueType::U32, std::move(p));
}
void Writer::set_i32(const std::string& key, int32_t v) {
  std::string p;
  append(p, v);
  put(key, ValueType::I32, std::move(p));
}
void Writer::set_u64(const std::string& key, uint64_t v) {
  std::string p;
  append(p, v);
  put(key, ValueType::U64, std::move(p));
}
void Writer::set_f32(const std::string& key, float v) {
  std::string p;
  append(p, v);
  put(key, ValueType::F32, std::move(p));
}
void Writer::set_bool(const std::string& key, bool v) {
  put(key, ValueType::Bool, std::string(1, v ? '\1' : '\0'));
}
void Writer::set_string(const std::string& key, std::string_view v) {
  std::string p;
  append_string(p, v);
  put(key, ValueType::String, std::move(p));
}
void Writer::set_strings(const std::string& key, const std::vector<std::string>& v) {
  std::string p;
  append(p, uint32_t(ValueType::String));
  append<uint64_t>(p, v.size());
  for (const std::string& s : v) append_string(p, s);
  put(key, ValueType::Array, std::move(p));
}
void Writer::set_f32s(const std::string& key, const std::vector<float>& v) {
  std::string p;
  append(p, uint32_t(ValueType::F32));
  append<uint64_t>(p, v.size());
  for (float x : v) append(p, x);
  put(key, ValueType::Array, std::move(p));
}
void Writer::set_i32s(const std::string& key, const std::vector<int32_t>& v) {
  std::string p;
  append(p, uint32_t(ValueType::I32));
  append<uint64_t>(p, v.size());
  for (int32_t x : v) append(p, x);
  put(key, ValueType::Array, std::move(p));
}
void Writer::set_raw(const std::string& key, ValueType type, std::string payload) {
  put(key, type, std::move(payload));
}

void Writer::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape,
                        const void* data, size_t nbytes) {
  for (const T& t : tensors_)
    if (t.name == name) throw Error("GGUF writer: tensor \"" + name + "\" added twice");
  if (shape.empty() || shape.size() > size_t(kMaxDims))
    throw Error("GGUF writer: tensor \"" + name + "\": 1 to 4 dimensions");
  tensors_.push_back({name, type, shape, std::string(static_cast<const char*>(data), nbytes)});
}

std::string Writer::bytes() const {
  std::string out;
  append(out, kMagic);
  append<uint32_t>(out, 3);
  append<uint64_t>(out, tensors_.size());
  append<uint64_t>(out, kv_.size());
  for (const Kv& kv : kv_) {
    append_string(out, kv.key);
    append(out, uint32_t(kv.type));
    out += kv.payload;
  }
  auto pad = [&](uint64_t n) { return (n + alignment_ - 1) / alignment_ * alignment_; };
  uint64_t offset = 0;
  for (const T& t : tensors_) {
    append_string(out, t.name);
    append<uint32_t>(out, uint32_t(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it)
      append<uint64_t>(out, uint64_t(*it));
    append(out, uint32_t(t.type));
    append<uint64_t>(out, offset);
    offset = pad(offset + t.data.size());
  }
  if (tensors_.empty()) return out;
  out.resize(pad(out.size()), '\0');
  // Every tensor's data is padded to the alignment, the last one too, as
  // llama.cpp's gguf writer and gguf-py write it.
  for (const T& t : tensors_) {
    out += t.data;
    out.resize(pad(out.size()), '\0');
  }
  return out;
}

void Writer::write(const std::string& path) const {
  const std::string b = bytes();
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw Error(path + ": cannot write: " + std::strerror(errno));
  const size_t n = std::fwrite(b.data(), 1, b.size(), f);
  const bool ok = n == b.size() && std::fclose(f) == 0;
  if (!ok) throw Error(path + ": write failed");
}

void write_vocab(Writer& w, const Vocab& v) {
  switch (v.model) {
    case VocabModel::SentencePieceBpe:
      w.set_string("tokenizer.ggml.model", "llama");
      break;
    case VocabModel::ByteLevelBpe:
      w.set_string("tokenizer.ggml.model", "gpt2");
      w.set_strings("tokenizer.ggml.merges", v.merges);
      w.set_string("tokenizer.ggml.pre", v.pre_tokenizer);
      break;
    default:
      throw Error(
          "GGUF writer: only SentencePiece BPE and byte-level BPE vocabularies can be written");
  }
  w.set_strings("tokenizer.ggml.tokens", v.tokens);
  if (!v.scores.empty()) w.set_f32s("tokenizer.ggml.scores", v.scores);
  if (!v.types.empty()) {
    std::vector<int32_t> t;
    for (TokenType x : v.types) t.push_back(int32_t(x));
    w.set_i32s("tokenizer.ggml.token_type", t);
  }
  const std::pair<const char*, int32_t> ids[] = {{"tokenizer.ggml.bos_token_id", v.bos_id},
                                                 {"tokenizer.ggml.eos_token_id", v.eos_id},
                                                 {"tokenizer.ggml.unknown_token_id", v.unk_id},
                                                 {"tokenizer.ggml.padding_token_id", v.pad_id}};
  for (const auto& [key, id] : ids)
    if (id >= 0) w.set_u32(key, uint32_t(id));
  w.set_bool("tokenizer.ggml.add_bos_token", v.add_bos);
  w.set_bool("tokenizer.ggml.add_eos_token", v.add_eos);
  w.set_bool("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
  w.set_bool("tokenizer.ggml.remove_extra_whitespaces", v.remove_extra_whitespaces);
  if (!v.chat_template.empty()) w.set_string("tokenizer.chat_template", v.chat_template);
}

namespace {

using model::Slot;

// The slot and layer of a checkpoint tensor name, under the descriptor's
// names with or without its optional prefixes.
bool slot_of(const model::ArchDescriptor& arch, const std::string& name, Slot* slot,
             int64_t* layer) {
  for (const model::TensorName& n : arch.names) {
    std::vector<std::string> patterns = {n.name};
    for (const char* p : arch.optional_prefixes)
      if (std::string_view(n.name).starts_with(p)) patterns.push_back(n.name + std::strlen(p));
    for (const std::string& pat : patterns) {
      if (!model::name_matches(pat, name)) continue;
      *slot = n.slot;
      *layer = 0;
      if (const size_t p = pat.find("{}"); p != std::string::npos) {
        const size_t tail = pat.size() - p - 2;
        *layer = std::stoll(name.substr(p, name.size() - p - tail));
      }
      return true;
    }
  }
  return false;
}

// Reorders the rows of a [rows, cols] tensor: out row r = in row src(r).
template <class F>
std::string permute_rows(const Tensor& t, F src) {
  const int64_t rows = t.ndim() == 1 ? t.dim(0) : t.dim(0);
  const size_t row_bytes = t.nbytes() / size_t(rows);
  std::string out(t.nbytes(), '\0');
  const auto* in = static_cast<const char*>(t.data());
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out.data() + size_t(r) * row_bytes, in + size_t(src(r)) * row_bytes, row_bytes);
  return out;
}

// rope_freqs.weight for `rope` (the file keeps only linear scaling as keys):
// llama3 scaling as its per-dimension divisors, base inverse frequency over
// scaled, as llama.cpp's converter writes them; times the factors `rope`
// already carries (a GGUF written again).  Empty when there are none.
std::vector<float> rope_freqs(const RopeConfig& rope) {
  if (rope.scaling != RopeScaling::Llama3) return rope.freq_factors;
  RopeConfig plain = rope;
  plain.scaling = RopeScaling::None;
  plain.freq_factors.clear();
  const std::vector<float> base = ops::rope_inv_freq(plain, 1);
  const std::vector<float> scaled = ops::rope_inv_freq(rope, 1);
  std::vector<float> out(base.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = base[i] / scaled[i];
  return out;
}

void set_common(Writer& w, const std::string& a, const ModelConfig& c) {
  w.set_u32(a + ".embedding_length", uint32_t(c.hidden_size));
  w.set_u32(a + ".block_count", uint32_t(c.n_layers));
  w.set_u32(a + ".feed_forward_length", uint32_t(c.ffn_dim));
  w.set_u32(a + ".attention.head_count", uint32_t(c.n_heads));
  w.set_u32(a + ".attention.head_count_kv", uint32_t(c.n_kv_heads));
  if (c.head_dim * c.n_heads != c.hidden_size) {
    w.set_u32(a + ".attention.key_length", uint32_t(c.head_dim));
    w.set_u32(a + ".attention.value_length", uint32_t(c.head_dim));
  }
}

}  // namespace

void write_checkpoint(const Checkpoint& ck, const std::string& path, const Vocab* vocab,
                      int64_t file_type) {
  const ModelConfig& c = ck.config;
  const model::ArchDescriptor* arch = model::find_arch(c.family);
  if (!arch) throw Error("GGUF writer: unknown family " + c.family);
  auto unsupported = [&](const std::string& what) {
    throw Error(
        fmt::format("{}: GGUF writer: {} cannot be written as {} GGUF", ck.path, what, c.family));
  };
  Writer w;
  const std::string& a = c.family;
  w.set_string("general.architecture", a);
  if (file_type >= 0) w.set_u32("general.file_type", uint32_t(file_type));
  set_common(w, a, c);
  bool permute_qk = false;
  if (a == "llama") {
    if (c.norm != NormKind::RmsNorm || c.mlp != MlpKind::Gated || c.position != PositionKind::Rope)
      unsupported("this configuration");
    if (c.rope.scaling == RopeScaling::Linear) {
      w.set_string("llama.rope.scaling.type", "linear");
      w.set_f32("llama.rope.scaling.factor", c.rope.factor);
    } else if (c.rope.scaling == RopeScaling::Dynamic) {
      unsupported("RoPE scaling \"dynamic\" (llama.cpp's GGUF has no key for dynamic NTK scaling)");
    }
    if (std::vector<float> factors = rope_freqs(c.rope); !factors.empty())
      w.add_tensor("rope_freqs.weight", GgmlType::F32, {int64_t(factors.size())}, factors.data(),
                   factors.size() * sizeof(float));
    if (c.rope_style == RopeStyle::NeoX) {
      if (c.rope.rot_dim != c.head_dim) unsupported("partial rotary embeddings");
      permute_qk = true;
    }
    w.set_u32("llama.context_length", uint32_t(c.max_positions));
    w.set_f32("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
    w.set_f32("llama.rope.freq_base", c.rope.theta);
    w.set_u32("llama.rope.dimension_count", uint32_t(c.rope.rot_dim));
  } else if (a == "bloom") {
    if (c.qkv_layout != QkvLayout::FusedPerHead && c.qkv_layout != QkvLayout::FusedBlocks)
      unsupported("this QKV layout");
    w.set_f32("bloom.attention.layer_norm_epsilon", c.norm_eps);
  } else if (a == "opt") {
    w.set_f32("opt.attention.layer_norm_epsilon", c.norm_eps);
    w.set_u32("opt.context_length", uint32_t(c.max_positions));
    w.set_bool("opt.do_layer_norm_before", c.norm_placement == NormPlacement::Pre);
    w.set_u32("opt.word_embed_proj_dim", uint32_t(c.embed_dim));
    w.set_u32("opt.position_offset", uint32_t(c.position_offset));
    const char* act = c.activation == Activation::Relu       ? "relu"
                      : c.activation == Activation::Gelu     ? "gelu"
                      : c.activation == Activation::GeluTanh ? "gelu_new"
                                                             : "silu";
    w.set_string("opt.activation_function", act);
  } else {
    unsupported("family " + a);
  }
  if (c.bos_id >= 0) w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(c.bos_id));
  if (!c.eos_ids.empty()) w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(c.eos_ids[0]));
  if (vocab) write_vocab(w, *vocab);

  for (const auto& [name, e] : ck.weights.entries()) {
    Slot slot;
    int64_t layer = 0;
    if (!slot_of(*arch, name, &slot, &layer)) {
      bool ignored = false;
      for (const char* pat : arch->ignored) ignored = ignored || model::name_matches(pat, name);
      if (ignored) continue;
      throw Error(fmt::format("{}: GGUF writer: tensor \"{}\" has no GGUF name", e.source, name));
    }
    if (slot == Slot::LmHead && c.lm_head == LmHead::Tied) continue;
    const Tensor& t = e.tensor;
    if (!t.is_contiguous()) throw Error("GGUF writer: tensor \"" + name + "\" is not contiguous");
    const GgmlType type = ggml_type_of(t.dtype());
    std::vector<int64_t> shape(t.shape().begin(), t.shape().begin() + t.ndim());
    std::string data(static_cast<const char*>(t.data()), t.nbytes());
    const int64_t hd = c.head_dim;
    const bool is_q = slot == Slot::QWeight || slot == Slot::QBias;
    const bool is_k = slot == Slot::KWeight || slot == Slot::KBias;
    if (permute_qk && (is_q || is_k)) {
      // HF rotate-halves rows (h, j * hd/2 + i) -> interleaved rows (h, 2 * i + j).
      data = permute_rows(t, [hd](int64_t r) {
        const int64_t h = r / hd, within = r % hd, i = within / 2, j = within % 2;
        return h * hd + j * (hd / 2) + i;
      });
    }
    if (c.qkv_layout == QkvLayout::FusedPerHead &&
        (slot == Slot::QkvWeight || slot == Slot::QkvBias)) {
      // Per head [q, k, v] rows -> [q; k; v] blocks.
      const int64_t heads = c.n_heads;
      data = permute_rows(t, [hd, heads](int64_t r) {
        const int64_t part = r / (heads * hd), h = (r / hd) % heads, i = r % hd;
        return (h * 3 + part) * hd + i;
      });
    }
    w.add_tensor(tensor_name(slot, layer), type, shape, data.data(), data.size());
  }
  w.write(path);
}

}  // namespace runnel::gguf

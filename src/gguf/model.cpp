// GGUF models: the metadata of the llama, bloom and opt architectures mapped
// onto ModelConfig, the tensors onto the family descriptor's weight slots,
// and tokenizer.ggml.* onto a Vocab.  docs/gguf.md lists the keys.
//
// Layouts that differ from the Hugging Face checkpoints:
// - llama: llama.cpp's converter permutes the q/k rows of each head from HF's
//   rotate-halves order back to Meta's interleaved order, and ggml's "normal"
//   RoPE rotates adjacent pairs, so GGUF LLaMA models use RopeStyle::GptJ.
// - bloom: the converter regroups query_key_value from per-head [q, k, v] to
//   [q; k; v] row blocks (QkvLayout::FusedBlocks), and stores the tied head
//   again as output.weight.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "gguf/names.hpp"
#include "model/arch.hpp"
#include "runnel/error.hpp"
#include "runnel/gguf.hpp"
#include "runnel/loader.hpp"
#include "runnel/tokenizer.hpp"

namespace runnel::gguf {

namespace {

using model::Slot;

constexpr int64_t kMaxCount = int64_t(1) << 24;
// ModelConfig::validate's limits, checked here first so that the error names the GGUF key.
constexpr int64_t kMaxWidth = int64_t(1) << 20;  // hidden, ffn, head size
constexpr int64_t kMaxVocab = int64_t(1) << 22;
constexpr const char* kRopeFreqs = "rope_freqs.weight";

// Reads integer metadata and checks its range before it is used.
struct Meta {
  const File& f;
  std::string arch;  // "llama."

  int64_t count(const std::string& key, int64_t lo, int64_t hi) const {
    return check(key, f.get_int(arch + key), lo, hi);
  }
  int64_t count(const std::string& key, int64_t lo, int64_t hi, int64_t fallback) const {
    return f.find(arch + key) ? count(key, lo, hi) : fallback;
  }
  int64_t check(const std::string& key, int64_t v, int64_t lo, int64_t hi) const {
    if (v < lo || v > hi) {
      const Value* at = f.find(arch + key);
      f.fail(
          fmt::format("metadata key \"{}{}\" = {} is out of range [{}, {}]", arch, key, v, lo, hi),
          at ? at->offset : 0);
    }
    return v;
  }
  float real(const std::string& key) const { return float(f.get_float(arch + key)); }
  float real(const std::string& key, float fallback) const {
    return float(f.get_float(arch + key, fallback));
  }
};

bool has_tensor(const File& f, Slot slot, int64_t layer = 0) {
  return f.find_tensor(tensor_name(slot, layer)) != nullptr;
}
Bias bias_if(const File& f, Slot slot) { return has_tensor(f, slot) ? Bias::Present : Bias::None; }

// Rows of token_embd.weight: the vocabulary size.
int64_t vocab_rows(const File& f) {
  const TensorInfo* t = f.find_tensor("token_embd.weight");
  if (!t) throw Error(f.source() + ": missing tensor \"token_embd.weight\" (the token embeddings)");
  if (t->shape.size() != 2)
    f.fail("tensor \"token_embd.weight\": expected 2 dimensions", t->info_offset);
  if (t->shape[0] > kMaxVocab)
    f.fail(fmt::format("tensor \"token_embd.weight\": {} rows (the vocabulary) is more than {}",
                       t->shape[0], kMaxVocab),
           t->info_offset);
  return t->shape[0];
}

// Shared by the three families: sizes that llama.cpp keys the same way.
void read_sizes(const Meta& m, ModelConfig& c) {
  c.vocab_size = vocab_rows(m.f);
  c.hidden_size = m.count("embedding_length", 1, kMaxWidth);
  c.embed_dim = c.hidden_size;
  c.n_layers = m.count("block_count", 1, 4096);
  c.ffn_dim = m.count("feed_forward_length", 1, kMaxWidth);
  c.n_heads = m.count("attention.head_count", 1, 4096);
  c.n_kv_heads = m.count("attention.head_count_kv", 1, 4096, c.n_heads);
  if (m.f.find(m.arch + "attention.key_length")) {
    c.head_dim = m.count("attention.key_length", 1, kMaxWidth);
  } else {
    if (c.hidden_size % c.n_heads != 0)
      throw Error(
          fmt::format("{}: {}embedding_length {} is not a multiple of "
                      "attention.head_count {} and no attention.key_length is given",
                      m.f.source(), m.arch, c.hidden_size, c.n_heads));
    c.head_dim = c.hidden_size / c.n_heads;
  }
  const int64_t vlen = m.count("attention.value_length", 1, kMaxWidth, c.head_dim);
  if (vlen != c.head_dim)
    throw Error(
        fmt::format("{}: {}attention.value_length = {} differs from the key length {} "
                    "(not supported)",
                    m.f.source(), m.arch, vlen, c.head_dim));
}

// The checks of ModelConfig::validate that metadata can fail, made first so
// that the error names the GGUF key (validate names config.json's keys).
void check_metadata(const Meta& m, const ModelConfig& c) {
  auto bad = [&](const std::string& key, const std::string& what) {
    const Value* at = m.f.find(key);
    m.f.fail(fmt::format("metadata key \"{}\" {}", key, what), at ? at->offset : 0);
  };
  const std::string& a = m.arch;
  if (c.n_heads % c.n_kv_heads != 0)
    bad(a + "attention.head_count_kv",
        fmt::format("= {} does not divide {}attention.head_count = {}", c.n_kv_heads, a, c.n_heads));
  if (c.n_heads * c.head_dim > kMaxWidth)
    bad(a + "attention.head_count",
        fmt::format("= {} times the head size {} is more than {}", c.n_heads, c.head_dim,
                    kMaxWidth));
  const std::string eps_key = a + (c.norm == NormKind::RmsNorm ? "attention.layer_norm_rms_epsilon"
                                                                : "attention.layer_norm_epsilon");
  if (!(c.norm_eps >= 0.0f) || !std::isfinite(c.norm_eps))
    bad(eps_key, fmt::format("= {:g} must be finite and >= 0", c.norm_eps));
  if (c.position == PositionKind::Rope) {
    if (c.rope.rot_dim % 2 != 0 || c.rope.rot_dim > c.head_dim)
      bad(a + "rope.dimension_count",
          fmt::format("= {} must be even and at most the head size {}", c.rope.rot_dim,
                      c.head_dim));
    if (!(c.rope.theta > 0.0f) || !std::isfinite(c.rope.theta))
      bad(a + "rope.freq_base", fmt::format("= {:g} must be finite and positive", c.rope.theta));
    if (c.rope.scaling != RopeScaling::None &&
        (!(c.rope.factor > 0.0f) || !std::isfinite(c.rope.factor)))
      bad(a + (m.f.find(a + "rope.scaling.factor") ? "rope.scaling.factor" : "rope.scale_linear"),
          fmt::format("= {:g} must be finite and positive", c.rope.factor));
  }
}

// BOS / EOS / EOT ids, which must be rows of token_embd.weight (c.vocab_size),
// whether or not the file carries a vocabulary.
void special_ids(const File& f, ModelConfig& c) {
  auto id = [&](const char* key) -> int32_t {
    const Value* v = f.find(key);
    if (!v) return -1;
    const int64_t x = f.get_int(key);
    if (x == 0xFFFFFFFFll || x == -1) return -1;
    if (x < 0 || x > INT32_MAX)
      f.fail(fmt::format("metadata key \"{}\" = {} is not a token id", key, x), v->offset);
    if (x >= c.vocab_size)
      f.fail(fmt::format("{} = {} is outside the vocabulary of {} tokens (the rows of "
                         "token_embd.weight)",
                         key, x, c.vocab_size),
             v->offset);
    return int32_t(x);
  };
  c.bos_id = id("tokenizer.ggml.bos_token_id");
  c.eos_ids.clear();
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
    const int32_t e = id(key);
    if (e >= 0 && std::find(c.eos_ids.begin(), c.eos_ids.end(), e) == c.eos_ids.end())
      c.eos_ids.push_back(e);
  }
}

// rope_freqs.weight: f32 [rot_dim / 2] divisors of the RoPE inverse
// frequencies (llama.cpp's converter writes them for LLaMA 3.1's "llama3"
// scaling).  Empty when the file has none.
std::vector<float> rope_freqs(const File& f, int64_t rot_dim) {
  const TensorInfo* t = f.find_tensor(kRopeFreqs);
  if (!t) return {};
  const int64_t half = rot_dim / 2;
  if (t->type->type != GgmlType::F32)
    f.fail(fmt::format("tensor \"{}\": type {} (expected F32)", kRopeFreqs, t->type->name),
           t->info_offset);
  if (t->shape.size() != 1 || t->shape[0] != half) {
    std::string shape;
    for (int64_t d : t->shape) shape += fmt::format("{}{}", shape.empty() ? "" : ", ", d);
    f.fail(fmt::format("tensor \"{}\": shape [{}] (expected [{}], half the {} rotary dims)",
                       kRopeFreqs, shape, half, rot_dim),
           t->info_offset);
  }
  const uint8_t* p = f.tensor_data(*t);  // checks that the data lies in the file
  std::vector<float> out(static_cast<size_t>(half));
  std::memcpy(out.data(), p, out.size() * sizeof(float));  // the data may be unaligned
  for (size_t i = 0; i < out.size(); ++i)
    if (!(out[i] > 0.0f) || !std::isfinite(out[i]))
      f.fail(fmt::format("tensor \"{}\": factor [{}] = {:g} must be finite and positive",
                         kRopeFreqs, i, out[i]),
             t->info_offset);
  return out;
}

void read_llama(const Meta& m, ModelConfig& c) {
  read_sizes(m, c);
  c.max_positions = m.count("context_length", 1, int64_t(1) << 24);
  c.norm = NormKind::RmsNorm;
  c.norm_placement = NormPlacement::Pre;
  c.norm_bias = Bias::None;
  c.norm_eps = m.real("attention.layer_norm_rms_epsilon");
  c.embedding_norm = EmbeddingNorm::None;
  c.final_norm = FinalNorm::Present;
  c.projection = EmbeddingProjection::None;

  c.position = PositionKind::Rope;
  c.position_offset = 0;
  c.rope_style = RopeStyle::GptJ;  // ggml's normal mode on the converter's permuted q/k
  c.rope.rot_dim = m.count("rope.dimension_count", 2, kMaxCount, c.head_dim);
  c.rope.theta = m.real("rope.freq_base", 10000.0f);
  c.rope.max_positions = c.max_positions;
  c.rope.scaling = RopeScaling::None;
  c.rope.factor = 1.0f;
  const std::string type(m.f.get_string(m.arch + "rope.scaling.type", "none"));
  if (type == "linear") {
    c.rope.scaling = RopeScaling::Linear;
    c.rope.factor = m.real("rope.scaling.factor");
  } else if (type != "none") {
    throw Error(fmt::format("{}: {}rope.scaling.type = \"{}\" is not supported (none, linear)",
                            m.f.source(), m.arch, type));
  } else if (m.f.find(m.arch + "rope.scale_linear")) {  // the older spelling
    const float s = m.real("rope.scale_linear");
    if (s != 1.0f) {
      c.rope.scaling = RopeScaling::Linear;
      c.rope.factor = s;
    }
  }
  if (m.f.find(m.arch + "rope.scaling.original_context_length"))
    c.rope.original_max_positions =
        m.count("rope.scaling.original_context_length", 1, int64_t(1) << 24);
  c.rope.freq_factors = rope_freqs(m.f, c.rope.rot_dim);

  c.qkv_layout = QkvLayout::Separate;
  c.qkv_bias = bias_if(m.f, Slot::QBias);
  c.out_bias = bias_if(m.f, Slot::OutBias);
  c.attn_scale = 1.0f / std::sqrt(float(c.head_dim));
  c.mlp = MlpKind::Gated;
  c.activation = Activation::Silu;
  c.mlp_bias = bias_if(m.f, Slot::UpBias);
  c.lm_head = has_tensor(m.f, Slot::LmHead) ? LmHead::Separate : LmHead::Tied;
}

void read_bloom(const Meta& m, ModelConfig& c) {
  read_sizes(m, c);
  if (c.head_dim * c.n_heads != c.hidden_size)
    throw Error(
        fmt::format("{}: bloom: embedding_length {} must be attention.head_count {} times "
                    "the head size",
                    m.f.source(), c.hidden_size, c.n_heads));
  c.max_positions = 0;  // ALiBi: context_length is only a hint
  c.norm = NormKind::LayerNorm;
  c.norm_placement = NormPlacement::Pre;
  c.norm_bias = Bias::Present;
  c.norm_eps = m.real("attention.layer_norm_epsilon");
  c.embedding_norm = EmbeddingNorm::LayerNorm;
  c.final_norm = FinalNorm::Present;
  c.projection = EmbeddingProjection::None;
  c.position = PositionKind::Alibi;
  c.position_offset = 0;
  c.qkv_layout = QkvLayout::FusedBlocks;
  c.qkv_bias = bias_if(m.f, Slot::QkvBias);
  c.out_bias = bias_if(m.f, Slot::OutBias);
  c.attn_scale = 1.0f / std::sqrt(float(c.head_dim));
  c.mlp = MlpKind::Plain;
  c.activation = Activation::GeluTanh;
  c.mlp_bias = bias_if(m.f, Slot::UpBias);
  c.lm_head = has_tensor(m.f, Slot::LmHead) ? LmHead::Separate : LmHead::Tied;
}

Activation opt_activation(const Meta& m) {
  const std::string a(m.f.get_string(m.arch + "activation_function", "relu"));
  if (a == "relu") return Activation::Relu;
  if (a == "gelu") return Activation::Gelu;
  if (a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "gelu_fast") return Activation::GeluTanh;
  if (a == "silu" || a == "swish") return Activation::Silu;
  throw Error(
      fmt::format("{}: {}activation_function = \"{}\" is not supported", m.f.source(), m.arch, a));
}

// runnel's own `opt` architecture (docs/gguf.md).
void read_opt(const Meta& m, ModelConfig& c) {
  read_sizes(m, c);
  if (c.n_kv_heads != c.n_heads || c.head_dim * c.n_heads != c.hidden_size)
    throw Error(
        fmt::format("{}: opt: embedding_length {} must be attention.head_count {} times "
                    "the head size, without grouped-query attention",
                    m.f.source(), c.hidden_size, c.n_heads));
  c.embed_dim = m.count("word_embed_proj_dim", 1, kMaxCount, c.hidden_size);
  c.max_positions = m.count("context_length", 1, int64_t(1) << 24);
  const bool pre = m.f.get_bool(m.arch + "do_layer_norm_before", true);
  c.norm = NormKind::LayerNorm;
  c.norm_placement = pre ? NormPlacement::Pre : NormPlacement::Post;
  c.norm_bias = Bias::Present;
  c.norm_eps = m.real("attention.layer_norm_epsilon", 1e-5f);
  c.embedding_norm = EmbeddingNorm::None;
  c.final_norm = has_tensor(m.f, Slot::FinalNormWeight) ? FinalNorm::Present : FinalNorm::None;
  c.projection =
      c.embed_dim != c.hidden_size ? EmbeddingProjection::InOut : EmbeddingProjection::None;
  c.position = PositionKind::Learned;
  c.position_offset = m.count("position_offset", 0, 1024, 2);
  c.qkv_layout = QkvLayout::Separate;
  c.qkv_bias = bias_if(m.f, Slot::QBias);
  c.out_bias = bias_if(m.f, Slot::OutBias);
  c.attn_scale = 1.0f / std::sqrt(float(c.head_dim));
  c.mlp = MlpKind::Plain;
  c.activation = opt_activation(m);
  c.mlp_bias = bias_if(m.f, Slot::UpBias);
  c.lm_head = has_tensor(m.f, Slot::LmHead) ? LmHead::Separate : LmHead::Tied;
}

struct ArchReader {
  const char* name;
  void (*read)(const Meta&, ModelConfig&);
};
constexpr ArchReader kArchReaders[] = {
    {"llama", read_llama},
    {"bloom", read_bloom},
    {"opt", read_opt},
};

// Tensors the graph does not use as weights: some converters' leftovers, and
// rope_freqs.weight, which model_config reads into RopeConfig::freq_factors.
bool ignorable(std::string_view name, const ModelConfig& c) {
  return model::name_matches("blk.{}.attn_rot_embd.weight", name) ||
         (name == kRopeFreqs && c.family == "llama");
}

std::string printable(std::string_view s) {
  std::string out;
  for (char ch : s.substr(0, 80)) {
    const auto c = static_cast<unsigned char>(ch);
    out += c < 0x20 || c >= 0x7f || c == '"' ? fmt::format("\\x{:02x}", c) : std::string(1, ch);
  }
  return out;
}

}  // namespace

ModelConfig model_config(const File& f) {
  const std::string arch(f.get_string("general.architecture"));
  const ArchReader* reader = nullptr;
  for (const ArchReader& r : kArchReaders)
    if (arch == r.name) reader = &r;
  if (!reader)
    throw Error(
        fmt::format("{}: general.architecture \"{}\" is not supported (supported: llama, "
                    "bloom, opt)",
                    f.source(), printable(arch)));
  ModelConfig c;
  c.family = reader->name;
  c.source = f.source();
  const Meta m{f, arch + "."};
  reader->read(m, c);
  special_ids(f, c);
  check_metadata(m, c);
  c.validate();
  return c;
}

std::optional<Vocab> read_vocab(const File& f) {
  const Value* mv = f.find("tokenizer.ggml.model");
  if (!mv) return std::nullopt;
  const std::string model(f.get_string("tokenizer.ggml.model"));
  if (model == "no_vocab" || model == "none") return std::nullopt;
  Vocab v;
  const bool spm = model == "llama";
  if (spm)
    v.model = VocabModel::SentencePieceBpe;
  else if (model == "gpt2")
    v.model = VocabModel::ByteLevelBpe;
  else
    f.fail(fmt::format("tokenizer.ggml.model \"{}\" is not supported (supported: llama, gpt2)",
                       printable(model)),
           mv->offset);
  v.tokens = f.get_strings("tokenizer.ggml.tokens");
  const size_t n = v.tokens.size();
  if (n == 0) f.fail("tokenizer.ggml.tokens is empty", f.find("tokenizer.ggml.tokens")->offset);
  auto sized = [&](const char* key, size_t got) {
    if (got != n)
      f.fail(fmt::format("{} has {} entries but tokenizer.ggml.tokens has {}", key, got, n),
             f.find(key)->offset);
  };
  if (f.find("tokenizer.ggml.scores")) {
    v.scores = f.get_floats("tokenizer.ggml.scores");
    sized("tokenizer.ggml.scores", v.scores.size());
  }
  if (f.find("tokenizer.ggml.token_type")) {
    const std::vector<int64_t> types = f.get_ints("tokenizer.ggml.token_type");
    sized("tokenizer.ggml.token_type", types.size());
    v.types.reserve(n);
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] < 0 || types[i] > 6)
        f.fail(fmt::format("tokenizer.ggml.token_type[{}] = {} is not a token type (0 to 6)", i,
                           types[i]),
               f.find("tokenizer.ggml.token_type")->offset);
      v.types.push_back(static_cast<TokenType>(types[i]));
    }
  }
  if (!spm) {
    v.merges = f.get_strings("tokenizer.ggml.merges");
    v.pre_tokenizer = std::string(f.get_string("tokenizer.ggml.pre", "default"));
  }
  auto id = [&](const char* key, int32_t fallback) -> int32_t {
    const Value* val = f.find(key);
    if (!val) return fallback < int64_t(n) ? fallback : -1;
    const int64_t x = f.get_int(key);
    if (x == 0xFFFFFFFFll || x == -1) return -1;
    if (x < 0 || x >= int64_t(n))
      f.fail(fmt::format("{} = {} is outside the vocabulary of {} tokens", key, x, n), val->offset);
    return int32_t(x);
  };
  // llama.cpp's defaults for SentencePiece vocabularies: <unk> 0, <s> 1, </s> 2.
  v.bos_id = id("tokenizer.ggml.bos_token_id", spm ? 1 : -1);
  v.eos_id = id("tokenizer.ggml.eos_token_id", spm ? 2 : -1);
  v.unk_id = id("tokenizer.ggml.unknown_token_id", spm ? 0 : -1);
  v.pad_id = id("tokenizer.ggml.padding_token_id", -1);
  v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", spm) && v.bos_id >= 0;
  v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false) && v.eos_id >= 0;
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", spm);
  v.remove_extra_whitespaces = f.get_bool("tokenizer.ggml.remove_extra_whitespaces", false);
  v.chat_template = std::string(f.get_string("tokenizer.chat_template", ""));
  if (!v.chat_template.empty()) v.chat_template_origin = f.source() + ": tokenizer.chat_template";
  return v;
}

void load_checkpoint(const std::string& path, Checkpoint& ck) {
  auto mapped = std::make_shared<MappedFile>(path);
  const void* base = mapped->data();
  const size_t size = mapped->size();
  const File f = File::parse(base, size, path, mapped);
  if (f.tensors().empty())
    throw Error(path +
                ": this GGUF file has no tensors (a vocab-only file holds a tokenizer, not a "
                "model)");
  ck.config = model_config(f);
  ck.format = "gguf";
  ck.file_type = f.get_int("general.file_type", -1);
  const model::ArchDescriptor* arch = model::find_arch(ck.config.family);
  if (!arch) throw Error(path + ": no descriptor for family " + ck.config.family);
  ck.weights.keep_alive(mapped);

  for (const TensorInfo& t : f.tensors()) {
    if (ignorable(t.name, ck.config)) continue;
    Slot slot;
    int64_t layer = 0;
    if (!parse_tensor_name(t.name, &slot, &layer))
      f.fail(fmt::format("tensor \"{}\" is not a tensor of the {} architecture", printable(t.name),
                         ck.config.family),
             t.info_offset);
    if (model::is_layer_slot(slot) && layer >= ck.config.n_layers)
      f.fail(fmt::format("tensor \"{}\": block {} but {}.block_count = {}", t.name, layer,
                         ck.config.family, ck.config.n_layers),
             t.info_offset);
    const std::string name = model::tensor_name(*arch, slot, layer);
    if (name.empty())
      f.fail(fmt::format("tensor \"{}\" ({}) has no place in a {} model", t.name,
                         model::slot_name(slot), ck.config.family),
             t.info_offset);
    Tensor view = f.tensor(t);  // throws for types with no runnel dtype
    if (!traits(view.dtype()).is_float)
      f.fail(fmt::format("tensor \"{}\": type {} is not a weight type (F32, F16, BF16, "
                         "Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)",
                         t.name, t.type->name),
             t.info_offset);
    const std::string source = fmt::format("{} (GGUF tensor \"{}\")", path, t.name);
    // Plain types need their element alignment; quantized blocks their f16 fields'.
    const DTypeTraits& vt = traits(view.dtype());
    const size_t elem = vt.block_size > 1 ? 2 : size_t(vt.type_size);
    if (reinterpret_cast<uintptr_t>(view.data()) % elem != 0) {
      // Only a file written with general.alignment below the element size gets here.
      auto copy = std::make_shared<HostBuffer>(size_t(t.nbytes));
      std::memcpy(copy->data(), view.data(), size_t(t.nbytes));
      view = Tensor::view(copy->data(), view.dtype(), t.shape.data(), int(t.shape.size()));
      ck.weights.keep_alive(copy);
    }
    ck.weights.add(name, view, source, t.name);
  }
  if (auto v = read_vocab(f)) ck.vocab = std::make_shared<const Vocab>(std::move(*v));
}

}  // namespace runnel::gguf

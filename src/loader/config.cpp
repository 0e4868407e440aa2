// config.json parsing (dispatch on model_type to the family descriptors) and
// ModelConfig validation.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "loader/config_reader.hpp"
#include "loader/json_util.hpp"
#include "model/arch.hpp"
#include "runnel/config.hpp"
#include "runnel/error.hpp"

namespace runnel {

std::string_view to_string(NormKind v) {
  return v == NormKind::LayerNorm ? "layernorm" : "rmsnorm";
}
std::string_view to_string(NormPlacement v) { return v == NormPlacement::Pre ? "pre" : "post"; }
std::string_view to_string(PositionKind v) {
  switch (v) {
    case PositionKind::Learned:
      return "learned";
    case PositionKind::Rope:
      return "rope";
    case PositionKind::Alibi:
      return "alibi";
  }
  return "?";
}
std::string_view to_string(MlpKind v) { return v == MlpKind::Plain ? "plain" : "gated"; }
std::string_view to_string(QkvLayout v) {
  switch (v) {
    case QkvLayout::Separate:
      return "separate";
    case QkvLayout::FusedPerHead:
      return "fused-per-head";
    case QkvLayout::FusedBlocks:
      return "fused-blocks";
  }
  return "?";
}
std::string_view to_string(RopeStyle v) { return v == RopeStyle::NeoX ? "neox" : "gptj"; }
std::string_view to_string(RopeScaling v) {
  switch (v) {
    case RopeScaling::None:
      return "none";
    case RopeScaling::Linear:
      return "linear";
    case RopeScaling::Dynamic:
      return "dynamic";
    case RopeScaling::Llama3:
      return "llama3";
  }
  return "?";
}
std::string_view to_string(Activation v) {
  switch (v) {
    case Activation::Relu:
      return "relu";
    case Activation::Gelu:
      return "gelu";
    case Activation::GeluTanh:
      return "gelu_tanh";
    case Activation::Silu:
      return "silu";
  }
  return "?";
}

namespace {

constexpr int64_t kMaxWidth = int64_t(1) << 20;  // hidden, ffn, head_dim
constexpr int64_t kMaxVocab = int64_t(1) << 22;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxPositions = int64_t(1) << 24;

}  // namespace

void ModelConfig::validate() const {
  auto fail = [&](const std::string& what) { throw Error(source + ": " + what); };
  auto range = [&](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) fail(fmt::format("{} = {} is out of range [{}, {}]", name, v, lo, hi));
  };
  if (family.empty()) fail("no model family");
  range("vocab_size", vocab_size, 1, kMaxVocab);
  range("hidden_size", hidden_size, 1, kMaxWidth);
  range("embedding width", embed_dim, 1, kMaxWidth);
  range("number of layers", n_layers, 1, kMaxLayers);
  range("number of attention heads", n_heads, 1, kMaxHeads);
  range("number of key/value heads", n_kv_heads, 1, kMaxHeads);
  range("head_dim", head_dim, 1, kMaxWidth);
  range("ffn size", ffn_dim, 1, kMaxWidth);
  range("max_position_embeddings", max_positions, 0, kMaxPositions);
  if (n_heads % n_kv_heads != 0)
    fail(
        fmt::format("inconsistent head counts: {} attention heads is not a multiple of {} "
                    "key/value heads",
                    n_heads, n_kv_heads));
  if (n_heads * head_dim > kMaxWidth) fail("n_heads * head_dim is too large");
  if (!(attn_scale > 0.0f) || !std::isfinite(attn_scale)) fail("attention scale must be positive");
  if (!(norm_eps >= 0.0f) || !std::isfinite(norm_eps)) fail("norm epsilon must be >= 0");

  if (norm == NormKind::RmsNorm && norm_bias == Bias::Present)
    fail("RMSNorm has no bias; norm_bias must be none");
  if (projection == EmbeddingProjection::None && embed_dim != hidden_size)
    fail(fmt::format("embedding width {} differs from hidden_size {} without a projection",
                     embed_dim, hidden_size));
  if (qkv_layout != QkvLayout::Separate && n_kv_heads != n_heads)
    fail("a fused QKV layout needs as many key/value heads as query heads");
  if (mlp == MlpKind::Gated && activation != Activation::Silu)
    fail(fmt::format("a gated MLP with activation {} is not supported (only silu)",
                     to_string(activation)));

  switch (position) {
    case PositionKind::Learned:
      range("max_position_embeddings", max_positions, 1, kMaxPositions);
      range("position offset", position_offset, 0, 1024);
      break;
    case PositionKind::Rope:
      if (rope.rot_dim < 2 || rope.rot_dim > head_dim || rope.rot_dim % 2 != 0)
        fail(fmt::format("rotary dims {} must be even and in [2, head_dim = {}]", rope.rot_dim,
                         head_dim));
      if (!(rope.theta > 0.0f) || !std::isfinite(rope.theta)) fail("rope_theta must be positive");
      if (rope.scaling != RopeScaling::None &&
          (!(rope.factor > 0.0f) || !std::isfinite(rope.factor)))
        fail("rope_scaling.factor must be positive");
      if (rope.scaling == RopeScaling::Dynamic && rope.max_positions < 1)
        fail("dynamic RoPE scaling needs max_position_embeddings");
      if (rope.scaling == RopeScaling::Llama3) {
        if (!(rope.low_freq_factor > 0.0f) || !(rope.high_freq_factor > rope.low_freq_factor) ||
            !std::isfinite(rope.high_freq_factor))
          fail("rope_scaling: need 0 < low_freq_factor < high_freq_factor");
        range("rope_scaling.original_max_position_embeddings", rope.original_max_positions, 1,
              kMaxPositions);
      }
      if (!rope.freq_factors.empty()) {
        if (int64_t(rope.freq_factors.size()) != rope.rot_dim / 2)
          fail(fmt::format("rope_freqs: {} frequency factors for {} rotary dims (expected {})",
                           rope.freq_factors.size(), rope.rot_dim, rope.rot_dim / 2));
        for (size_t i = 0; i < rope.freq_factors.size(); ++i)
          if (!(rope.freq_factors[i] > 0.0f) || !std::isfinite(rope.freq_factors[i]))
            fail(fmt::format("rope_freqs[{}] = {:g} must be finite and positive", i,
                             rope.freq_factors[i]));
      }
      break;
    case PositionKind::Alibi:
      break;
  }
  for (int32_t id : eos_ids)
    if (id < 0) fail("negative eos token id");
}

std::string ModelConfig::describe() const {
  std::string s;
  s += fmt::format(
      "family {}, vocab {}, hidden {}, embed {}, layers {}, heads {}/{} x {}, ffn {}\n", family,
      vocab_size, hidden_size, embed_dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim);
  s += fmt::format(
      "norm {} {} (bias {}, eps {:g}), embedding norm {}, final norm {}, projection {}\n",
      to_string(norm), to_string(norm_placement), norm_bias == Bias::Present, norm_eps,
      embedding_norm == EmbeddingNorm::LayerNorm, final_norm == FinalNorm::Present,
      projection == EmbeddingProjection::InOut);
  s += fmt::format("positions {}", to_string(position));
  if (position == PositionKind::Learned)
    s += fmt::format(" (max {}, offset {})", max_positions, position_offset);
  if (position == PositionKind::Rope) {
    s += fmt::format(" ({}, theta {:g}, dims {}, scaling {} x{:g}", to_string(rope_style),
                     rope.theta, rope.rot_dim, to_string(rope.scaling), rope.factor);
    if (!rope.freq_factors.empty())
      s += fmt::format(", {} frequency factors", rope.freq_factors.size());
    s += ")";
  }
  s += "\n";
  s += fmt::format("qkv {} (bias {}), out bias {}, mlp {} {} (bias {}), lm head {}\n",
                   to_string(qkv_layout), qkv_bias == Bias::Present, out_bias == Bias::Present,
                   to_string(mlp), to_string(activation), mlp_bias == Bias::Present,
                   lm_head == LmHead::Tied ? "tied" : "separate");
  return s;
}

ModelConfig parse_config(std::string_view json_text, const std::string& source) {
  check_json_depth(json_text, 64, source);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": invalid JSON: " + e.what());
  }
  const ConfigReader r(j, source);
  const std::string type = r.get_string({"model_type"}, "");
  std::string known;
  for (const std::string& f : supported_families()) known += (known.empty() ? "" : ", ") + f;
  if (type.empty())
    throw Error(source + ": missing key \"model_type\" (expected one of " + known + ")");
  const model::ArchDescriptor* arch = model::find_arch(type);
  if (!arch)
    throw Error(source + ": model_type: unknown model type \"" + type + "\" (supported: " + known +
                ")");
  ModelConfig c;
  c.family = arch->family;
  c.source = source;
  arch->read_config(r, c);
  c.validate();
  return c;
}

ModelConfig load_config(const std::string& path) {
  return parse_config(read_text_file(path, size_t(16) << 20), path);
}

std::vector<std::string> supported_families() {
  std::vector<std::string> out;
  for (const model::ArchDescriptor* a : model::all_archs()) out.emplace_back(a->family);
  return out;
}

}  // namespace runnel

// LLaMA (transformers' modeling_llama.py): RMSNorm before each block, RoPE
// (rotate-halves) with θ and rope_scaling (linear, dynamic, llama3) from the
// config, grouped-query attention, SwiGLU, optional attention_bias / mlp_bias,
// tie_word_embeddings and an explicit head_dim.
#include <nlohmann/json.hpp>

#include <cmath>

#include "loader/config_reader.hpp"
#include "model/arch.hpp"

namespace runnel::model {
namespace {

void read_rope_scaling(const ConfigReader& r, ModelConfig& c) {
  const nlohmann::json* obj = r.get_object("rope_scaling");
  c.rope.scaling = RopeScaling::None;
  c.rope.factor = 1.0f;
  if (!obj) return;
  const ConfigReader s = r.nested(*obj, "rope_scaling");
  const std::string type = s.get_string({"rope_type", "type"}, "");
  if (type.empty()) s.fail("rope_type", "missing (expected linear, dynamic or llama3)");
  if (type == "default") return;
  if (type == "linear") {
    c.rope.scaling = RopeScaling::Linear;
  } else if (type == "dynamic") {
    c.rope.scaling = RopeScaling::Dynamic;
  } else if (type == "llama3") {
    c.rope.scaling = RopeScaling::Llama3;
    c.rope.low_freq_factor = float(s.get_float({"low_freq_factor"}));
    c.rope.high_freq_factor = float(s.get_float({"high_freq_factor"}));
    c.rope.original_max_positions = s.get_int({"original_max_position_embeddings"});
  } else {
    s.fail("rope_type",
           "unsupported RoPE scaling \"" + type + "\" (supported: linear, dynamic, llama3)");
  }
  c.rope.factor = float(s.get_float({"factor"}));
}

void read_llama(const ConfigReader& r, ModelConfig& c) {
  c.vocab_size = r.get_int({"vocab_size"});
  c.hidden_size = r.get_int({"hidden_size"});
  c.embed_dim = c.hidden_size;
  c.n_layers = r.get_int({"num_hidden_layers"});
  c.n_heads = r.get_int({"num_attention_heads"});
  c.n_kv_heads = r.get_int({"num_key_value_heads"}, c.n_heads);
  if (r.has({"head_dim"})) {
    c.head_dim = r.get_int({"head_dim"});
  } else {
    if (c.n_heads > 0 && c.hidden_size % c.n_heads != 0)
      r.fail("num_attention_heads", "inconsistent head counts: hidden_size " +
                                        std::to_string(c.hidden_size) + " is not a multiple of " +
                                        std::to_string(c.n_heads) +
                                        " heads and no head_dim is given");
    c.head_dim = c.n_heads > 0 ? c.hidden_size / c.n_heads : 0;
  }
  c.ffn_dim = r.get_int({"intermediate_size"});
  c.max_positions = r.get_int({"max_position_embeddings"}, 2048);

  c.norm = NormKind::RmsNorm;
  c.norm_placement = NormPlacement::Pre;
  c.norm_bias = Bias::None;
  c.norm_eps = float(r.get_float({"rms_norm_eps"}, 1e-6));
  c.embedding_norm = EmbeddingNorm::None;
  c.final_norm = FinalNorm::Present;
  c.projection = EmbeddingProjection::None;

  c.position = PositionKind::Rope;
  c.position_offset = 0;
  c.rope_style = RopeStyle::NeoX;
  c.rope.rot_dim = c.head_dim;
  c.rope.theta = float(r.get_float({"rope_theta"}, 10000.0));
  c.rope.max_positions = c.max_positions;
  read_rope_scaling(r, c);

  const Bias attn_bias = r.get_bool({"attention_bias"}, false) ? Bias::Present : Bias::None;
  c.qkv_layout = QkvLayout::Separate;
  c.qkv_bias = attn_bias;
  c.out_bias = attn_bias;
  c.attn_scale = c.head_dim > 0 ? 1.0f / std::sqrt(float(c.head_dim)) : 0.0f;

  c.mlp = MlpKind::Gated;
  c.activation = activation_from_hf(r, "hidden_act", r.get_string({"hidden_act"}, "silu"));
  c.mlp_bias = r.get_bool({"mlp_bias"}, false) ? Bias::Present : Bias::None;

  c.lm_head = r.get_bool({"tie_word_embeddings"}, false) ? LmHead::Tied : LmHead::Separate;
  const auto bos = r.get_ids("bos_token_id");
  c.bos_id = bos.empty() ? -1 : bos[0];
  c.eos_ids = r.get_ids("eos_token_id");
}

constexpr TensorName kNames[] = {
    {Slot::TokenEmbedding, "model.embed_tokens.weight"},
    {Slot::FinalNormWeight, "model.norm.weight"},
    {Slot::LmHead, "lm_head.weight"},
    {Slot::AttnNormWeight, "model.layers.{}.input_layernorm.weight"},
    {Slot::QWeight, "model.layers.{}.self_attn.q_proj.weight"},
    {Slot::QBias, "model.layers.{}.self_attn.q_proj.bias"},
    {Slot::KWeight, "model.layers.{}.self_attn.k_proj.weight"},
    {Slot::KBias, "model.layers.{}.self_attn.k_proj.bias"},
    {Slot::VWeight, "model.layers.{}.self_attn.v_proj.weight"},
    {Slot::VBias, "model.layers.{}.self_attn.v_proj.bias"},
    {Slot::OutWeight, "model.layers.{}.self_attn.o_proj.weight"},
    {Slot::OutBias, "model.layers.{}.self_attn.o_proj.bias"},
    {Slot::FfnNormWeight, "model.layers.{}.post_attention_layernorm.weight"},
    {Slot::GateWeight, "model.layers.{}.mlp.gate_proj.weight"},
    {Slot::GateBias, "model.layers.{}.mlp.gate_proj.bias"},
    {Slot::UpWeight, "model.layers.{}.mlp.up_proj.weight"},
    {Slot::UpBias, "model.layers.{}.mlp.up_proj.bias"},
    {Slot::DownWeight, "model.layers.{}.mlp.down_proj.weight"},
    {Slot::DownBias, "model.layers.{}.mlp.down_proj.bias"},
};
constexpr const char* kIgnored[] = {"model.layers.{}.self_attn.rotary_emb.inv_freq"};

}  // namespace

const ArchDescriptor kLlamaArch = {"llama", read_llama, kNames, {}, kIgnored};

}  // namespace runnel::model

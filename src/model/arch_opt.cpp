// OPT (transformers' modeling_opt.py): learned positions with an offset of 2,
// LayerNorm before or after each block (do_layer_norm_before), optional
// project_in / project_out when word_embed_proj_dim != hidden_size, ReLU,
// biases everywhere, LM head tied to the token embeddings.
#include <cmath>

#include "loader/config_reader.hpp"
#include "model/arch.hpp"

namespace runnel::model {
namespace {

void read_opt(const ConfigReader& r, ModelConfig& c) {
  c.vocab_size = r.get_int({"vocab_size"});
  c.hidden_size = r.get_int({"hidden_size"});
  c.embed_dim = r.get_int({"word_embed_proj_dim"}, c.hidden_size);
  c.n_layers = r.get_int({"num_hidden_layers"});
  c.n_heads = r.get_int({"num_attention_heads"});
  c.n_kv_heads = c.n_heads;
  c.head_dim = c.n_heads > 0 ? c.hidden_size / c.n_heads : 0;
  if (c.n_heads > 0 && c.hidden_size % c.n_heads != 0)
    r.fail("num_attention_heads", "inconsistent head counts: hidden size " +
                                      std::to_string(c.hidden_size) + " is not a multiple of " +
                                      std::to_string(c.n_heads) + " heads");
  c.ffn_dim = r.get_int({"ffn_dim"});
  c.max_positions = r.get_int({"max_position_embeddings"});

  if (!r.get_bool({"layer_norm_elementwise_affine"}, true))
    r.fail("layer_norm_elementwise_affine", "false is not supported");
  const bool pre = r.get_bool({"do_layer_norm_before"}, true);
  c.norm = NormKind::LayerNorm;
  c.norm_placement = pre ? NormPlacement::Pre : NormPlacement::Post;
  c.norm_bias = Bias::Present;
  c.norm_eps = 1e-5f;  // modeling_opt.py uses nn.LayerNorm's default
  c.embedding_norm = EmbeddingNorm::None;
  c.final_norm = pre && !r.get_bool({"_remove_final_layer_norm"}, false) ? FinalNorm::Present
                                                                         : FinalNorm::None;
  c.projection =
      c.embed_dim != c.hidden_size ? EmbeddingProjection::InOut : EmbeddingProjection::None;

  c.position = PositionKind::Learned;
  c.position_offset = 2;

  const Bias bias = r.get_bool({"enable_bias"}, true) ? Bias::Present : Bias::None;
  c.qkv_layout = QkvLayout::Separate;
  c.qkv_bias = bias;
  c.out_bias = bias;
  c.attn_scale = c.head_dim > 0 ? 1.0f / std::sqrt(float(c.head_dim)) : 0.0f;

  c.mlp = MlpKind::Plain;
  c.activation =
      activation_from_hf(r, "activation_function", r.get_string({"activation_function"}, "relu"));
  c.mlp_bias = bias;

  c.lm_head = r.get_bool({"tie_word_embeddings"}, true) ? LmHead::Tied : LmHead::Separate;
  const auto bos = r.get_ids("bos_token_id");
  c.bos_id = bos.empty() ? -1 : bos[0];
  c.eos_ids = r.get_ids("eos_token_id");
}

constexpr TensorName kNames[] = {
    {Slot::TokenEmbedding, "model.decoder.embed_tokens.weight"},
    {Slot::PositionEmbedding, "model.decoder.embed_positions.weight"},
    {Slot::ProjectIn, "model.decoder.project_in.weight"},
    {Slot::ProjectOut, "model.decoder.project_out.weight"},
    {Slot::FinalNormWeight, "model.decoder.final_layer_norm.weight"},
    {Slot::FinalNormBias, "model.decoder.final_layer_norm.bias"},
    {Slot::LmHead, "lm_head.weight"},
    {Slot::AttnNormWeight, "model.decoder.layers.{}.self_attn_layer_norm.weight"},
    {Slot::AttnNormBias, "model.decoder.layers.{}.self_attn_layer_norm.bias"},
    {Slot::QWeight, "model.decoder.layers.{}.self_attn.q_proj.weight"},
    {Slot::QBias, "model.decoder.layers.{}.self_attn.q_proj.bias"},
    {Slot::KWeight, "model.decoder.layers.{}.self_attn.k_proj.weight"},
    {Slot::KBias, "model.decoder.layers.{}.self_attn.k_proj.bias"},
    {Slot::VWeight, "model.decoder.layers.{}.self_attn.v_proj.weight"},
    {Slot::VBias, "model.decoder.layers.{}.self_attn.v_proj.bias"},
    {Slot::OutWeight, "model.decoder.layers.{}.self_attn.out_proj.weight"},
    {Slot::OutBias, "model.decoder.layers.{}.self_attn.out_proj.bias"},
    {Slot::FfnNormWeight, "model.decoder.layers.{}.final_layer_norm.weight"},
    {Slot::FfnNormBias, "model.decoder.layers.{}.final_layer_norm.bias"},
    {Slot::UpWeight, "model.decoder.layers.{}.fc1.weight"},
    {Slot::UpBias, "model.decoder.layers.{}.fc1.bias"},
    {Slot::DownWeight, "model.decoder.layers.{}.fc2.weight"},
    {Slot::DownBias, "model.decoder.layers.{}.fc2.bias"},
};
constexpr const char* kPrefixes[] = {"model."};

}  // namespace

const ArchDescriptor kOptArch = {"opt", read_opt, kNames, kPrefixes, {}};

}  // namespace runnel::model

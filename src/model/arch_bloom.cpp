// BLOOM (transformers' modeling_bloom.py): ALiBi (any head count), LayerNorm
// on the word embeddings, a fused query_key_value weight laid out per head as
// [q, k, v], tanh GELU, biases everywhere, LM head tied to the embeddings.
#include <cmath>

#include "loader/config_reader.hpp"
#include "model/arch.hpp"

namespace runnel::model {
namespace {

void read_bloom(const ConfigReader& r, ModelConfig& c) {
  c.vocab_size = r.get_int({"vocab_size"});
  c.hidden_size = r.get_int({"hidden_size", "n_embed"});
  c.embed_dim = c.hidden_size;
  c.n_layers = r.get_int({"n_layer", "num_hidden_layers"});
  c.n_heads = r.get_int({"n_head", "num_attention_heads"});
  c.n_kv_heads = c.n_heads;
  c.head_dim = c.n_heads > 0 ? c.hidden_size / c.n_heads : 0;
  if (c.n_heads > 0 && c.hidden_size % c.n_heads != 0)
    r.fail("n_head", "inconsistent head counts: hidden size " + std::to_string(c.hidden_size) +
                         " is not a multiple of " + std::to_string(c.n_heads) + " heads");
  // modeling_bloom.py ignores n_inner.  (An absurd hidden size is left for validate().)
  c.ffn_dim = c.hidden_size > 0 && c.hidden_size < (int64_t(1) << 40) ? 4 * c.hidden_size : 0;
  c.max_positions = 0;  // ALiBi has no table

  if (r.get_bool({"apply_residual_connection_post_layernorm"}, false))
    r.fail("apply_residual_connection_post_layernorm", "true is not supported");
  c.norm = NormKind::LayerNorm;
  c.norm_placement = NormPlacement::Pre;
  c.norm_bias = Bias::Present;
  c.norm_eps = float(r.get_float({"layer_norm_epsilon"}, 1e-5));
  c.embedding_norm = EmbeddingNorm::LayerNorm;
  c.final_norm = FinalNorm::Present;
  c.projection = EmbeddingProjection::None;

  c.position = PositionKind::Alibi;
  c.position_offset = 0;

  c.qkv_layout = QkvLayout::FusedPerHead;
  c.qkv_bias = Bias::Present;
  c.out_bias = Bias::Present;
  c.attn_scale = c.head_dim > 0 ? 1.0f / std::sqrt(float(c.head_dim)) : 0.0f;

  c.mlp = MlpKind::Plain;
  c.activation = Activation::GeluTanh;
  c.mlp_bias = Bias::Present;

  c.lm_head = r.get_bool({"tie_word_embeddings"}, true) ? LmHead::Tied : LmHead::Separate;
  const auto bos = r.get_ids("bos_token_id");
  c.bos_id = bos.empty() ? -1 : bos[0];
  c.eos_ids = r.get_ids("eos_token_id");
}

constexpr TensorName kNames[] = {
    {Slot::TokenEmbedding, "transformer.word_embeddings.weight"},
    {Slot::EmbeddingNormWeight, "transformer.word_embeddings_layernorm.weight"},
    {Slot::EmbeddingNormBias, "transformer.word_embeddings_layernorm.bias"},
    {Slot::FinalNormWeight, "transformer.ln_f.weight"},
    {Slot::FinalNormBias, "transformer.ln_f.bias"},
    {Slot::LmHead, "lm_head.weight"},
    {Slot::AttnNormWeight, "transformer.h.{}.input_layernorm.weight"},
    {Slot::AttnNormBias, "transformer.h.{}.input_layernorm.bias"},
    {Slot::QkvWeight, "transformer.h.{}.self_attention.query_key_value.weight"},
    {Slot::QkvBias, "transformer.h.{}.self_attention.query_key_value.bias"},
    {Slot::OutWeight, "transformer.h.{}.self_attention.dense.weight"},
    {Slot::OutBias, "transformer.h.{}.self_attention.dense.bias"},
    {Slot::FfnNormWeight, "transformer.h.{}.post_attention_layernorm.weight"},
    {Slot::FfnNormBias, "transformer.h.{}.post_attention_layernorm.bias"},
    {Slot::UpWeight, "transformer.h.{}.mlp.dense_h_to_4h.weight"},
    {Slot::UpBias, "transformer.h.{}.mlp.dense_h_to_4h.bias"},
    {Slot::DownWeight, "transformer.h.{}.mlp.dense_4h_to_h.weight"},
    {Slot::DownBias, "transformer.h.{}.mlp.dense_4h_to_h.bias"},
};
constexpr const char* kPrefixes[] = {"transformer."};

}  // namespace

const ArchDescriptor kBloomArch = {"bloom", read_bloom, kNames, kPrefixes, {}};

}  // namespace runnel::model

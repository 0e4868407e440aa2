// Built-in configurations of published checkpoints.  Each is the
// checkpoint's config.json as published on the Hugging Face hub (keys the
// parser ignores, such as dropout rates, are left out), so a preset goes
// through parse_config and validate() exactly like a downloaded model.
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "runnel/config.hpp"
#include "runnel/error.hpp"

namespace runnel {
namespace {

struct Preset {
  std::string_view name;
  std::string_view checkpoint;  // where the config comes from
  std::string_view config_json;
};

// Token ids are kept because ModelConfig carries them (bos_id, eos_ids).
constexpr std::array<Preset, 8> kPresets = {{
    {"llama-7b", "meta-llama/Llama-2-7b-hf", R"({
      "model_type": "llama",
      "hidden_size": 4096,
      "intermediate_size": 11008,
      "num_hidden_layers": 32,
      "num_attention_heads": 32,
      "num_key_value_heads": 32,
      "vocab_size": 32000,
      "max_position_embeddings": 4096,
      "rms_norm_eps": 1e-05,
      "rope_scaling": null,
      "hidden_act": "silu",
      "tie_word_embeddings": false,
      "bos_token_id": 1,
      "eos_token_id": 2
    })"},
    {"llama-1b", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", R"({
      "model_type": "llama",
      "hidden_size": 2048,
      "intermediate_size": 5632,
      "num_hidden_layers": 22,
      "num_attention_heads": 32,
      "num_key_value_heads": 4,
      "vocab_size": 32000,
      "max_position_embeddings": 2048,
      "rms_norm_eps": 1e-05,
      "rope_theta": 10000.0,
      "rope_scaling": null,
      "hidden_act": "silu",
      "tie_word_embeddings": false,
      "bos_token_id": 1,
      "eos_token_id": 2
    })"},
    {"llama-135m", "HuggingFaceTB/SmolLM2-135M", R"({
      "model_type": "llama",
      "hidden_size": 576,
      "intermediate_size": 1536,
      "num_hidden_layers": 30,
      "num_attention_heads": 9,
      "num_key_value_heads": 3,
      "head_dim": 64,
      "vocab_size": 49152,
      "max_position_embeddings": 8192,
      "rms_norm_eps": 1e-05,
      "rope_theta": 100000,
      "rope_scaling": null,
      "hidden_act": "silu",
      "attention_bias": false,
      "mlp_bias": false,
      "tie_word_embeddings": true,
      "bos_token_id": 0,
      "eos_token_id": 0
    })"},
    {"llama3-8b", "meta-llama/Meta-Llama-3-8B", R"({
      "model_type": "llama",
      "hidden_size": 4096,
      "intermediate_size": 14336,
      "num_hidden_layers": 32,
      "num_attention_heads": 32,
      "num_key_value_heads": 8,
      "vocab_size": 128256,
      "max_position_embeddings": 8192,
      "rms_norm_eps": 1e-05,
      "rope_theta": 500000.0,
      "rope_scaling": null,
      "hidden_act": "silu",
      "attention_bias": false,
      "tie_word_embeddings": false,
      "bos_token_id": 128000,
      "eos_token_id": 128001
    })"},
    {"opt-125m", "facebook/opt-125m", R"({
      "model_type": "opt",
      "hidden_size": 768,
      "word_embed_proj_dim": 768,
      "ffn_dim": 3072,
      "num_hidden_layers": 12,
      "num_attention_heads": 12,
      "vocab_size": 50272,
      "max_position_embeddings": 2048,
      "do_layer_norm_before": true,
      "activation_function": "relu",
      "bos_token_id": 2,
      "eos_token_id": 2
    })"},
    {"opt-1.3b", "facebook/opt-1.3b", R"({
      "model_type": "opt",
      "hidden_size": 2048,
      "word_embed_proj_dim": 2048,
      "ffn_dim": 8192,
      "num_hidden_layers": 24,
      "num_attention_heads": 32,
      "vocab_size": 50272,
      "max_position_embeddings": 2048,
      "do_layer_norm_before": true,
      "activation_function": "relu",
      "bos_token_id": 2,
      "eos_token_id": 2
    })"},
    {"bloom-560m", "bigscience/bloom-560m", R"({
      "model_type": "bloom",
      "hidden_size": 1024,
      "n_layer": 24,
      "n_head": 16,
      "vocab_size": 250880,
      "layer_norm_epsilon": 1e-05,
      "apply_residual_connection_post_layernorm": false,
      "bos_token_id": 1,
      "eos_token_id": 2
    })"},
    {"bloom-1b1", "bigscience/bloom-1b1", R"({
      "model_type": "bloom",
      "hidden_size": 1536,
      "n_layer": 24,
      "n_head": 16,
      "vocab_size": 250880,
      "layer_norm_epsilon": 1e-05,
      "apply_residual_connection_post_layernorm": false,
      "bos_token_id": 1,
      "eos_token_id": 2
    })"},
}};

// a * b + c, throwing instead of overflowing.
int64_t mul_add(int64_t a, int64_t b, int64_t c) {
  int64_t p = 0, s = 0;
  if (__builtin_mul_overflow(a, b, &p) || __builtin_add_overflow(p, c, &s))
    throw Error("parameter count overflows");
  return s;
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  names.reserve(kPresets.size());
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

ModelConfig preset_config(std::string_view name) {
  for (const Preset& p : kPresets)
    if (p.name == name) return parse_config(p.config_json, "preset:" + std::string(p.name));
  std::string known;
  for (const Preset& p : kPresets) known += (known.empty() ? "" : ", ") + std::string(p.name);
  throw Error("unknown preset \"" + std::string(name) + "\" (known: " + known + ")");
}

int64_t parameter_count(const ModelConfig& c) {
  c.validate();
  const int64_t h = c.hidden_size, e = c.embed_dim, f = c.ffn_dim;
  const int64_t nb = c.norm_bias == Bias::Present ? 1 : 0;
  const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;

  // One layer: two norms, q / k / v / out, up (and gate) and down, with their biases.
  const int64_t n_up = c.mlp == MlpKind::Gated ? 2 : 1;
  int64_t layer = mul_add(2 * h, 1 + nb, 0);
  layer = mul_add(q_dim + 2 * kv_dim, h, layer);
  if (c.qkv_bias == Bias::Present) layer += q_dim + 2 * kv_dim;
  layer = mul_add(h, q_dim, layer);
  if (c.out_bias == Bias::Present) layer += h;
  layer = mul_add(n_up * f, h, layer);
  layer = mul_add(h, f, layer);
  if (c.mlp_bias == Bias::Present) layer += n_up * f + h;

  int64_t total = mul_add(layer, c.n_layers, 0);
  total = mul_add(c.vocab_size, e, total);  // token embeddings
  if (c.lm_head == LmHead::Separate) total = mul_add(c.vocab_size, e, total);
  if (c.position == PositionKind::Learned)
    total = mul_add(c.max_positions + c.position_offset, h, total);
  if (c.embedding_norm == EmbeddingNorm::LayerNorm) total = mul_add(e, 1 + nb, total);
  if (c.projection == EmbeddingProjection::InOut) total = mul_add(2 * h, e, total);
  if (c.final_norm == FinalNorm::Present) total = mul_add(h, 1 + nb, total);
  return total;
}

}  // namespace runnel

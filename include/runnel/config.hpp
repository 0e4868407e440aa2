#pragma once
// ModelConfig: everything the generic block builder needs to know about one
// checkpoint, as typed data.  A family's descriptor (src/model/arch_<family>.cpp)
// turns its config.json spelling into this struct; ModelConfig::validate()
// rejects combinations the builder cannot run.  There are no silent defaults:
// every field is set by the descriptor, from the file or from the value
// transformers itself uses when the key is absent.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runnel/op_params.hpp"

namespace runnel {

enum class NormKind : unsigned char { LayerNorm, RmsNorm };
enum class NormPlacement : unsigned char {
  Pre,   // x + f(norm(x))         (LLaMA, BLOOM, most OPT)
  Post,  // norm(x + f(x))         (OPT with do_layer_norm_before = false)
};
enum class PositionKind : unsigned char {
  Learned,  // a table added to the embeddings, indexed by position + offset (OPT)
  Rope,     // rotary, applied to q and k (LLaMA)
  Alibi,    // linear biases on the attention scores (BLOOM)
};
enum class MlpKind : unsigned char {
  Plain,  // down(act(up(x)))
  Gated,  // down(act(gate(x)) * up(x))
};
enum class QkvLayout : unsigned char {
  Separate,      // q_proj, k_proj, v_proj
  FusedPerHead,  // one [3 * hidden, hidden] weight, rows grouped per head as [q, k, v] (BLOOM)
  FusedBlocks,   // one [3 * hidden, hidden] weight as [q; k; v] row blocks (BLOOM in GGUF)
};
enum class Bias : unsigned char { None, Present };
enum class EmbeddingNorm : unsigned char { None, LayerNorm };
enum class FinalNorm : unsigned char { None, Present };
enum class LmHead : unsigned char { Tied, Separate };
enum class EmbeddingProjection : unsigned char {
  None,
  InOut,  // project_in [hidden, embed_dim] and project_out [embed_dim, hidden] (OPT)
};

std::string_view to_string(NormKind v);
std::string_view to_string(NormPlacement v);
std::string_view to_string(PositionKind v);
std::string_view to_string(MlpKind v);
std::string_view to_string(QkvLayout v);
std::string_view to_string(RopeStyle v);
std::string_view to_string(RopeScaling v);
std::string_view to_string(Activation v);

struct ModelConfig {
  std::string family;  // "opt", "llama", "bloom": the descriptor that reads it
  std::string source;  // the file it came from, for error messages

  // Sizes.
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;  // width of the residual stream
  int64_t embed_dim = 0;    // width of the token embeddings (== hidden_size unless projected)
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // == n_heads without grouped-query attention
  int64_t head_dim = 0;
  int64_t ffn_dim = 0;
  int64_t max_positions = 0;  // 0: no limit from the positional encoding

  // Structure.
  NormKind norm = NormKind::LayerNorm;
  NormPlacement norm_placement = NormPlacement::Pre;
  Bias norm_bias = Bias::None;  // LayerNorm's beta
  float norm_eps = 0.0f;
  EmbeddingNorm embedding_norm = EmbeddingNorm::None;
  FinalNorm final_norm = FinalNorm::Present;
  EmbeddingProjection projection = EmbeddingProjection::None;

  PositionKind position = PositionKind::Rope;
  int64_t position_offset = 0;  // Learned: the table row of position p is p + offset
  RopeConfig rope;              // Rope only
  RopeStyle rope_style = RopeStyle::NeoX;

  QkvLayout qkv_layout = QkvLayout::Separate;
  Bias qkv_bias = Bias::None;
  Bias out_bias = Bias::None;
  float attn_scale = 0.0f;  // multiplies q . k (1 / sqrt(head_dim) for all three families)

  MlpKind mlp = MlpKind::Plain;
  Activation activation = Activation::Relu;
  Bias mlp_bias = Bias::None;

  LmHead lm_head = LmHead::Tied;

  // Special tokens (-1 when the config does not name one).
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;

  // Throws runnel::Error naming `source` for sizes that are out of range or
  // inconsistent, and for combinations the block builder does not implement.
  void validate() const;
  // One line per field, for `runnel info`-style output and debugging.
  std::string describe() const;
};

// Parses a Hugging Face config.json.  model_type picks the family descriptor;
// `source` names the file in error messages.
ModelConfig parse_config(std::string_view json_text, const std::string& source);
ModelConfig load_config(const std::string& path);

// Built-in configurations of published checkpoints, for benchmarks with random
// weights (Model::random).  Each is the checkpoint's Hugging Face config.json
// text run through parse_config, so it passes the same validation.  The source
// is "preset:<name>".  Unknown names throw runnel::Error listing the known ones.
ModelConfig preset_config(std::string_view name);
// "llama-7b", "llama-1b", ... in a fixed order.
std::vector<std::string> preset_names();

// Parameters of a model of `config`: every weight, bias, norm and position
// table, counting a tied LM head once (as transformers' num_parameters()).
int64_t parameter_count(const ModelConfig& config);

// The families this build knows ("opt", "llama", "bloom").
std::vector<std::string> supported_families();

}  // namespace runnel

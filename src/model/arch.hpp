#pragma once
// Architecture descriptors.  A family is data: how to read its config.json into
// a ModelConfig, and the checkpoint name of each logical weight slot.  The
// generic block builder (model.cpp) derives which slots a checkpoint needs and
// their shapes from the ModelConfig alone, so adding a family means one
// arch_<family>.cpp file plus its line in kArchs (arch.cpp).
#include <span>
#include <string>
#include <string_view>

#include "runnel/config.hpp"

namespace runnel {
class ConfigReader;
}

namespace runnel::model {

// Logical weight slots.  Model-level slots come first, then per-layer ones.
enum class Slot : unsigned char {
  TokenEmbedding,       // [vocab, embed_dim]
  PositionEmbedding,    // [max_positions + offset, hidden]
  EmbeddingNormWeight,  // [embed_dim]
  EmbeddingNormBias,    // [embed_dim]
  ProjectIn,            // [hidden, embed_dim]
  ProjectOut,           // [embed_dim, hidden]
  FinalNormWeight,      // [hidden]
  FinalNormBias,        // [hidden]
  LmHead,               // [vocab, embed_dim]
  // per layer
  AttnNormWeight,  // [hidden]
  AttnNormBias,    // [hidden]
  QWeight,         // [n_heads * head_dim, hidden]
  QBias,           // [n_heads * head_dim]
  KWeight,         // [n_kv_heads * head_dim, hidden]
  KBias,           // [n_kv_heads * head_dim]
  VWeight,         // [n_kv_heads * head_dim, hidden]
  VBias,           // [n_kv_heads * head_dim]
  QkvWeight,       // [3 * n_heads * head_dim, hidden], per head [q, k, v]
  QkvBias,         // [3 * n_heads * head_dim]
  OutWeight,       // [hidden, n_heads * head_dim]
  OutBias,         // [hidden]
  FfnNormWeight,   // [hidden]
  FfnNormBias,     // [hidden]
  UpWeight,        // [ffn, hidden]
  UpBias,          // [ffn]
  GateWeight,      // [ffn, hidden]
  GateBias,        // [ffn]
  DownWeight,      // [hidden, ffn]
  DownBias,        // [hidden]
  kCount,
};
inline constexpr int kNumSlots = static_cast<int>(Slot::kCount);
constexpr bool is_layer_slot(Slot s) { return s >= Slot::AttnNormWeight; }
std::string_view slot_name(Slot s);

// "{}" in a name stands for the layer index.
struct TensorName {
  Slot slot;
  const char* name;
};

struct ArchDescriptor {
  const char* family;  // config.json model_type
  // Fills every field of `out` except family and source.  Keys the family's
  // checkpoints spell several ways are read under all spellings.
  void (*read_config)(const ConfigReader& cfg, ModelConfig& out);
  std::span<const TensorName> names;
  // Prefixes a checkpoint may leave out (BLOOM's "transformer.", OPT's
  // "model." when it was saved from the base model).
  std::span<const char* const> optional_prefixes;
  // Tensors a checkpoint may carry that the graph does not use ("{}" is a
  // layer index), e.g. precomputed rotary tables.
  std::span<const char* const> ignored;
};

const ArchDescriptor* find_arch(std::string_view family);
std::span<const ArchDescriptor* const> all_archs();

// The checkpoint name of `slot` (for `layer` if it is a layer slot), or an
// empty string when the family has no such slot.
std::string tensor_name(const ArchDescriptor& arch, Slot slot, int64_t layer);
// Whether `name` matches `pattern`, where "{}" matches a decimal index.
bool name_matches(std::string_view pattern, std::string_view name);

// The descriptors (one file each).
extern const ArchDescriptor kOptArch;
extern const ArchDescriptor kLlamaArch;
extern const ArchDescriptor kBloomArch;

}  // namespace runnel::model

namespace runnel::model {
// Maps a transformers activation name (ACT2FN key) read from `key`.
Activation activation_from_hf(const ConfigReader& cfg, const char* key, const std::string& name);
}  // namespace runnel::model

#include "model/arch.hpp"

#include <array>

#include "loader/config_reader.hpp"

namespace runnel::model {
namespace {

// Every family this build knows.  A new family adds its line here.
const ArchDescriptor* const kArchs[] = {&kOptArch, &kLlamaArch, &kBloomArch};

constexpr std::array<std::string_view, kNumSlots> kSlotNames = {
    "token_embedding",
    "position_embedding",
    "embedding_norm.weight",
    "embedding_norm.bias",
    "project_in",
    "project_out",
    "final_norm.weight",
    "final_norm.bias",
    "lm_head",
    "attn_norm.weight",
    "attn_norm.bias",
    "q.weight",
    "q.bias",
    "k.weight",
    "k.bias",
    "v.weight",
    "v.bias",
    "qkv.weight",
    "qkv.bias",
    "out.weight",
    "out.bias",
    "ffn_norm.weight",
    "ffn_norm.bias",
    "up.weight",
    "up.bias",
    "gate.weight",
    "gate.bias",
    "down.weight",
    "down.bias",
};

}  // namespace

std::string_view slot_name(Slot s) {
  const int i = static_cast<int>(s);
  return i >= 0 && i < kNumSlots ? kSlotNames[size_t(i)] : "?";
}

const ArchDescriptor* find_arch(std::string_view family) {
  for (const ArchDescriptor* a : kArchs)
    if (family == a->family) return a;
  return nullptr;
}

std::span<const ArchDescriptor* const> all_archs() { return kArchs; }

std::string tensor_name(const ArchDescriptor& arch, Slot slot, int64_t layer) {
  for (const TensorName& n : arch.names) {
    if (n.slot != slot) continue;
    std::string s = n.name;
    if (const size_t p = s.find("{}"); p != std::string::npos)
      s.replace(p, 2, std::to_string(layer));
    return s;
  }
  return {};
}

bool name_matches(std::string_view pattern, std::string_view name) {
  const size_t p = pattern.find("{}");
  if (p == std::string_view::npos) return pattern == name;
  const std::string_view head = pattern.substr(0, p), tail = pattern.substr(p + 2);
  if (name.size() < head.size() + tail.size() + 1) return false;
  if (name.substr(0, head.size()) != head) return false;
  if (name.substr(name.size() - tail.size()) != tail) return false;
  const std::string_view digits = name.substr(head.size(), name.size() - head.size() - tail.size());
  if (digits.empty() || digits.size() > 9) return false;
  for (char c : digits)
    if (c < '0' || c > '9') return false;
  return true;
}

Activation activation_from_hf(const ConfigReader& cfg, const char* key, const std::string& name) {
  if (name == "relu") return Activation::Relu;
  if (name == "gelu") return Activation::Gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast")
    return Activation::GeluTanh;
  if (name == "silu" || name == "swish") return Activation::Silu;
  cfg.fail(key, "unsupported activation \"" + name +
                    "\" (supported: relu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, silu)");
}

}  // namespace runnel::model

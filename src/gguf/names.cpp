#include "gguf/names.hpp"

namespace runnel::gguf {
namespace {

using model::Slot;

// "{}" is the block index.  proj_in / proj_out are runnel's (OPT only).
constexpr model::TensorName kNames[] = {
    {Slot::TokenEmbedding, "token_embd.weight"},
    {Slot::PositionEmbedding, "position_embd.weight"},
    {Slot::EmbeddingNormWeight, "token_embd_norm.weight"},
    {Slot::EmbeddingNormBias, "token_embd_norm.bias"},
    {Slot::ProjectIn, "proj_in.weight"},
    {Slot::ProjectOut, "proj_out.weight"},
    {Slot::FinalNormWeight, "output_norm.weight"},
    {Slot::FinalNormBias, "output_norm.bias"},
    {Slot::LmHead, "output.weight"},
    {Slot::AttnNormWeight, "blk.{}.attn_norm.weight"},
    {Slot::AttnNormBias, "blk.{}.attn_norm.bias"},
    {Slot::QWeight, "blk.{}.attn_q.weight"},
    {Slot::QBias, "blk.{}.attn_q.bias"},
    {Slot::KWeight, "blk.{}.attn_k.weight"},
    {Slot::KBias, "blk.{}.attn_k.bias"},
    {Slot::VWeight, "blk.{}.attn_v.weight"},
    {Slot::VBias, "blk.{}.attn_v.bias"},
    {Slot::QkvWeight, "blk.{}.attn_qkv.weight"},
    {Slot::QkvBias, "blk.{}.attn_qkv.bias"},
    {Slot::OutWeight, "blk.{}.attn_output.weight"},
    {Slot::OutBias, "blk.{}.attn_output.bias"},
    {Slot::FfnNormWeight, "blk.{}.ffn_norm.weight"},
    {Slot::FfnNormBias, "blk.{}.ffn_norm.bias"},
    {Slot::UpWeight, "blk.{}.ffn_up.weight"},
    {Slot::UpBias, "blk.{}.ffn_up.bias"},
    {Slot::GateWeight, "blk.{}.ffn_gate.weight"},
    {Slot::GateBias, "blk.{}.ffn_gate.bias"},
    {Slot::DownWeight, "blk.{}.ffn_down.weight"},
    {Slot::DownBias, "blk.{}.ffn_down.bias"},
};

}  // namespace

std::string tensor_name(Slot slot, int64_t layer) {
  for (const model::TensorName& n : kNames) {
    if (n.slot != slot) continue;
    std::string s = n.name;
    if (const size_t p = s.find("{}"); p != std::string::npos)
      s.replace(p, 2, std::to_string(layer));
    return s;
  }
  return {};
}

bool parse_tensor_name(std::string_view name, Slot* slot, int64_t* layer) {
  for (const model::TensorName& n : kNames) {
    if (!model::name_matches(n.name, name)) continue;
    *slot = n.slot;
    *layer = 0;
    const std::string_view pat = n.name;
    if (const size_t p = pat.find("{}"); p != std::string_view::npos) {
      const size_t tail = pat.size() - p - 2;
      const std::string_view digits = name.substr(p, name.size() - p - tail);
      int64_t v = 0;
      for (char c : digits) v = v * 10 + (c - '0');  // name_matches allows at most 9 digits
      *layer = v;
    }
    return true;
  }
  return false;
}

}  // namespace runnel::gguf

#pragma once
// GGUF tensor names (llama.cpp's, shared by every architecture) for the
// logical weight slots of the block builder.
#include <cstdint>
#include <string>
#include <string_view>

#include "model/arch.hpp"

namespace runnel::gguf {

// The GGUF name of `slot` ("blk.3.attn_q.weight" for layer 3), or "" when
// GGUF has no name for it.
std::string tensor_name(model::Slot slot, int64_t layer);
// Inverse of tensor_name: false for names that are no slot's.
bool parse_tensor_name(std::string_view name, model::Slot* slot, int64_t* layer);

}  // namespace runnel::gguf

#pragma once
// llama2.c checkpoints mapped onto the LLaMA descriptor's weight names.
#include <string>

#include "runnel/loader.hpp"

namespace runnel {

// The ModelConfig a llama2.c header describes (LLaMA, RopeStyle::GptJ).
ModelConfig llama2c_config(const Llama2cHeader& h, const std::string& source);
// Maps `path` and adds its weights to `store` under the LLaMA descriptor's names.
void load_llama2c(const std::string& path, ModelConfig& config, WeightStore& store);

}  // namespace runnel

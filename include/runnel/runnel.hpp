#pragma once
// runnel: the umbrella header.
#include <string>

#include "runnel/backend.hpp"
#include "runnel/buffer.hpp"
#include "runnel/chat_template.hpp"
#include "runnel/config.hpp"
#include "runnel/device.hpp"
#include "runnel/dtype.hpp"
#include "runnel/error.hpp"
#include "runnel/kv_cache.hpp"
#include "runnel/loader.hpp"
#include "runnel/model.hpp"
#include "runnel/op_params.hpp"
#include "runnel/ops.hpp"
#include "runnel/sampler.hpp"
#include "runnel/tensor.hpp"
#include "runnel/thread_pool.hpp"
#include "runnel/tokenizer.hpp"
#include "runnel/version.hpp"

namespace runnel {

// "runnel 0.1.0\nbackends: cpu\ncpu isa: avx512 (supported: scalar avx2 avx512)\n"
std::string version_string();
const char* version();
// The CPU ISA the kernels use ("scalar", "avx2", "avx512").
const char* cpu_isa();

}  // namespace runnel

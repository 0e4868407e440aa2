#pragma once
// The scalar f16 / bf16 conversions of kernels/common/half.hpp, under the
// names the CPU kernels use (runnel::cpu::f16_to_f32, ...).
#include "common/half.hpp"

namespace runnel::cpu {

using common::bf16_to_f32;
using common::bits_to_f32;
using common::f16_to_f32;
using common::f32_to_bf16;
using common::f32_to_bits;
using common::f32_to_f16;

}  // namespace runnel::cpu

#include "runnel/dtype.hpp"

#include <array>
#include <string>

#include "common/blocks.hpp"
#include "runnel/error.hpp"

namespace runnel {
namespace {

void f32_to_float(const void* src, float* dst, int64_t n) {
  const float* s = static_cast<const float*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = s[i];
}
void f32_from_float(const float* src, void* dst, int64_t n) {
  float* d = static_cast<float*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = src[i];
}
void f16_to_float(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = common::f16_to_f32(s[i]);
}
void f16_from_float(const float* src, void* dst, int64_t n) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = common::f32_to_f16(src[i]);
}
void bf16_to_float(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = common::bf16_to_f32(s[i]);
}
void bf16_from_float(const float* src, void* dst, int64_t n) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = common::f32_to_bf16(src[i]);
}

// The traits table: one row per dtype, in enum order.
constexpr std::array<DTypeTraits, kNumDTypes> kTraits = {{
    {DType::F32, "f32", 1, 4, true, f32_to_float, f32_from_float, DType::F32},
    {DType::F16, "f16", 1, 2, true, f16_to_float, f16_from_float, DType::F32},
    {DType::BF16, "bf16", 1, 2, true, bf16_to_float, bf16_from_float, DType::F32},
    {DType::I32, "i32", 1, 4, false, nullptr, nullptr, DType::I32},
    // Quantized weights: the small-batch product quantizes each row of x to
    // vec_dot_type (int8 blocks with a scale) and sums in integers.
    {DType::Q8_0, "q8_0", 32, 34, true, common::dequant_q8_0, common::quant_q8_0, DType::Q8_0},
    {DType::Q4_0, "q4_0", 32, 18, true, common::dequant_q4_0, common::quant_q4_0, DType::Q8_0},
    {DType::Q4_1, "q4_1", 32, 20, true, common::dequant_q4_1, common::quant_q4_1, DType::Q8_1},
    {DType::Q4_K, "q4_k", 256, 144, true, common::dequant_q4_k, common::quant_q4_k, DType::Q8_K},
    {DType::Q6_K, "q6_k", 256, 210, true, common::dequant_q6_k, common::quant_q6_k, DType::Q8_K},
    {DType::Q5_0, "q5_0", 32, 22, true, common::dequant_q5_0, common::quant_q5_0, DType::Q8_0},
    {DType::Q5_1, "q5_1", 32, 24, true, common::dequant_q5_1, common::quant_q5_1, DType::Q8_1},
    {DType::Q5_K, "q5_k", 256, 176, true, common::dequant_q5_k, common::quant_q5_k, DType::Q8_K},
    {DType::Q8_1, "q8_1", 32, 36, false, common::dequant_q8_1, common::quant_q8_1, DType::Q8_1},
    {DType::Q8_K, "q8_k", 256, 292, false, common::dequant_q8_k, common::quant_q8_k, DType::Q8_K},
}};

static_assert([] {
  for (int i = 0; i < kNumDTypes; ++i)
    if (static_cast<int>(kTraits[i].dtype) != i) return false;
  return true;
}(), "traits table rows must follow the DType enum order");

}  // namespace

const DTypeTraits& traits(DType t) {
  const int i = static_cast<int>(t);
  if (i < 0 || i >= kNumDTypes) throw Error("invalid dtype value " + std::to_string(i));
  return kTraits[i];
}

DType parse_dtype(std::string_view s, std::string_view what) {
  if (s == "f32" || s == "float32" || s == "F32") return DType::F32;
  if (s == "f16" || s == "float16" || s == "half" || s == "F16") return DType::F16;
  if (s == "bf16" || s == "bfloat16" || s == "BF16") return DType::BF16;
  throw Error(std::string(what) + ": unknown dtype '" + std::string(s) +
              "' (expected f32, f16 or bf16)");
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeTraits& tr = traits(t);
  if (n < 0 || n % tr.block_size != 0)
    throw Error("a row of " + std::to_string(n) + " " + std::string(tr.name) +
                " elements is not a whole number of blocks of " + std::to_string(tr.block_size) +
                (tr.block_size == 256 ? " (K-quant rows need a multiple of 256; keep such tensors in another type)"
                                      : ""));
  const uint64_t blocks = uint64_t(n / tr.block_size);
  if (blocks > (uint64_t(1) << 62) / uint64_t(tr.type_size)) throw Error("row size overflows");
  return size_t(blocks * uint64_t(tr.type_size));
}

}  // namespace runnel

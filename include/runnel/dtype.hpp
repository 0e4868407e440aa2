#pragma once
// Element types and their traits.  Every fact about a dtype lives in one row of
// the traits table (src/core/dtype.cpp): block size, bytes per block, the
// reference row conversions and the dtype activations take in dot products.
// Block-quantized types (GGUF's Q8_0, Q4_K, ...) are rows with block_size > 1.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace runnel {

enum class DType : unsigned char {
  F32 = 0,
  F16,
  BF16,
  I32,
  Q8_0,  // blocks of 32: f16 scale, 32 int8
  Q4_0,  // blocks of 32: f16 scale, 32 4-bit values offset by 8
  Q4_1,  // blocks of 32: f16 scale, f16 minimum, 32 4-bit values
  Q4_K,  // super-blocks of 256: f16 d, f16 dmin, 8 6-bit scales and minimums, 256 4-bit values
  Q6_K,  // super-blocks of 256: 256 6-bit values, 16 int8 scales, f16 d
  Q5_0,  // blocks of 32: f16 scale, 32 5-bit values offset by 16 (high bits in a u32)
  Q5_1,  // blocks of 32: f16 scale, f16 minimum, 32 5-bit values
  Q5_K,  // super-blocks of 256: f16 d, f16 dmin, 8 6-bit scales and minimums, 256 5-bit values
  // Activation-only types (not weights): what rows of x are quantized to
  // for the integer dot products with the weight types above.
  Q8_1,  // blocks of 32: f16 scale, f16 scale * sum, 32 int8 (for Q4_1, Q5_1)
  Q8_K,  // super-blocks of 256: f32 scale, 256 int8, 16 int16 sums of 16 (for Q4_K, Q6_K)
  kCount,  // not a dtype: the number of rows in the traits table
};
inline constexpr int kNumDTypes = static_cast<int>(DType::kCount);

// Converts `n` elements of a row (n a multiple of block_size) to f32.
using ToFloatFn = void (*)(const void* src, float* dst, int64_t n);
// Converts `n` f32 values to a row of this dtype (n a multiple of block_size).
using FromFloatFn = void (*)(const float* src, void* dst, int64_t n);

struct DTypeTraits {
  DType dtype;
  std::string_view name;   // "f32", "f16", ...
  int64_t block_size;      // elements per block (1 for plain types)
  int64_t type_size;       // bytes per block
  bool is_float;           // can hold weights / activations (false: i32 and
                           // the activation-only types Q8_1, Q8_K)
  ToFloatFn to_float;      // scalar reference, never null for float types
  FromFloatFn from_float;  // scalar reference, never null for float types
  DType vec_dot_type;      // dtype the activations are converted to for dots
};

const DTypeTraits& traits(DType t);
inline std::string_view dtype_name(DType t) { return traits(t).name; }
// Parses "f32", "float32", "f16", "float16", "half", "bf16", "bfloat16".
// Throws runnel::Error naming `what` (a flag or field) on anything else.
DType parse_dtype(std::string_view s, std::string_view what);

// Bytes for `n` elements of `t`; throws if n is not a multiple of the block
// size or the product overflows.
// The K-quants (Q4_K, Q6_K, Q8_K) need rows of a multiple of 256: callers
// quantizing a checkpoint should catch the Error and keep such tensors in
// another type (Q8_0, or f16).
size_t row_bytes(DType t, int64_t n);

}  // namespace runnel

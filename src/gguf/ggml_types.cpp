// The ggml tensor types a GGUF file may name: block sizes and bytes per block
// from ggml's published block layouts.  This table is the one place that knows
// them; a quantized type becomes loadable by giving its row a runnel dtype.
#include <array>

#include "runnel/error.hpp"
#include "runnel/gguf.hpp"

namespace runnel::gguf {
namespace {

using G = GgmlType;
constexpr int64_t QK = 32;     // elements per block of the 32-element quants
constexpr int64_t QK_K = 256;  // elements per super-block of the K-quants and IQ types

const GgmlTypeInfo kTypes[] = {
    {G::F32, "F32", 1, 4, DType::F32},
    {G::F16, "F16", 1, 2, DType::F16},
    {G::Q4_0, "Q4_0", QK, 2 + QK / 2, DType::Q4_0},            // d, 16 nibble bytes
    {G::Q4_1, "Q4_1", QK, 4 + QK / 2, DType::Q4_1},            // d, m, 16 nibble bytes
    {G::Q5_0, "Q5_0", QK, 2 + 4 + QK / 2, DType::Q5_0},        // d, qh, qs
    {G::Q5_1, "Q5_1", QK, 4 + 4 + QK / 2, DType::Q5_1},        // d, m, qh, qs
    {G::Q8_0, "Q8_0", QK, 2 + QK, DType::Q8_0},                // d, 32 int8
    {G::Q8_1, "Q8_1", QK, 4 + QK, std::nullopt},               // d, s, 32 int8
    {G::Q2_K, "Q2_K", QK_K, 16 + 64 + 4, std::nullopt},        // scales, qs, d, dmin
    {G::Q3_K, "Q3_K", QK_K, 32 + 64 + 12 + 2, std::nullopt},   // hmask, qs, scales, d
    {G::Q4_K, "Q4_K", QK_K, 4 + 12 + 128, DType::Q4_K},       // d, dmin, scales, qs
    {G::Q5_K, "Q5_K", QK_K, 4 + 12 + 32 + 128, DType::Q5_K},  // d, dmin, scales, qh, qs
    {G::Q6_K, "Q6_K", QK_K, 128 + 64 + 16 + 2, DType::Q6_K},  // ql, qh, scales, d
    {G::Q8_K, "Q8_K", QK_K, 4 + 256 + 32, std::nullopt},       // d (f32), qs, bsums
    {G::IQ2_XXS, "IQ2_XXS", QK_K, 2 + 64, std::nullopt},
    {G::IQ2_XS, "IQ2_XS", QK_K, 2 + 64 + 8, std::nullopt},
    {G::IQ3_XXS, "IQ3_XXS", QK_K, 2 + 96, std::nullopt},
    {G::IQ1_S, "IQ1_S", QK_K, 2 + 32 + 16, std::nullopt},
    {G::IQ4_NL, "IQ4_NL", QK, 2 + 16, std::nullopt},
    {G::IQ3_S, "IQ3_S", QK_K, 2 + 64 + 8 + 32 + 4, std::nullopt},
    {G::IQ2_S, "IQ2_S", QK_K, 2 + 64 + 8 + 8, std::nullopt},
    {G::IQ4_XS, "IQ4_XS", QK_K, 2 + 2 + 4 + 128, std::nullopt},
    {G::I8, "I8", 1, 1, std::nullopt},
    {G::I16, "I16", 1, 2, std::nullopt},
    {G::I32, "I32", 1, 4, DType::I32},
    {G::I64, "I64", 1, 8, std::nullopt},
    {G::F64, "F64", 1, 8, std::nullopt},
    {G::IQ1_M, "IQ1_M", QK_K, 32 + 16 + 8, std::nullopt},
    {G::BF16, "BF16", 1, 2, DType::BF16},
    {G::TQ1_0, "TQ1_0", QK_K, 48 + 4 + 2, std::nullopt},
    {G::TQ2_0, "TQ2_0", QK_K, 64 + 2, std::nullopt},
    {G::MXFP4, "MXFP4", QK, 1 + 16, std::nullopt},
};

}  // namespace

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
  for (const GgmlTypeInfo& t : kTypes)
    if (static_cast<uint32_t>(t.type) == id) return &t;
  return nullptr;
}

std::string readable_weight_types() {
  std::string out;
  for (const GgmlTypeInfo& t : kTypes)
    if (t.dtype && traits(*t.dtype).is_float) out += (out.empty() ? "" : ", ") + std::string(t.name);
  return out;
}

GgmlType ggml_type_of(DType dtype) {
  for (const GgmlTypeInfo& t : kTypes)
    if (t.dtype && *t.dtype == dtype) return t.type;
  throw Error("GGUF has no tensor type for dtype " + std::string(dtype_name(dtype)));
}

std::string_view file_type_name(int64_t file_type) {
  // llama.cpp's llama_ftype numbers and the names its loader prints for them.
  struct Row {
    int64_t id;
    std::string_view name;
  };
  static constexpr Row kFileTypes[] = {
      {0, "all F32"},
      {1, "F16"},
      {2, "Q4_0"},
      {3, "Q4_1"},
      {7, "Q8_0"},
      {8, "Q5_0"},
      {9, "Q5_1"},
      {10, "Q2_K - Medium"},
      {11, "Q3_K - Small"},
      {12, "Q3_K - Medium"},
      {13, "Q3_K - Large"},
      {14, "Q4_K - Small"},
      {15, "Q4_K - Medium"},
      {16, "Q5_K - Small"},
      {17, "Q5_K - Medium"},
      {18, "Q6_K"},
      {19, "IQ2_XXS - 2.0625 bpw"},
      {20, "IQ2_XS - 2.3125 bpw"},
      {21, "Q2_K - Small"},
      {22, "IQ3_XS - 3.3 bpw"},
      {23, "IQ3_XXS - 3.0625 bpw"},
      {24, "IQ1_S - 1.5625 bpw"},
      {25, "IQ4_NL - 4.5 bpw"},
      {26, "IQ3_S - 3.4375 bpw"},
      {27, "IQ3_S mix - 3.66 bpw"},
      {28, "IQ2_S - 2.5 bpw"},
      {29, "IQ2_M - 2.7 bpw"},
      {30, "IQ4_XS - 4.25 bpw"},
      {31, "IQ1_M - 1.75 bpw"},
      {32, "BF16"},
      {36, "TQ1_0 - 1.69 bpw ternary"},
      {37, "TQ2_0 - 2.06 bpw ternary"},
      {38, "MXFP4 MoE"},
  };
  for (const Row& r : kFileTypes)
    if (r.id == file_type) return r.name;
  return "";
}

std::string_view value_type_name(ValueType t) {
  static constexpr std::array<std::string_view, 13> kNames = {
      "u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
      "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < kNames.size() ? kNames[i] : "unknown";
}

}  // namespace runnel::gguf

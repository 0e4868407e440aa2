// Row conversions between f32 and the float weight dtypes.
#include "cpu/kernels.hpp"
#include "cpu/quant.hpp"
#include "cpu/quant_simd.hpp"
#include "cpu/simd.hpp"

namespace runnel::cpu::RUNNEL_ISA_NS {
namespace {

void f32_copy(const void* src, float* dst, int64_t n) {
  const float* s = static_cast<const float*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = s[i];
}
void f32_copy_from(const float* src, void* dst, int64_t n) { f32_copy(src, static_cast<float*>(dst), n); }

void f16_to(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
#if !defined(RUNNEL_ISA_SCALAR)
  for (; i + VF::N <= n; i += VF::N) VF::load_f16(s + i).store(dst + i);
#endif
  for (; i < n; ++i) dst[i] = f16_to_f32(s[i]);
}

void f16_from(const float* src, void* dst, int64_t n) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  int64_t i = 0;
#if !defined(RUNNEL_ISA_SCALAR)
  for (; i + VF::N <= n; i += VF::N) VF::load(src + i).store_f16(d + i);
#endif
  for (; i < n; ++i) d[i] = f32_to_f16(src[i]);
}

void bf16_to(const void* src, float* dst, int64_t n) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  int64_t i = 0;
#if !defined(RUNNEL_ISA_SCALAR)
  for (; i + VF::N <= n; i += VF::N) VF::load_bf16(s + i).store(dst + i);
#endif
  for (; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
}

void bf16_from(const float* src, void* dst, int64_t n) {
  // Rounding to nearest even needs NaN care; the scalar form vectorises well.
  uint16_t* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
}

}  // namespace

void register_convert(KernelTable& t) {
  t.to_f32[int(DType::F32)] = f32_copy;
  t.from_f32[int(DType::F32)] = f32_copy_from;
  t.to_f32[int(DType::F16)] = f16_to;
  t.from_f32[int(DType::F16)] = f16_from;
  t.to_f32[int(DType::BF16)] = bf16_to;
  t.from_f32[int(DType::BF16)] = bf16_from;
  // Quantized rows: widening (the prompt path), quantizing weights (files
  // being written: the scalar references) and quantizing activations (Q8_0,
  // Q8_1, Q8_K before the integer dot products).  The SIMD bodies agree bit
  // for bit with the references.
  t.from_f32[int(DType::Q4_0)] = quant::quant_q4_0;
  t.from_f32[int(DType::Q4_1)] = quant::quant_q4_1;
  t.from_f32[int(DType::Q5_0)] = quant::quant_q5_0;
  t.from_f32[int(DType::Q5_1)] = quant::quant_q5_1;
  t.from_f32[int(DType::Q4_K)] = quant::quant_q4_k;
  t.from_f32[int(DType::Q5_K)] = quant::quant_q5_k;
  t.from_f32[int(DType::Q6_K)] = quant::quant_q6_k;
#if defined(RUNNEL_ISA_SCALAR)
  t.to_f32[int(DType::Q8_0)] = quant::dequant_q8_0;
  t.to_f32[int(DType::Q4_0)] = quant::dequant_q4_0;
  t.to_f32[int(DType::Q4_1)] = quant::dequant_q4_1;
  t.to_f32[int(DType::Q5_0)] = quant::dequant_q5_0;
  t.to_f32[int(DType::Q5_1)] = quant::dequant_q5_1;
  t.to_f32[int(DType::Q4_K)] = quant::dequant_q4_k;
  t.to_f32[int(DType::Q5_K)] = quant::dequant_q5_k;
  t.to_f32[int(DType::Q6_K)] = quant::dequant_q6_k;
  t.from_f32[int(DType::Q8_0)] = quant::quant_q8_0;
  t.from_f32[int(DType::Q8_1)] = quant::quant_q8_1;
  t.from_f32[int(DType::Q8_K)] = quant::quant_q8_k;
#else
  t.to_f32[int(DType::Q8_0)] = qsimd::dequant_q8_0;
  t.to_f32[int(DType::Q4_0)] = qsimd::dequant_q4_0;
  t.to_f32[int(DType::Q4_1)] = qsimd::dequant_q4_1;
  t.to_f32[int(DType::Q5_0)] = qsimd::dequant_q5_0;
  t.to_f32[int(DType::Q5_1)] = qsimd::dequant_q5_1;
  t.to_f32[int(DType::Q4_K)] = qsimd::dequant_q4_k;
  t.to_f32[int(DType::Q5_K)] = quant::dequant_q5_k;  // the reference: conversion at load only
  t.to_f32[int(DType::Q6_K)] = qsimd::dequant_q6_k;
  t.from_f32[int(DType::Q8_0)] = qsimd::quant_q8_0;
  t.from_f32[int(DType::Q8_1)] = qsimd::quant_q8_1;
  t.from_f32[int(DType::Q8_K)] = qsimd::quant_q8_k;
#endif
  t.to_f32[int(DType::Q8_1)] = quant::dequant_q8_1;
  t.to_f32[int(DType::Q8_K)] = quant::dequant_q8_k;
#if defined(RUNNEL_ISA_SCALAR)
  t.quant_act[int(DType::Q8_0)] = quant::quant_act_q8_0;
#else
  t.quant_act[int(DType::Q8_0)] = qsimd::quant_act_q8_0;
#endif
  t.quant_act[int(DType::Q8_1)] = t.from_f32[int(DType::Q8_1)];
  t.quant_act[int(DType::Q8_K)] = t.from_f32[int(DType::Q8_K)];
}

}  // namespace runnel::cpu::RUNNEL_ISA_NS

#pragma once
// Helpers shared by the CPU implementations of the ops.
#include <string>

#include "cpu/kernels.hpp"
#include "runnel/error.hpp"
#include "runnel/ops.hpp"

namespace runnel::ops::detail {

inline const cpu::KernelTable& K() { return cpu::kernels(); }

// Rows of a [..., n] f32 tensor whose last dimension is contiguous.
struct Rows {
  char* base;
  int64_t rows, n, stride;  // stride in bytes
  float* row(int64_t r) const { return reinterpret_cast<float*>(base + r * stride); }
};

inline Rows rows_of(const Tensor& t, const char* op, const char* arg) {
  expect_cpu(t, op, arg);
  expect_dtype(t, DType::F32, op, arg);
  if (t.stride_bytes(-1) != 4)
    throw Error(std::string(op) + ": " + arg + " " + t.shape_str() + " must be contiguous in its last dimension");
  return {static_cast<char*>(t.data()), t.rows(), t.dim(-1), t.row_stride_bytes()};
}

inline void same_shape(const Tensor& a, const Tensor& b, const char* op, const char* an, const char* bn) {
  bool same = a.ndim() == b.ndim();
  for (int i = 0; same && i < a.ndim(); ++i) same = a.dim(i) == b.dim(i);
  if (!same)
    throw Error(std::string(op) + ": " + an + " " + a.shape_str() + " and " + bn + " " + b.shape_str() +
                " must have the same shape");
}

inline void vector_of(const Tensor& t, int64_t n, const char* op, const char* arg) {
  expect_cpu(t, op, arg);
  expect_dtype(t, DType::F32, op, arg);
  if (t.ndim() != 1 || t.dim(0) != n || t.stride_bytes(0) != 4)
    throw Error(std::string(op) + ": " + arg + " must be a contiguous [" + std::to_string(n) + "] f32 vector, got " +
                t.shape_str());
}

// The data of a contiguous [n] i32 / f32 vector, checked.
inline const int32_t* i32_vector(const Tensor& t, int64_t n, const char* op, const char* arg) {
  expect_cpu(t, op, arg);
  expect_dtype(t, DType::I32, op, arg);
  if (t.ndim() != 1 || t.dim(0) != n || (n > 1 && t.stride_bytes(0) != 4))
    throw Error(std::string(op) + ": " + arg + " must be a contiguous [" + std::to_string(n) + "] i32 vector, got " +
                t.shape_str());
  return t.data_as<const int32_t>();
}
inline const float* f32_vector(const Tensor& t, int64_t n, const char* op, const char* arg) {
  vector_of(t, n, op, arg);
  return t.data_as<const float>();
}

// Rows per task so that small rows are not split across threads.
inline int64_t row_grain(int64_t n) { return n >= 4096 ? 1 : (4096 + n - 1) / (n > 0 ? n : 1); }

}  // namespace runnel::ops::detail

#pragma once
// A tensor is a view: dtype, shape, byte strides, device and a non-owning
// pointer into a Buffer.  Shapes are outermost-first, like PyTorch: a weight
// of nn.Linear(in, out) is [out, in].  For block-quantized dtypes the innermost
// dimension is always packed (contiguous blocks).
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "runnel/device.hpp"
#include "runnel/dtype.hpp"

namespace runnel {

inline constexpr int kMaxDims = 4;

class Tensor {
 public:
  Tensor() = default;

  // A contiguous view of `shape` at `data`.
  static Tensor view(void* data, DType dtype, std::initializer_list<int64_t> shape,
                     Device device = Device::CPU);
  static Tensor view(void* data, DType dtype, const int64_t* shape, int ndim,
                     Device device = Device::CPU);

  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int ndim() const { return ndim_; }
  int64_t dim(int i) const;             // negative i counts from the end
  int64_t stride_bytes(int i) const;    // negative i counts from the end
  const std::array<int64_t, kMaxDims>& shape() const { return shape_; }
  int64_t numel() const;
  size_t nbytes() const;  // of a contiguous tensor with this shape
  bool is_contiguous() const;
  bool empty() const { return data_ == nullptr; }

  void* data() const { return data_; }
  template <class T>
  T* data_as() const { return static_cast<T*>(data_); }

  // Rows: everything but the last dimension, flattened (requires the outer
  // dimensions to be collapsible).
  int64_t rows() const;
  int64_t row_stride_bytes() const;  // bytes between consecutive rows
  void* row(int64_t r) const;

  // Views.  All check their arguments and throw runnel::Error.
  Tensor slice(int dim, int64_t begin, int64_t end) const;
  Tensor select(int dim, int64_t index) const;  // drops the dimension
  Tensor reshape(std::initializer_list<int64_t> shape) const;  // contiguous only
  Tensor transpose(int a, int b) const;                        // plain dtypes only
  Tensor with_strides(std::initializer_list<int64_t> stride_bytes) const;

  std::string shape_str() const;  // "[2, 3] f32"

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::F32;
  Device device_ = Device::CPU;
  int ndim_ = 0;
  std::array<int64_t, kMaxDims> shape_{};
  std::array<int64_t, kMaxDims> nb_{};  // stride of each dimension in bytes
  int axis(int i) const;
};

// Shape/dtype assertions used by ops.  `op` and `arg` name what failed.
void expect_dtype(const Tensor& t, DType dt, const char* op, const char* arg);
void expect_ndim(const Tensor& t, int ndim, const char* op, const char* arg);
void expect_cpu(const Tensor& t, const char* op, const char* arg);

}  // namespace runnel

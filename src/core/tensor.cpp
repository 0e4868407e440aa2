#include "runnel/tensor.hpp"

#include <string>

#include "runnel/error.hpp"

namespace runnel {
namespace {

void check_shape(const int64_t* shape, int ndim) {
  if (ndim < 1 || ndim > kMaxDims)
    throw Error("tensor rank " + std::to_string(ndim) + " is outside 1.." + std::to_string(kMaxDims));
  for (int i = 0; i < ndim; ++i)
    if (shape[i] < 0) throw Error("tensor dimension " + std::to_string(i) + " is negative");
}

}  // namespace

Tensor Tensor::view(void* data, DType dtype, std::initializer_list<int64_t> shape, Device device) {
  return view(data, dtype, shape.begin(), static_cast<int>(shape.size()), device);
}

Tensor Tensor::view(void* data, DType dtype, const int64_t* shape, int ndim, Device device) {
  check_shape(shape, ndim);
  Tensor t;
  t.data_ = data;
  t.dtype_ = dtype;
  t.device_ = device;
  t.ndim_ = ndim;
  for (int i = 0; i < ndim; ++i) t.shape_[i] = shape[i];
  const DTypeTraits& tr = traits(dtype);
  int64_t stride = static_cast<int64_t>(row_bytes(dtype, shape[ndim - 1]));
  t.nb_[ndim - 1] = tr.type_size;  // for block types: bytes per block
  for (int i = ndim - 2; i >= 0; --i) {
    t.nb_[i] = stride;
    if (shape[i] != 0 && stride > (int64_t(1) << 62) / shape[i]) throw Error("tensor size overflows");
    stride *= shape[i];
  }
  return t;
}

int Tensor::axis(int i) const {
  const int a = i < 0 ? i + ndim_ : i;
  if (a < 0 || a >= ndim_)
    throw Error("dimension " + std::to_string(i) + " is out of range for a tensor of rank " +
                std::to_string(ndim_));
  return a;
}

int64_t Tensor::dim(int i) const { return shape_[axis(i)]; }
int64_t Tensor::stride_bytes(int i) const { return nb_[axis(i)]; }

int64_t Tensor::numel() const {
  if (ndim_ == 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= shape_[i];
  return n;
}

size_t Tensor::nbytes() const {
  if (ndim_ == 0) return 0;
  size_t n = row_bytes(dtype_, shape_[ndim_ - 1]);
  for (int i = 0; i < ndim_ - 1; ++i) n *= static_cast<size_t>(shape_[i]);
  return n;
}

bool Tensor::is_contiguous() const {
  if (ndim_ == 0) return true;
  const DTypeTraits& tr = traits(dtype_);
  if (nb_[ndim_ - 1] != tr.type_size) return false;
  int64_t expect = static_cast<int64_t>(row_bytes(dtype_, shape_[ndim_ - 1]));
  for (int i = ndim_ - 2; i >= 0; --i) {
    if (shape_[i] != 1 && nb_[i] != expect) return false;
    expect *= shape_[i];
  }
  return true;
}

int64_t Tensor::rows() const {
  if (ndim_ == 0) return 0;
  int64_t r = 1;
  for (int i = 0; i < ndim_ - 1; ++i) r *= shape_[i];
  return r;
}

int64_t Tensor::row_stride_bytes() const {
  if (ndim_ < 2) return static_cast<int64_t>(row_bytes(dtype_, shape_[0]));
  // Outer dimensions must collapse into one uniform row stride.
  int64_t stride = nb_[ndim_ - 2];
  int64_t expect = stride * shape_[ndim_ - 2];
  for (int i = ndim_ - 3; i >= 0; --i) {
    if (shape_[i] != 1 && nb_[i] != expect)
      throw Error("tensor " + shape_str() + " has outer dimensions that do not collapse into rows");
    expect *= shape_[i];
  }
  return stride;
}

void* Tensor::row(int64_t r) const {
  return static_cast<char*>(data_) + r * row_stride_bytes();
}

Tensor Tensor::slice(int d, int64_t begin, int64_t end) const {
  const int a = axis(d);
  if (begin < 0 || end < begin || end > shape_[a])
    throw Error("slice [" + std::to_string(begin) + ", " + std::to_string(end) + ") of dimension " +
                std::to_string(a) + " is out of range for " + shape_str());
  Tensor t = *this;
  if (a == ndim_ - 1) {
    const int64_t bs = traits(dtype_).block_size;
    if (begin % bs != 0 || (end - begin) % bs != 0)
      throw Error("slice of the last dimension of " + shape_str() + " must cover whole blocks");
    t.data_ = static_cast<char*>(data_) + (begin / bs) * nb_[a];
  } else {
    t.data_ = static_cast<char*>(data_) + begin * nb_[a];
  }
  t.shape_[a] = end - begin;
  return t;
}

Tensor Tensor::select(int d, int64_t index) const {
  const int a = axis(d);
  if (ndim_ == 1) throw Error("select needs a tensor of rank 2 or more, got " + shape_str());
  if (a == ndim_ - 1 && traits(dtype_).block_size != 1)
    throw Error("cannot select inside the blocks of " + shape_str());
  if (index < 0 || index >= shape_[a])
    throw Error("index " + std::to_string(index) + " is out of range for dimension " +
                std::to_string(a) + " of " + shape_str());
  Tensor t = *this;
  t.data_ = static_cast<char*>(data_) + index * nb_[a];
  for (int i = a; i < ndim_ - 1; ++i) {
    t.shape_[i] = shape_[i + 1];
    t.nb_[i] = nb_[i + 1];
  }
  t.shape_[ndim_ - 1] = 0;
  t.nb_[ndim_ - 1] = 0;
  t.ndim_ = ndim_ - 1;
  return t;
}

Tensor Tensor::reshape(std::initializer_list<int64_t> shape) const {
  if (!is_contiguous()) throw Error("reshape needs a contiguous tensor, got " + shape_str());
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  if (n != numel())
    throw Error("cannot reshape " + shape_str() + " (" + std::to_string(numel()) + " elements) to " +
                std::to_string(n) + " elements");
  return view(data_, dtype_, shape.begin(), static_cast<int>(shape.size()), device_);
}

Tensor Tensor::transpose(int a, int b) const {
  const int x = axis(a), y = axis(b);
  if (traits(dtype_).block_size != 1) throw Error("cannot transpose block-quantized " + shape_str());
  Tensor t = *this;
  std::swap(t.shape_[x], t.shape_[y]);
  std::swap(t.nb_[x], t.nb_[y]);
  return t;
}

Tensor Tensor::with_strides(std::initializer_list<int64_t> stride_bytes) const {
  if (static_cast<int>(stride_bytes.size()) != ndim_)
    throw Error("with_strides: " + std::to_string(stride_bytes.size()) + " strides for " + shape_str());
  if (traits(dtype_).block_size != 1) throw Error("cannot restride block-quantized " + shape_str());
  Tensor t = *this;
  int i = 0;
  for (int64_t s : stride_bytes) t.nb_[i++] = s;
  return t;
}

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (int i = 0; i < ndim_; ++i) {
    if (i) s += ", ";
    s += std::to_string(shape_[i]);
  }
  s += "] ";
  s += dtype_name(dtype_);
  return s;
}

void expect_dtype(const Tensor& t, DType dt, const char* op, const char* arg) {
  if (t.dtype() != dt)
    throw Error(std::string(op) + ": " + arg + " must be " + std::string(dtype_name(dt)) + ", got " +
                t.shape_str());
}

void expect_ndim(const Tensor& t, int ndim, const char* op, const char* arg) {
  if (t.ndim() != ndim)
    throw Error(std::string(op) + ": " + arg + " must have rank " + std::to_string(ndim) + ", got " +
                t.shape_str());
}

void expect_cpu(const Tensor& t, const char* op, const char* arg) {
  if (t.device() != Device::CPU)
    throw Error(std::string(op) + ": " + arg + " must be on the CPU, it is on " +
                std::string(device_name(t.device())));
  if (t.empty() && t.numel() > 0) throw Error(std::string(op) + ": " + arg + " has no data");
}

}  // namespace runnel

#pragma once
// The backend interface: allocate, copy, synchronise, supports(op, dtype).
#include <memory>
#include <string>
#include <vector>

#include "runnel/buffer.hpp"
#include "runnel/device.hpp"
#include "runnel/dtype.hpp"

namespace runnel {

// A device's own resources for one Context (for CUDA: a stream and the
// library handles), defined by its backend and opaque here.
class DeviceResources {
 public:
  virtual ~DeviceResources() = default;
};

enum class Op : unsigned char {
  MatMul,      // y = x W^T (+ b); dtype is W's
  RmsNorm,
  LayerNorm,
  Rope,
  Alibi,
  Softmax,
  Activation,  // relu, gelu, gelu_tanh, silu
  SwiGLU,
  Add,
  Embedding,   // dtype is the table's
  Attention,   // dtype is the KV cache's
};
std::string_view op_name(Op op);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;
  virtual std::shared_ptr<Buffer> allocate(size_t bytes) = 0;
  // Copies `bytes` between any two devices this backend can reach.
  virtual void copy(void* dst, Device dst_device, const void* src, Device src_device,
                    size_t bytes) = 0;
  virtual void synchronize() = 0;
  virtual bool supports(Op op, DType dtype) const = 0;
  // The resources one Context on this device needs (a stream, library
  // handles); null where there are none (the CPU).
  virtual std::unique_ptr<DeviceResources> make_resources() { return nullptr; }
};

Backend& cpu_backend();
// The CUDA backend, or nullptr when it was not compiled in or no GPU is present.
Backend* cuda_backend();
// Names of the backends compiled into this build ("cpu", "cuda").
std::vector<std::string> compiled_backends();

}  // namespace runnel

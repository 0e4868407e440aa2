#include <cstring>

#include "cpu/kernels.hpp"
#include "runnel/backend.hpp"
#include "runnel/error.hpp"

namespace runnel {

std::string_view op_name(Op op) {
  switch (op) {
    case Op::MatMul: return "matmul";
    case Op::RmsNorm: return "rmsnorm";
    case Op::LayerNorm: return "layernorm";
    case Op::Rope: return "rope";
    case Op::Alibi: return "alibi";
    case Op::Softmax: return "softmax";
    case Op::Activation: return "activation";
    case Op::SwiGLU: return "swiglu";
    case Op::Add: return "add";
    case Op::Embedding: return "embedding";
    case Op::Attention: return "attention";
  }
  return "?";
}

namespace {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  std::string name() const override { return std::string("cpu/") + cpu::isa_name(cpu::selected_isa()); }
  std::shared_ptr<Buffer> allocate(size_t bytes) override { return std::make_shared<HostBuffer>(bytes); }
  void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) override {
    if (dst_device != Device::CPU || src_device != Device::CPU)
      throw Error("the CPU backend copies only between host buffers");
    if (bytes) std::memmove(dst, src, bytes);
  }
  void synchronize() override {}
  bool supports(Op op, DType dtype) const override {
    const cpu::KernelTable& k = cpu::kernels();
    switch (op) {
      case Op::MatMul:
      case Op::Embedding:
        return k.matmul[static_cast<int>(dtype)] != nullptr;
      case Op::Attention:
        return dtype == DType::F32 || dtype == DType::F16;
      case Op::RmsNorm:
      case Op::LayerNorm:
      case Op::Rope:
      case Op::Alibi:
      case Op::Softmax:
      case Op::Activation:
      case Op::SwiGLU:
      case Op::Add:
        return dtype == DType::F32;
    }
    return false;
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend b;
  return b;
}

#if !defined(RUNNEL_WITH_CUDA)
Backend* cuda_backend() { return nullptr; }
#endif

std::vector<std::string> compiled_backends() {
  std::vector<std::string> v{"cpu"};
#if defined(RUNNEL_WITH_CUDA)
  v.push_back("cuda");
#endif
  return v;
}

}  // namespace runnel

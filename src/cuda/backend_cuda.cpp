// The CUDA backend: device memory through a caching allocator, copies,
// synchronisation, and each Context's stream and cuBLAS/cuBLASLt handles.
// Compute ops on the GPU are not implemented yet, so supports() answers false
// for every op.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <string>

#include "runnel/backend.hpp"
#include "runnel/error.hpp"
#include "runnel/ops.hpp"

namespace runnel {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}

class CudaBackend;

void cublas_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(std::string("cuBLAS: ") + what + ": status " + std::to_string(int(s)));
}

// One Context's stream and library handles.
class CudaResources final : public DeviceResources {
 public:
  CudaResources() {
    cuda_check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    try {
      cublas_check(cublasCreate(&blas), "cublasCreate");
      cublas_check(cublasSetStream(blas, stream), "cublasSetStream");
      cublas_check(cublasLtCreate(&lt), "cublasLtCreate");
    } catch (...) {
      destroy();
      throw;
    }
  }
  ~CudaResources() override { destroy(); }
  CudaResources(const CudaResources&) = delete;
  CudaResources& operator=(const CudaResources&) = delete;

  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;

 private:
  void destroy() {
    if (lt) cublasLtDestroy(lt);
    if (blas) cublasDestroy(blas);
    if (stream) cudaStreamDestroy(stream);
    lt = nullptr;
    blas = nullptr;
    stream = nullptr;
  }
};

// Device memory returned to the backend's cache when released.
class CudaBuffer final : public Buffer {
 public:
  CudaBuffer(CudaBackend* owner, void* ptr, size_t size) : owner_(owner), ptr_(ptr), size_(size) {}
  ~CudaBuffer() override;
  void* data() override { return ptr_; }
  const void* data() const override { return ptr_; }
  size_t size() const override { return size_; }
  Device device() const override { return Device::CUDA; }

 private:
  CudaBackend* owner_;
  void* ptr_;
  size_t size_;
};

class CudaBackend final : public Backend {
 public:
  Device device() const override { return Device::CUDA; }
  std::string name() const override { return "cuda"; }

  std::shared_ptr<Buffer> allocate(size_t bytes) override {
    const size_t rounded = round_up(bytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.lower_bound(rounded);
      // Reuse a cached block unless it is more than twice the request.
      if (it != free_.end() && it->first <= 2 * rounded) {
        void* p = it->second;
        const size_t sz = it->first;
        free_.erase(it);
        return std::make_shared<CudaBuffer>(this, p, sz);
      }
    }
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, rounded);
    if (e != cudaSuccess) {
      release_cache();
      cuda_check(cudaMalloc(&p, rounded), "cudaMalloc");
    }
    return std::make_shared<CudaBuffer>(this, p, rounded);
  }

  void give_back(void* p, size_t size) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.emplace(size, p);
  }

  void release_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [sz, p] : free_) cudaFree(p);
    free_.clear();
  }

  void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) override {
    cudaMemcpyKind kind = cudaMemcpyDefault;
    if (dst_device == Device::CPU && src_device == Device::CPU) kind = cudaMemcpyHostToHost;
    else if (dst_device == Device::CUDA && src_device == Device::CPU) kind = cudaMemcpyHostToDevice;
    else if (dst_device == Device::CPU && src_device == Device::CUDA) kind = cudaMemcpyDeviceToHost;
    else kind = cudaMemcpyDeviceToDevice;
    cuda_check(cudaMemcpy(dst, src, bytes, kind), "cudaMemcpy");
  }

  void synchronize() override { cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

  bool supports(Op, DType) const override { return false; }

  std::unique_ptr<DeviceResources> make_resources() override {
    return std::make_unique<CudaResources>();
  }

 private:
  static size_t round_up(size_t n) {
    const size_t a = 512;
    return n == 0 ? a : (n + a - 1) / a * a;
  }
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
};

CudaBuffer::~CudaBuffer() { owner_->give_back(ptr_, size_); }

}  // namespace

Backend* cuda_backend() {
  static CudaBackend* backend = []() -> CudaBackend* {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return nullptr;
    return new CudaBackend();  // lives for the process, so cached blocks never outlive it
  }();
  return backend;
}

}  // namespace runnel

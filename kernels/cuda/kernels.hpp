#pragma once
// The CUDA kernels' host-side launchers.  Like kernels/cpu, they take raw
// device pointers and sizes and know nothing of tensors; each enqueues its
// kernel on `stream` and returns the launch's status.  They are compiled by
// nvcc into runnel_cuda_kernels (kernels/CMakeLists.txt), whose objects are
// part of librunnel.  The backend does not call them yet.
#include <cuda_runtime.h>

#include <cstdint>

namespace runnel::cuda {

// dst[0, n) f32 <- src: n / 32 Q8_0 blocks (n a multiple of 32), both in
// device memory.  Each value is the dtype table's (kernels/common/blocks.hpp).
cudaError_t q8_0_to_f32(const void* src, float* dst, int64_t n, cudaStream_t stream);

}  // namespace runnel::cuda

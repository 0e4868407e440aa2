// Row conversions on the GPU, beside kernels/cpu/convert.cpp.  Each thread
// converts one block with the host's scalar code (kernels/common/blocks.hpp),
// so a value is the one the dtype table computes: Q8_0 is q * d, a single
// rounding that FMA contraction cannot change.
#include <climits>

#include "common/blocks.hpp"
#include "cuda/kernels.hpp"

namespace runnel::cuda {
namespace {

__global__ void q8_0_to_f32_kernel(const common::BlockQ8_0* src,  // [n_blocks]
                                   float* dst,                     // [n_blocks * 32] f32
                                   int64_t n_blocks) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n_blocks) common::dequant_q8_0(src + i, dst + i * common::kQK, common::kQK);
}

}  // namespace

cudaError_t q8_0_to_f32(const void* src, float* dst, int64_t n, cudaStream_t stream) {
  if (n < 0 || n % common::kQK != 0) return cudaErrorInvalidValue;
  const int64_t n_blocks = n / common::kQK;
  if (n_blocks == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t grid = (n_blocks + kThreads - 1) / kThreads;
  if (grid > INT_MAX) return cudaErrorInvalidValue;
  q8_0_to_f32_kernel<<<unsigned(grid), kThreads, 0, stream>>>(
      static_cast<const common::BlockQ8_0*>(src), dst, n_blocks);
  return cudaGetLastError();
}

}  // namespace runnel::cuda

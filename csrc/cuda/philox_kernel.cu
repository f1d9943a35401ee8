// The dropout family's uniform stream, CUDA (math: csrc/include/tricks/philox.h).
#include <cuda_runtime.h>

#include "dtype.cuh"
#include "philox_kernel.h"
#include "tricks/philox.h"

namespace tricks {
namespace philox {
namespace {

__global__ void uniform_kernel(float* out, int64_t n, uint64_t seed, uint64_t offset) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = uniform(seed, offset, static_cast<uint64_t>(i));
}

}  // namespace

const char* launch_uniform_cuda(float* out, int64_t n, uint64_t seed, uint64_t offset, void* stream) {
  if (n == 0) return nullptr;
  constexpr int kBlock = 256;
  uniform_kernel<<<(n + kBlock - 1) / kBlock, kBlock, 0, static_cast<cudaStream_t>(stream)>>>(out, n, seed, offset);
  return last_error();
}

}  // namespace philox
}  // namespace tricks

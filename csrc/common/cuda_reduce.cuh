// Block-level reductions of the CUDA kernels.
#pragma once

#include <cuda_runtime.h>

namespace tricks {

// Sum of `v` over the TPR consecutive threads that share a row; every one of them gets the sum.
// TPR is 32 (one warp per row, shuffles only) or a multiple of 32 up to the block (shared memory).
template <int TPR, typename A>
__device__ __forceinline__ A group_sum(A v, A* smem) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if constexpr (TPR > 32) {
    constexpr int kWarps = TPR / 32;
    const int warp = (threadIdx.x % TPR) / 32;
    A* group = smem + (threadIdx.x / TPR) * kWarps;
    if (threadIdx.x % 32 == 0) group[warp] = v;
    __syncthreads();
    A s = 0;
#pragma unroll
    for (int i = 0; i < kWarps; ++i) s += group[i];
    __syncthreads();  // the next call reuses smem
    return s;
  } else {
    return v;
  }
}

}  // namespace tricks

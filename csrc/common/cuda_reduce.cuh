// Block-level reductions of the CUDA kernels.
#pragma once

#include <cuda_runtime.h>

#include <cmath>

namespace tricks {

// expf, not __expf: __expf's error grows with |x| (2 + 1.2|x| ulp), and the kernels that take
// exponentials are memory-bound (soft CE at C = 1000: ~10 flops per byte of headroom on an H100).
__device__ __forceinline__ float exp_dev(float x) { return expf(x); }
__device__ __forceinline__ double exp_dev(double x) { return exp(x); }

// Merge online (max, sum of exp(x - max)) pairs: the log-sum-exp of a row read once.
template <typename A>
__device__ __forceinline__ void lse_merge(A& m, A& s, A m2, A s2) {
  const A mn = m > m2 ? m : m2;
  if (mn == -INFINITY) return;  // both empty
  s = s * exp_dev(m - mn) + s2 * exp_dev(m2 - mn);
  m = mn;
}

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

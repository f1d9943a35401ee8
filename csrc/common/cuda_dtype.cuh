// Load/store conversions between storage types and accumulation types for CUDA kernels.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cuda_fp16.h>

#include "common/math.h"

namespace tricks {

template <> struct AccType<__half> { using type = float; };
template <> struct AccType<__nv_bfloat16> { using type = float; };

template <typename A> __device__ __forceinline__ A to_acc(float v) { return static_cast<A>(v); }
template <typename A> __device__ __forceinline__ A to_acc(double v) { return static_cast<A>(v); }
template <typename A> __device__ __forceinline__ A to_acc(__half v) { return static_cast<A>(__half2float(v)); }
template <typename A> __device__ __forceinline__ A to_acc(__nv_bfloat16 v) { return static_cast<A>(__bfloat162float(v)); }

template <typename T> __device__ __forceinline__ T from_acc(float v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <typename T> __device__ __forceinline__ T from_acc(double v);
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }

// nullptr when the last launch succeeded, else the CUDA error string (the error is cleared).
inline const char* last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

// Calls f with a typed null pointer whose type is the storage type named by `dtype`.
template <typename F>
void dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float32: f(static_cast<float*>(nullptr)); break;
    case DType::Float64: f(static_cast<double*>(nullptr)); break;
    case DType::Float16: f(static_cast<__half*>(nullptr)); break;
    case DType::BFloat16: f(static_cast<__nv_bfloat16*>(nullptr)); break;
  }
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

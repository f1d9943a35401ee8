// Launch-side helpers of the torch-free CUDA launchers. Every kernel launch goes through
// launch_kernel: `<<<grid, block, smem, stream>>>` under nvcc, the SIMT emulator's launcher
// (simt/simt.h) when the host compiler builds the kernels for the simt backend.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#if !defined(__CUDACC__)
#include "simt/simt.h"
#endif

namespace tricks {

#if defined(__CUDACC__)
template <typename... P, typename... A>
inline void launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, A&&... args) {
  kernel<<<grid, block, smem, stream>>>(std::forward<A>(args)...);
}
#else
template <typename... P, typename... A>
inline void launch_kernel(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, A&&... args) {
  ::simt::launch(kernel, grid, block, smem, stream, std::forward<A>(args)...);
}
#endif

// nullptr when the last launch succeeded, else the CUDA error string (the error is cleared).
inline const char* last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace tricks

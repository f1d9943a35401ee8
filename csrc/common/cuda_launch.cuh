// Launch-side helpers of the torch-free CUDA launchers. Every kernel launch goes through
// launch_kernel: `<<<grid, block, smem, stream>>>` under nvcc, the SIMT emulator's launcher
// (simt/simt.h) when the host compiler builds the kernels for the simt backend.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>
#include <utility>

#include "common/cuda_dtype.cuh"

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

template <typename P>
using pointee_t = std::remove_pointer_t<P>;

// The losses' launch: one block of `block` threads per piece of a row (blockIdx.x the row,
// blockIdx.y the piece: common/math.h's row_pieces), the kernel `pick` returns for the storage
// type of `dtype` (`[](auto* t) { return &kernel<pointee_t<decltype(t)>>; }`).
template <typename Pick, typename Q>
const char* launch_rows(const Q& q, DType dtype, int64_t rows, int64_t pieces, unsigned block, void* stream, Pick pick) {
  if (rows == 0) return nullptr;
  dispatch_dtype(dtype, [&](auto* tag) {
    launch_kernel(pick(tag), dim3(static_cast<unsigned>(rows), static_cast<unsigned>(pieces)), block, 0,
                  static_cast<cudaStream_t>(stream), q);
  });
  return last_error();
}

}  // namespace tricks

// A loss's two launchers, launch_fwd_cuda and launch_bwd_cuda: launch_rows of its
// fwd_kernel<T> and bwd_kernel<T> over q.rows rows in q.pieces pieces of kBlock threads.
#define TRICKS_ROW_LAUNCHERS(Params)                                                            \
  const char* launch_fwd_cuda(const Params& q, void* stream) {                                \
    return ::tricks::launch_rows(q, q.dtype, q.rows, q.pieces, kBlock, stream,                \
                                 [](auto* t) { return &fwd_kernel<::tricks::pointee_t<decltype(t)>>; }); \
  }                                                                                           \
  const char* launch_bwd_cuda(const Params& q, void* stream) {                                \
    return ::tricks::launch_rows(q, q.dtype, q.rows, q.pieces, kBlock, stream,                \
                                 [](auto* t) { return &bwd_kernel<::tricks::pointee_t<decltype(t)>>; }); \
  }

// Dropout with a regenerated mask, CUDA: each thread draws one Philox block of 4 words for 4
// consecutive elements (the stream layout of dropout/math.h); with group > 1 (drop path) it
// draws the word of its elements' run, again only when a run starts among its 4 elements. Seed and offset are read from
// device memory, so a captured CUDA graph replays with whatever the tensor holds.
#include <cuda_runtime.h>

#include "dropout/math.h"
#include "common/cuda_dtype.cuh"
#include "common/cuda_launch.cuh"
#include "common/cuda_reduce.cuh"

namespace tricks {
namespace dropout {
namespace {

constexpr int kBlock = 256;

// keep flags of elements 4g .. 4g+3 (those < n); P is Params or BwdParams.
template <typename P>
__device__ __forceinline__ void keep4(const P& q, int64_t g, bool kept[4]) {
  const uint64_t seed = static_cast<uint64_t>(q.seed_offset[0]), offset = static_cast<uint64_t>(q.seed_offset[1]);
  if (q.group == 1) {
    const philox::Words w = philox::philox4x32_10(seed, offset + static_cast<uint64_t>(g));
#pragma unroll
    for (int j = 0; j < 4; ++j) kept[j] = keep(philox::to_uniform(w.w[j]), q.p);
    return;
  }
  int64_t run = -1;
  bool k = false;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t r = (4 * g + j) / q.group;
    if (r != run) {
      run = r;
      k = keep(philox::uniform_at(seed, offset, static_cast<uint64_t>(r)), q.p);
    }
    kept[j] = k;
  }
}

// Elements 4g .. 4g+3 (those < n) of a, and of b where b is not null; T() elsewhere. Kept as T
// until used: converted on arrival, the first element would stall the thread before the other
// loads issue.
template <typename T>
__device__ __forceinline__ void load4(const T* a, const T* b, int64_t g, int64_t n, T av[4], T bv[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t i = 4 * g + j;
    av[j] = i < n ? a[i] : T();
    bv[j] = b != nullptr && i < n ? b[i] : T();
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock) apply_kernel(const Params q) {
  using A = acc_t<T>;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x;
  if (4 * g >= q.n) return;
  const T* x = static_cast<const T*>(q.x);
  T* y = static_cast<T*>(q.y);
  const T* res = static_cast<const T*>(q.residual);
  // The thread's elements are loaded before the seed is read and the mask drawn, so all its loads
  // are in flight together; loaded next to their stores, each would wait for the store before it
  // (y may alias x) and the thread would make one memory round trip per element.
  T xs[4], rs[4];
  load4(x, res, g, q.n, xs, rs);
  const A gate = q.gate != nullptr ? *static_cast<const A*>(q.gate) : A(1);
  bool kept[4];
  keep4(q, g, kept);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t i = 4 * g + j;
    if (i < q.n) y[i] = from_acc<T>(apply(to_acc<A>(xs[j]), kept[j], q.scale, gate, to_acc<A>(rs[j])));
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock) bwd_kernel(const BwdParams q) {
  using A = acc_t<T>;
  __shared__ A smem[kBlock / 32];
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x;
  const T* grad = static_cast<const T*>(q.grad);
  const T* x = static_cast<const T*>(q.x);
  T* dx = static_cast<T*>(q.dx);
  const A gate = q.gate != nullptr ? *static_cast<const A*>(q.gate) : A(1);
  A part = 0;
  if (4 * g < q.n) {  // no early return: the whole block joins the reduction below
    // every load before the mask and the first store (dx may alias grad): see apply_kernel
    T gs[4], xs[4];
    bool kept[4];
    // fp64: the mask first; eight doubles held across the drop path's 64-bit division subroutine
    // spill 8 B on sm_80 and sm_90 (compile-check). Its loads then wait for the seed: one round
    // trip more, of 8-byte elements.
    if constexpr (sizeof(T) == 8) keep4(q, g, kept);
    load4(grad, x, g, q.n, gs, xs);
    if constexpr (sizeof(T) != 8) keep4(q, g, kept);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = 4 * g + j;
      if (i < q.n) {
        const A d = apply(to_acc<A>(gs[j]), kept[j], q.scale, A(1), A(0));
        dx[i] = from_acc<T>(gate * d);
        if (x != nullptr) part += gate_term(to_acc<A>(xs[j]), d, kept[j]);
      }
    }
  }
  if (q.partials != nullptr) {
    part = group_sum<kBlock>(part, smem);
    if (threadIdx.x == 0) static_cast<A*>(q.partials)[blockIdx.x] = part;
  }
}

static_assert(kCudaPartialElements == 4 * kBlock, "one partial per block of 4 x kBlock elements");

}  // namespace

const char* launch_bwd_cuda(const BwdParams& q, void* stream) {
  if (q.n == 0) return nullptr;
  const int64_t blocks = (q.n + kCudaPartialElements - 1) / kCudaPartialElements;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch_dtype(q.dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch_kernel(bwd_kernel<T>, blocks, kBlock, 0, s, q);
  });
  return last_error();
}

const char* launch_apply_cuda(const Params& q, void* stream) {
  if (q.n == 0) return nullptr;
  const int64_t groups = (q.n + 3) / 4;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch_dtype(q.dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch_kernel(apply_kernel<T>, (groups + kBlock - 1) / kBlock, kBlock, 0, s, q);
  });
  return last_error();
}

}  // namespace dropout
}  // namespace tricks

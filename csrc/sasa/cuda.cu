// SASA+'s fused step, CUDA: one block per work item (a chunk of a tensor), over every tensor of a
// (device, dtype) group in one launch; each thread sweeps its elements once (the update and its
// two sums), then the block adds the threads' sums in float64 into the item's row of the result.
// The LR is read on the device (no host sync).
#include <cuda_runtime.h>

#include "common/cuda_dtype.cuh"
#include "common/cuda_launch.cuh"
#include "common/cuda_loop.cuh"
#include "common/cuda_reduce.cuh"
#include "sasa/math.h"

namespace tricks {
namespace sasa {
namespace {

constexpr int kBlock = 256;
// p, g and h of kUnrollOf<T> elements per thread loaded before the first store, which the compiler
// must assume may alias them (common/cuda_loop.cuh; scripts/gpu_model.py on sm_90: the fp16 step
// from 63 % of the modelled H100 ceiling to 100 %).

template <int K, typename T>
__global__ void __launch_bounds__(kBlock) sasa_step_kernel(const Params q) {
  using A = acc_t<T>;
  __shared__ double smem[kBlock / 32];
  const int64_t* w = q.work + 3 * static_cast<int64_t>(blockIdx.x);
  const int64_t i = w[0], begin = w[1], len = w[2];
  T* p = static_cast<T*>(q.p[i]) + begin;
  const T* g = static_cast<const T*>(q.g[i]) + begin;
  T* h = K != kGrad ? static_cast<T*>(q.h[i]) + begin : nullptr;
  const Coefs<A> c = coefs_of<A>(q);
  A xd = 0, dd = 0;
  struct In {
    T p, g, h;
  };
  for_each_unrolled<kUnrollOf<T>>(
      static_cast<int64_t>(threadIdx.x), len, static_cast<int64_t>(kBlock),
      [&](int64_t k) { return In{p[k], g[k], K != kGrad ? h[k] : T()}; },
      [&](int64_t k, const In& in) {
        A hk = 0;
        if constexpr (K != kGrad) hk = to_acc<A>(in.h);
        const A x = to_acc<A>(in.p);
        const A d = direction<K>(x, to_acc<A>(in.g), hk, c);
        if constexpr (K != kGrad) h[k] = from_acc<T>(hk);
        const T stored = from_acc<T>(descend(x, d, c.lr));
        p[k] = stored;
        xd += to_acc<A>(stored) * d;
        dd += d * d;
      });
  const double sxd = group_sum<kBlock>(static_cast<double>(xd), smem);
  const double sdd = group_sum<kBlock>(static_cast<double>(dd), smem);
  if (threadIdx.x == 0) {
    q.sums[2 * blockIdx.x] = sxd;
    q.sums[2 * blockIdx.x + 1] = sdd;
  }
}

}  // namespace

const char* launch_sasa_step_cuda(const Params& q, void* stream) {
  if (q.n_items == 0) return nullptr;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  dispatch_dtype(q.dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    switch (q.kind) {
      case kGrad: launch_kernel(sasa_step_kernel<kGrad, T>, q.n_items, kBlock, 0, st, q); break;
      case kMomentum: launch_kernel(sasa_step_kernel<kMomentum, T>, q.n_items, kBlock, 0, st, q); break;
      default: launch_kernel(sasa_step_kernel<kQhm, T>, q.n_items, kBlock, 0, st, q); break;
    }
  });
  return last_error();
}

}  // namespace sasa
}  // namespace tricks

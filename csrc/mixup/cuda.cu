// Mixup / CutMix mixing, CUDA: grid (sample chunks, pairs); each thread reads element e of both
// samples of its pair and writes both outputs, so in-place mixing is safe. In-sample indices
// are 32-bit (samples < 2^31 elements, checked by the binding): cheaper divisions for (h, w).
#include <cuda_runtime.h>

#include "common/cuda_dtype.cuh"
#include "common/cuda_launch.cuh"
#include "mixup/math.h"

namespace tricks {
namespace mixup {
namespace {

constexpr int kBlock = 256;

template <typename T>
__global__ void __launch_bounds__(kBlock) mix_kernel(const Params q) {
  using A = acc_t<T>;
  const uint32_t e = blockIdx.x * kBlock + threadIdx.x;
  if (e >= static_cast<uint64_t>(q.sample)) return;
  const int64_t i = blockIdx.y, j = q.batch - 1 - i;
  const HW hw = sample_hw(e, q.height, q.width, q.inner);
  const T* x = static_cast<const T*>(q.x);
  T* out = static_cast<T*>(q.out);
  // every load first (both samples, the coefficients, the boxes): they are in flight together
  const A vi = to_acc<A>(x[i * q.sample + e]), vj = to_acc<A>(x[j * q.sample + e]);
  const float ai = q.coef[2 * i], bi = q.coef[2 * i + 1], aj = q.coef[2 * j], bj = q.coef[2 * j + 1];
  const A ri = in_box(q.box + 4 * i, hw.h, hw.w) ? vj : mix(vi, vj, ai, bi);
  const A rj = in_box(q.box + 4 * j, hw.h, hw.w) ? vi : mix(vj, vi, aj, bj);
  out[i * q.sample + e] = from_acc<T>(ri);
  out[j * q.sample + e] = from_acc<T>(rj);
}

}  // namespace

const char* launch_cuda(const Params& q, void* stream) {
  if (q.batch == 0 || q.sample == 0) return nullptr;
  if ((q.batch + 1) / 2 > 65535) return "at most 131070 samples per batch (grid.y holds the pairs)";
  const dim3 grid(static_cast<unsigned>((q.sample + kBlock - 1) / kBlock), static_cast<unsigned>((q.batch + 1) / 2));
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch_dtype(q.dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch_kernel(mix_kernel<T>, grid, kBlock, 0, s, q);
  });
  return last_error();
}

}  // namespace mixup
}  // namespace tricks

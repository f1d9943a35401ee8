// Soft-target binary cross-entropy, CUDA: one block per row, each thread a strided set of the
// row's classes (coalesced), one read of the logits (and dense targets) per pass. Forward: the
// elements' losses, written out ('none') or summed per row (a block reduction, deterministic);
// backward: dz = g w ((1 - t) - lw sigmoid(-z)) in one pass.
#include <cuda_runtime.h>

#include <cmath>

#include "common/cuda_dtype.cuh"
#include "common/cuda_launch.cuh"
#include "common/cuda_reduce.cuh"
#include "soft_bce/math.h"

namespace tricks {
namespace soft_bce {
namespace {

constexpr int kBlock = 256;

// log1pf, not an intrinsic (exp_dev: common/cuda_reduce.cuh): the kernel is memory-bound (about
// 4 bytes per element against ~20 flops), so libdevice's accuracy costs no time.
__device__ __forceinline__ float log1p_dev(float x) { return log1pf(x); }
__device__ __forceinline__ double log1p_dev(double x) { return log1p(x); }

// Target of class c in row i: dense, or compact (off + the label weights), thresholded.
template <typename A, typename T>
__device__ __forceinline__ A target(const Params& q, const RowTarget<A>& r, const T* t, int64_t c, A off) {
  const A v = t != nullptr ? to_acc<A>(t[c]) : soft_ce::compact_target(r, c, off);
  return threshold_target(q, v);
}

template <typename T>
__global__ void __launch_bounds__(kBlock) fwd_kernel(const Params q) {
  using A = acc_t<T>;
  __shared__ A smem[kBlock / 32];
  const int64_t i = blockIdx.x, C = q.classes;
  const T* z = static_cast<const T*>(q.logits) + i * C;
  const T* t = q.mode == Mode::Dense ? static_cast<const T*>(q.dense) + i * C : nullptr;
  const RowTarget<A> r = row_target<A>(q, i);
  const A off = static_cast<A>(q.label_smoothing) / static_cast<A>(C);
  T* out = q.per_element ? static_cast<T*>(q.loss) + i * C : nullptr;
  A sum = 0;
  for (int64_t c = threadIdx.x; c < C; c += kBlock) {
    const A v = to_acc<A>(z[c]), tv = target(q, r, t, c, off);
    A l = class_weight<A>(q, c) * element_loss(v, tv, log_weight(q, c, tv), log1p_dev(exp_dev(v < A(0) ? v : -v)));
    if (r.invalid) l = NAN;
    if (out != nullptr) out[c] = from_acc<T>(l);
    else sum += l;
  }
  if (out != nullptr) return;
  sum = group_sum<kBlock>(sum, smem);
  if (threadIdx.x == 0) static_cast<A*>(q.loss)[i] = sum;
}

template <typename T>
__global__ void __launch_bounds__(kBlock) bwd_kernel(const Params q) {
  using A = acc_t<T>;
  const int64_t i = blockIdx.x, C = q.classes;
  const T* z = static_cast<const T*>(q.logits) + i * C;
  const T* t = q.mode == Mode::Dense ? static_cast<const T*>(q.dense) + i * C : nullptr;
  const T* ge = q.per_element ? static_cast<const T*>(q.grad) + i * C : nullptr;
  const A g = q.per_element ? A(0) : *static_cast<const A*>(q.grad);
  T* dz = static_cast<T*>(q.dlogits) + i * C;
  const RowTarget<A> r = row_target<A>(q, i);
  const A off = static_cast<A>(q.label_smoothing) / static_cast<A>(C);
  for (int64_t c = threadIdx.x; c < C; c += kBlock) {
    const A v = to_acc<A>(z[c]), tv = target(q, r, t, c, off);
    const A d = class_weight<A>(q, c) * element_grad(v, tv, log_weight(q, c, tv), exp_dev(v < A(0) ? v : -v));
    dz[c] = from_acc<T>(r.invalid ? A(NAN) : (ge != nullptr ? to_acc<A>(ge[c]) : g) * d);
  }
}

}  // namespace

TRICKS_ROW_LAUNCHERS(Params)

}  // namespace soft_bce
}  // namespace tricks

// Soft-target binary cross-entropy, CUDA: one block per row, or per piece of a row when there are
// too few rows to fill the GPU (common/math.h's row_pieces), each thread a strided set of the
// row's classes (coalesced), one read of the logits (and dense targets) per pass. Forward: the
// elements' losses, written out ('none') or summed per piece (a block reduction, deterministic);
// backward: dz = g w ((1 - t) - lw sigmoid(-z)) in one pass.
#include <cuda_runtime.h>

#include <cmath>

#include "common/cuda_dtype.cuh"
#include "common/cuda_launch.cuh"
#include "common/cuda_loop.cuh"
#include "common/cuda_reduce.cuh"
#include "soft_bce/math.h"

namespace tricks {
namespace soft_bce {
namespace {

constexpr int kBlock = 256;
// Classes per thread and iteration (common/cuda_loop.cuh): their logits, targets, weights and
// incoming gradients loaded together (scripts/gpu_model.py on sm_90: the fp16 backward from 59 %
// of the modelled H100 ceiling to 100 %; the fp16 forward from 80 % to 100 %).
constexpr int kUnroll = 4;
static_assert(kBlock * kUnroll == kCudaSweep, "row_pieces cuts rows in sweeps of the kernels' classes");

// What one class of a row reads: its logit, dense target (compact rows: unused), class and
// positive weights and incoming gradient ('none' reduction's backward; else unused).
template <typename T, typename A>
struct ClassIn {
  T z, t, g;
  A w, p;
};

// log1pf, not an intrinsic (exp_dev: common/cuda_reduce.cuh): the kernel is memory-bound (about
// 4 bytes per element against ~20 flops), so libdevice's accuracy costs no time.
__device__ __forceinline__ float log1p_dev(float x) { return log1pf(x); }
__device__ __forceinline__ double log1p_dev(double x) { return log1p(x); }

// Target of class c in row i: dense, or compact (off + the label weights), thresholded.
template <typename A, typename T>
__device__ __forceinline__ A target(const Params& q, const RowTarget<A>& r, const ClassIn<T, A>& in, bool dense, int64_t c,
                                    A off) {
  const A v = dense ? to_acc<A>(in.t) : soft_ce::compact_target(r, c, off);
  return threshold_target(q, v);
}

// Loads class c's inputs of a row (t, ge: nullptr when the row has none).
template <typename T, typename A>
__device__ __forceinline__ ClassIn<T, A> class_in(const Params& q, const T* z, const T* t, const T* ge, int64_t c) {
  return ClassIn<T, A>{z[c], t != nullptr ? t[c] : T(), ge != nullptr ? ge[c] : T(), class_weight<A>(q, c),
                       pos_weight_of<A>(q, c)};
}

template <typename T>
__global__ void __launch_bounds__(kBlock) fwd_kernel(const Params q) {
  using A = acc_t<T>;
  __shared__ A smem[kBlock / 32];
  const int64_t i = blockIdx.x, C = q.classes, begin = blockIdx.y * q.piece_classes;
  const int64_t end = begin + q.piece_classes < C ? begin + q.piece_classes : C;
  const T* z = static_cast<const T*>(q.logits) + i * C;
  const T* t = q.mode == Mode::Dense ? static_cast<const T*>(q.dense) + i * C : nullptr;
  const RowTarget<A> r = row_target<A>(q, i);
  const A off = static_cast<A>(q.label_smoothing) / static_cast<A>(C);
  T* out = q.per_element ? static_cast<T*>(q.loss) + i * C : nullptr;
  A sum = 0;
  for_each_unrolled<kUnroll>(
      begin + threadIdx.x, end, static_cast<int64_t>(kBlock),
      [&](int64_t c) { return class_in<T, A>(q, z, t, nullptr, c); },
      [&](int64_t c, const ClassIn<T, A>& in) {
        const A v = to_acc<A>(in.z), tv = target(q, r, in, t != nullptr, c, off);
        A l = in.w * element_loss(v, tv, log_weight(q, in.p, tv), log1p_dev(exp_dev(v < A(0) ? v : -v)));
        if (r.invalid) l = NAN;
        if (out != nullptr) out[c] = from_acc<T>(l);
        else sum += l;
      });
  if (out != nullptr) return;
  sum = group_sum<kBlock>(sum, smem);
  if (threadIdx.x == 0) static_cast<A*>(q.loss)[i * q.pieces + blockIdx.y] = sum;
}

template <typename T>
__global__ void __launch_bounds__(kBlock) bwd_kernel(const Params q) {
  using A = acc_t<T>;
  const int64_t i = blockIdx.x, C = q.classes, begin = blockIdx.y * q.piece_classes;
  const int64_t end = begin + q.piece_classes < C ? begin + q.piece_classes : C;
  const T* z = static_cast<const T*>(q.logits) + i * C;
  const T* t = q.mode == Mode::Dense ? static_cast<const T*>(q.dense) + i * C : nullptr;
  const T* ge = q.per_element ? static_cast<const T*>(q.grad) + i * C : nullptr;
  const A g = q.per_element ? A(0) : *static_cast<const A*>(q.grad);
  T* dz = static_cast<T*>(q.dlogits) + i * C;
  const RowTarget<A> r = row_target<A>(q, i);
  const A off = static_cast<A>(q.label_smoothing) / static_cast<A>(C);
  for_each_unrolled<kUnroll>(
      begin + threadIdx.x, end, static_cast<int64_t>(kBlock),
      [&](int64_t c) { return class_in<T, A>(q, z, t, ge, c); },
      [&](int64_t c, const ClassIn<T, A>& in) {
        const A v = to_acc<A>(in.z), tv = target(q, r, in, t != nullptr, c, off);
        const A d = in.w * element_grad(v, tv, log_weight(q, in.p, tv), exp_dev(v < A(0) ? v : -v));
        dz[c] = from_acc<T>(r.invalid ? A(NAN) : (ge != nullptr ? to_acc<A>(in.g) : g) * d);
      });
}

}  // namespace

TRICKS_ROW_LAUNCHERS(Params)

}  // namespace soft_bce
}  // namespace tricks

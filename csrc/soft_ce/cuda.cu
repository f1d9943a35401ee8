// Soft-target cross-entropy, CUDA: one block per row. Forward reads the row once with an online
// log-sum-exp per thread (running max and sum rescaled when the max grows), so any C works
// (128k-class rows stream through in one pass) without a second read; the block then merges
// the (max, sum) pairs. Backward: one pass, dz = g (exp(z - lse) T - w t).
#include <cuda_runtime.h>

#include <cmath>

#include "common/cuda_dtype.cuh"
#include "common/cuda_launch.cuh"
#include "common/cuda_loop.cuh"
#include "common/cuda_reduce.cuh"
#include "soft_ce/math.h"

namespace tricks {
namespace soft_ce {
namespace {

constexpr int kBlock = 256;
// Classes per thread and iteration of both kernels' passes (common/cuda_loop.cuh): their logits,
// targets and weights loaded together (scripts/gpu_model.py on sm_90: the fp16 forward from 41 % of
// the modelled H100 ceiling to 95 %).
constexpr int kUnroll = 4;

template <typename T>
__global__ void __launch_bounds__(kBlock) fwd_kernel(const Params q) {
  using A = acc_t<T>;
  __shared__ A smem[kBlock / 32];
  __shared__ A sm_m[kBlock / 32], sm_s[kBlock / 32];
  const int64_t i = blockIdx.x, C = q.classes;
  const T* z = static_cast<const T*>(q.logits) + i * C;
  const T* t = q.mode == Mode::Dense ? static_cast<const T*>(q.dense) + i * C : nullptr;
  // sz: sum_c w_c z_c; sw: sum_c w_c (class weights; 1 each without them)
  A m = -INFINITY, s = 0, sz = 0, sw = 0, st = 0, stz = 0;
  struct In {
    T z, t;
    A w;
  };
  const auto load = [&](int64_t c) { return In{z[c], t != nullptr ? t[c] : T(), class_weight<A>(q, c)}; };
  for_each_unrolled<kUnroll>(static_cast<int64_t>(threadIdx.x), C, static_cast<int64_t>(kBlock), load,
                             [&](int64_t, const In& in) {
    const A v = to_acc<A>(in.z);
    if (v > m) {
      s = (m == -INFINITY ? A(0) : s * exp_dev(m - v)) + A(1);
      m = v;
    } else if (v != -INFINITY) {  // -inf - -inf would be NaN
      s += exp_dev(v - m);
    }
    sz += weighted(in.w, v);
    sw += in.w;
    if (t != nullptr) {
      const A tv = to_acc<A>(in.t) * in.w;
      st += tv;
      stz += weighted(tv, v);
    }
  });
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    lse_merge(m, s, m2, s2);
  }
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) {
    sm_m[warp] = m;
    sm_s[warp] = s;
  }
  __syncthreads();
  m = sm_m[0];
  s = sm_s[0];
#pragma unroll
  for (int w = 1; w < kBlock / 32; ++w) lse_merge(m, s, sm_m[w], sm_s[w]);
  sz = group_sum<kBlock>(sz, smem);
  if (q.weight != nullptr) sw = group_sum<kBlock>(sw, smem);
  if (t != nullptr) {
    st = group_sum<kBlock>(st, smem);
    stz = group_sum<kBlock>(stz, smem);
  }
  if (threadIdx.x != 0) return;
  const A log_sum = row_log_sum(m, log(s)), lse = m + log_sum;
  A* loss = static_cast<A*>(q.loss);
  A* stats = static_cast<A*>(q.stats);
  A total;
  if (t != nullptr) {
    total = st;
    loss[i] = lse * st - stz;
  } else {
    const RowTarget<A> r = row_target<A>(q, i);
    total = compact_total(q, r, sw);
    loss[i] = compact_loss(q, r, lse, total, sz, [z](int64_t c) { return to_acc<A>(z[c]); });
  }
  stats[kStats * i] = m;
  stats[kStats * i + 1] = log_sum;
  stats[kStats * i + 2] = total;
}

template <typename T>
__global__ void __launch_bounds__(kBlock) bwd_kernel(const Params q) {
  using A = acc_t<T>;
  const int64_t i = blockIdx.x, C = q.classes;
  const T* z = static_cast<const T*>(q.logits) + i * C;
  T* dz = static_cast<T*>(q.dlogits) + i * C;
  const A* stats = static_cast<const A*>(q.stats);
  const A g = static_cast<const A*>(q.grad)[i * q.grad_stride], shift = stats[kStats * i],
          log_sum = stats[kStats * i + 1], total = stats[kStats * i + 2];
  auto softmax = [&](T zc) { return exp_dev((to_acc<A>(zc) - shift) - log_sum); };
  // fp64: one class per iteration, or sm_90's ptxas spills the unrolled exp polynomials
  // (compile-check)
  constexpr int unroll = sizeof(A) == 8 ? 1 : kUnroll;
  const int64_t first = threadIdx.x, stride = kBlock;
  if (q.mode == Mode::Dense) {
    const T* t = static_cast<const T*>(q.dense) + i * C;
    struct In {
      T z, t;
      A w;
    };
    for_each_unrolled<unroll>(
        first, C, stride, [&](int64_t c) { return In{z[c], t[c], class_weight<A>(q, c)}; },
        [&](int64_t c, const In& in) { dz[c] = from_acc<T>(g * (softmax(in.z) * total - in.w * to_acc<A>(in.t))); });
    return;
  }
  const RowTarget<A> r = row_target<A>(q, i);
  const A off = static_cast<A>(q.label_smoothing) / static_cast<A>(C);
  struct In {
    T z;
    A w;
  };
  for_each_unrolled<unroll>(first, C, stride, [&](int64_t c) { return In{z[c], class_weight<A>(q, c)}; },
                            [&](int64_t c, const In& in) {
                              A v;
                              if (r.ignored) v = 0;
                              else if (r.invalid) v = NAN;
                              else v = g * (softmax(in.z) * total - in.w * compact_target(r, c, off));
                              dz[c] = from_acc<T>(v);
                            });
}

}  // namespace

TRICKS_ROW_LAUNCHERS(Params)

}  // namespace soft_ce
}  // namespace tricks

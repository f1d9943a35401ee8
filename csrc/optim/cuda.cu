// Fused optimizer step, CUDA: one block per work item (a row, or a chunk of a tensor), over every
// tensor of a (device, dtype) bucket in one launch. A row's GC mean and AGC norms are reduced on
// chip in a first sweep; the update sweep re-reads the row from L2 (rows are <= 64 KiB), so DRAM
// traffic stays at the floor (28 B/param for fp32, +8 with EMA, +8 on Lookahead steps). The per-step scalars
// come from each tensor's device step counter (no host sync); a set found_inf skips everything.
#include <cuda_runtime.h>

#include "common/cuda_dtype.cuh"
#include "common/cuda_launch.cuh"
#include "common/cuda_loop.cuh"
#include "common/cuda_reduce.cuh"
#include "optim/math.h"

namespace tricks {
namespace optim {
namespace {

constexpr int kBlock = 256;
// Elements per thread and iteration of the update sweep (common/cuda_loop.cuh): the loads of 4
// elements (p, g, m, v and the slow and EMA copies when used) issued before the first store, which
// the compiler must assume may alias them (scripts/gpu_model.py on sm_90: the fp16 step from 71 %
// of the modelled H100 ceiling to 100 %).
constexpr int kUnroll = 4;

template <typename T, typename S>
__global__ void __launch_bounds__(kBlock) step_kernel(const Params q) {
  using A = acc_t<T>;
  __shared__ A smem[kBlock / 32];
  if (q.found_inf != nullptr && *q.found_inf != 0.0f) return;
  const int64_t* w = q.work + 4 * static_cast<int64_t>(blockIdx.x);
  const int64_t i = w[0], begin = w[1], len = w[2], flags = w[3];
  T* p = static_cast<T*>(q.p[i]) + begin;
  const T* g = static_cast<const T*>(q.g[i]) + begin;
  A* m = static_cast<A*>(q.m[i]) + begin;
  A* v = static_cast<A*>(q.v[i]) + begin;
  S* slow = q.s != nullptr ? static_cast<S*>(q.s[i]) + begin : nullptr;
  A* ema = q.e != nullptr ? static_cast<A*>(q.e[i]) + begin : nullptr;
  const Scalars<A> s = step_scalars<A>(static_cast<double>(*q.step[i]), q);
  const Decay<A> d = decay_of<A>(q);
  const A inv_scale = q.grad_scale != nullptr ? A(1) / static_cast<A>(*q.grad_scale) : A(1);
  const A gmul = q.maximize ? -inv_scale : inv_scale;
  const A clip = (flags & kPrepared) ? A(INFINITY) : static_cast<A>(q.clip_value);
  const Moments<A> b = moments_of<A>(q);
  const A eps = static_cast<A>(q.eps);
  // the row passes: flags are uniform per block, so every thread takes part in each reduction
  A f = 1;  // AGC's factor; it commutes with the clamp (f > 0), so the sweep folds it into both
  if (flags & kAgcRow) {
    struct GP {
      T g, p;
    };
    A gsq = 0, psq = 0;
    for_each_unrolled<kUnroll>(
        static_cast<int64_t>(threadIdx.x), len, static_cast<int64_t>(kBlock), [&](int64_t k) { return GP{g[k], p[k]}; },
        [&](int64_t, const GP& in) {
          const A x = clip_to(to_acc<A>(in.g) * gmul, clip), y = to_acc<A>(in.p);
          gsq += x * x;
          psq += y * y;
        });
    const A gn = std::sqrt(group_sum<kBlock>(gsq, smem)), pn = std::sqrt(group_sum<kBlock>(psq, smem));
    f = agc_scale(gn, pn, static_cast<A>(q.agc_clip_factor), static_cast<A>(q.agc_eps));
  }
  A mean = 0;
  if (flags & kGcRow) {
    A part = 0;
    for_each_unrolled<kUnroll>(static_cast<int64_t>(threadIdx.x), len, static_cast<int64_t>(kBlock),
                               [&](int64_t k) { return g[k]; },
                               [&](int64_t, T gk) { part += clip_to(to_acc<A>(gk) * gmul, clip); });
    mean = group_sum<kBlock>(part, smem) * f / static_cast<A>(len);
  }
  const A gmul_f = gmul * f, clip_f = clip * f;
  struct In {
    T p, g;
    A m, v, ema;
    S slow;
  };
  for_each_unrolled<kUnroll>(
      static_cast<int64_t>(threadIdx.x), len, static_cast<int64_t>(kBlock),
      [&](int64_t k) {
        return In{p[k], g[k], m[k], v[k], ema != nullptr ? ema[k] : A(0), s.sync ? slow[k] : S()};
      },
      [&](int64_t k, const In& in) {
        A mk = in.m, vk = in.v;
        const A gk = clip_to(to_acc<A>(in.g) * gmul_f, clip_f) - mean;
        A pk = s.has_denom ? update<true>(to_acc<A>(in.p), gk, mk, vk, b, eps, d, s.step_size, s.inv_denom_scale)
                           : update<false>(to_acc<A>(in.p), gk, mk, vk, b, eps, d, s.step_size, s.inv_denom_scale);
        m[k] = mk;
        v[k] = vk;
        if (s.sync) {
          pk = lookahead(pk, to_acc<A>(in.slow), static_cast<A>(q.lookahead_alpha));
          slow[k] = from_acc<S>(pk);
        }
        const T stored = from_acc<T>(pk);
        p[k] = stored;
        if (ema != nullptr) ema[k] = ema_lerp(in.ema, to_acc<A>(stored), s.ema_w, s.ema_1mw);
      });
}

}  // namespace

const char* launch_step_cuda(const Params& q, void* stream) {
  if (q.n_items == 0) return nullptr;
  cudaStream_t st = static_cast<cudaStream_t>(stream);
  dispatch_dtype(q.dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    using A = acc_t<T>;
    if (q.s != nullptr && q.slow_dtype == q.dtype && !std::is_same_v<T, A>)
      launch_kernel(step_kernel<T, T>, q.n_items, kBlock, 0, st, q);
    else
      launch_kernel(step_kernel<T, A>, q.n_items, kBlock, 0, st, q);
  });
  return last_error();
}

}  // namespace optim
}  // namespace tricks

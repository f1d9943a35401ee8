// Soft F1 sums, CUDA. Forward: for softmax, one block per row writes the row's (shift, log_sum)
// (an online log-sum-exp, as soft_ce's forward); then one thread per class and chunk of rows
// walks the chunk's rows (consecutive threads read consecutive classes: coalesced) and writes
// its three sums to the chunk's partial row, summed over the chunks by the binding (no atomics:
// deterministic). Backward: one block per row, dz from the row's p and dL/dp = g0 t + g1 (and,
// for softmax, the row's sum of dL/dp p).
#include <cuda_runtime.h>

#include <cmath>

#include "common/cuda_dtype.cuh"
#include "common/cuda_launch.cuh"
#include "common/cuda_loop.cuh"
#include "common/cuda_reduce.cuh"
#include "soft_f1/math.h"

namespace tricks {
namespace soft_f1 {
namespace {

constexpr int kBlock = 256;
// Classes (rows, in the forward) per thread and iteration (common/cuda_loop.cuh): their loads in
// flight together (scripts/gpu_model.py on sm_90: the fp16 softmax statistics from 31 % of the
// modelled H100 ceiling to 95 %; the fp16 backward from 75 % to 100 %).
constexpr int kUnroll = 4;

// The block's row i: (shift, log_sum) of its softmax, every thread getting them.
template <typename T, typename A>
__device__ void row_softmax_stats(const T* z, int64_t C, A& shift, A& log_sum) {
  __shared__ A sm_m[kBlock / 32], sm_s[kBlock / 32];
  A m = -INFINITY, s = 0;
  for_each_unrolled<kUnrollOf<T>>(static_cast<int64_t>(threadIdx.x), C, static_cast<int64_t>(kBlock),
                                   [&](int64_t c) { return z[c]; }, [&](int64_t, T zc) {
    const A v = to_acc<A>(zc);
    if (v > m) {
      s = (m == -INFINITY ? A(0) : s * exp_dev(m - v)) + A(1);
      m = v;
    } else if (v != -INFINITY) {
      s += exp_dev(v - m);
    }
  });
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) lse_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  if (threadIdx.x % 32 == 0) {
    sm_m[threadIdx.x / 32] = m;
    sm_s[threadIdx.x / 32] = s;
  }
  __syncthreads();
  m = sm_m[0];
  s = sm_s[0];
#pragma unroll
  for (int w = 1; w < kBlock / 32; ++w) lse_merge(m, s, sm_m[w], sm_s[w]);
  __syncthreads();  // a later call reuses the shared arrays
  // a row of +inf or all -inf gets NaN (row_log_sum)
  shift = row_shift(m);
  log_sum = row_log_sum(m, log(s));
}

template <typename T>
__global__ void __launch_bounds__(kBlock) stats_kernel(const Params q) {
  using A = acc_t<T>;
  const int64_t i = blockIdx.x;
  A shift, log_sum;
  row_softmax_stats(static_cast<const T*>(q.logits) + i * q.classes, q.classes, shift, log_sum);
  if (threadIdx.x == 0) {
    static_cast<A*>(q.stats)[2 * i] = shift;
    static_cast<A*>(q.stats)[2 * i + 1] = log_sum;
  }
}

template <typename T>
__global__ void __launch_bounds__(kBlock) fwd_kernel(const Params q) {
  using A = acc_t<T>;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kBlock + threadIdx.x, C = q.classes;
  if (c >= C) return;
  const int64_t chunk = blockIdx.y, r0 = chunk * q.chunk_rows;
  const int64_t r1 = r0 + q.chunk_rows < q.rows ? r0 + q.chunk_rows : q.rows;
  const A* stats = static_cast<const A*>(q.stats);
  A tp = 0, sp = 0, st = 0;
  struct In {
    T z, t;
    A shift, log_sum;
    int64_t label;
  };
  const T* z = static_cast<const T*>(q.logits);
  const T* dense = static_cast<const T*>(q.dense);
  for_each_unrolled<kUnroll>(
      r0, r1, int64_t(1),
      [&](int64_t i) {
        return In{z[i * C + c], dense != nullptr ? dense[i * C + c] : T(), q.multi_label ? A(0) : stats[2 * i],
                  q.multi_label ? A(0) : stats[2 * i + 1], dense != nullptr ? int64_t(0) : q.a[i]};
      },
      [&](int64_t, const In& in) {
        const A v = to_acc<A>(in.z);
        const A p = q.multi_label ? A(1) / (A(1) + exp_dev(-v)) : exp_dev((v - in.shift) - in.log_sum);
        const A t = dense != nullptr ? to_acc<A>(in.t) : label_target_of<A>(q, in.label, c);
        tp += t * p;
        sp += p;
        st += t;
      });
  A* out = static_cast<A*>(q.partial) + chunk * 3 * C;
  out[c] = tp;
  out[C + c] = sp;
  out[2 * C + c] = st;
}

template <typename T>
__global__ void __launch_bounds__(kBlock) bwd_kernel(const Params q) {
  using A = acc_t<T>;
  __shared__ A smem[kBlock / 32];
  const int64_t i = blockIdx.x, C = q.classes;
  const T* z = static_cast<const T*>(q.logits) + i * C;
  T* dz = static_cast<T*>(q.dlogits) + i * C;
  const A* g_tp = static_cast<const A*>(q.grad);
  const A* g_sp = g_tp + C;
  const T* dense = q.dense != nullptr ? static_cast<const T*>(q.dense) + i * C : nullptr;
  // class c's logit, dense target and the two incoming gradients
  struct In {
    T z, t;
    A g_tp, g_sp;
  };
  const auto load = [&](int64_t c) { return In{z[c], dense != nullptr ? dense[c] : T(), g_tp[c], g_sp[c]}; };
  const int64_t label = dense != nullptr ? 0 : q.a[i];  // the row's label, read once
  auto dp = [&](int64_t c, const In& in) {
    const A t = dense != nullptr ? to_acc<A>(in.t) : label_target_of<A>(q, label, c);
    return in.g_tp * t + in.g_sp;
  };
  const int64_t first = threadIdx.x, stride = kBlock;
  if (q.multi_label) {
    for_each_unrolled<kUnroll>(first, C, stride, load, [&](int64_t c, const In& in) {
      const A p = A(1) / (A(1) + exp_dev(-to_acc<A>(in.z)));
      dz[c] = from_acc<T>(dp(c, in) * p * (A(1) - p));
    });
    return;
  }
  A shift, log_sum;
  row_softmax_stats(z, C, shift, log_sum);
  A dot = 0;
  for_each_unrolled<kUnroll>(first, C, stride, load, [&](int64_t c, const In& in) {
    dot += dp(c, in) * exp_dev((to_acc<A>(in.z) - shift) - log_sum);
  });
  dot = group_sum<kBlock>(dot, smem);
  for_each_unrolled<kUnroll>(first, C, stride, load, [&](int64_t c, const In& in) {
    const A p = exp_dev((to_acc<A>(in.z) - shift) - log_sum);
    dz[c] = from_acc<T>(p * (dp(c, in) - dot));
  });
}

}  // namespace

const char* launch_fwd_cuda(const Params& q, void* stream) {
  if (q.rows == 0) return nullptr;
  const auto s = static_cast<cudaStream_t>(stream);
  const unsigned col_blocks = static_cast<unsigned>((q.classes + kBlock - 1) / kBlock);
  const unsigned chunks = static_cast<unsigned>((q.rows + q.chunk_rows - 1) / q.chunk_rows);
  dispatch_dtype(q.dtype, [&](auto* tag) {
    using T = pointee_t<decltype(tag)>;
    if (!q.multi_label) launch_kernel(&stats_kernel<T>, static_cast<unsigned>(q.rows), kBlock, 0, s, q);
    launch_kernel(&fwd_kernel<T>, dim3(col_blocks, chunks), kBlock, 0, s, q);
  });
  return last_error();
}

const char* launch_bwd_cuda(const Params& q, void* stream) {
  return launch_rows(q, q.dtype, q.rows, 1, kBlock, stream,
                     [](auto* t) { return &bwd_kernel<pointee_t<decltype(t)>>; });
}

}  // namespace soft_f1
}  // namespace tricks

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
#include "common/cuda_reduce.cuh"
#include "soft_f1/math.h"

namespace tricks {
namespace soft_f1 {
namespace {

constexpr int kBlock = 256;

// The block's row i: (shift, log_sum) of its softmax, every thread getting them.
template <typename T, typename A>
__device__ void row_softmax_stats(const T* z, int64_t C, A& shift, A& log_sum) {
  __shared__ A sm_m[kBlock / 32], sm_s[kBlock / 32];
  A m = -INFINITY, s = 0;
  for (int64_t c = threadIdx.x; c < C; c += kBlock) {
    const A v = to_acc<A>(z[c]);
    if (v > m) {
      s = (m == -INFINITY ? A(0) : s * exp_dev(m - v)) + A(1);
      m = v;
    } else if (v != -INFINITY) {
      s += exp_dev(v - m);
    }
  }
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
  for (int64_t i = r0; i < r1; ++i) {
    const A v = to_acc<A>(static_cast<const T*>(q.logits)[i * C + c]);
    const A p = q.multi_label ? A(1) / (A(1) + exp_dev(-v)) : exp_dev((v - stats[2 * i]) - stats[2 * i + 1]);
    const A t = q.dense != nullptr ? to_acc<A>(static_cast<const T*>(q.dense)[i * C + c]) : label_target<A>(q, i, c);
    tp += t * p;
    sp += p;
    st += t;
  }
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
  auto dp = [&](int64_t c) {
    const A t = q.dense != nullptr ? to_acc<A>(static_cast<const T*>(q.dense)[i * C + c]) : label_target<A>(q, i, c);
    return g_tp[c] * t + g_sp[c];
  };
  if (q.multi_label) {
    for (int64_t c = threadIdx.x; c < C; c += kBlock) {
      const A p = A(1) / (A(1) + exp_dev(-to_acc<A>(z[c])));
      dz[c] = from_acc<T>(dp(c) * p * (A(1) - p));
    }
    return;
  }
  A shift, log_sum;
  row_softmax_stats(z, C, shift, log_sum);
  A dot = 0;
  for (int64_t c = threadIdx.x; c < C; c += kBlock) dot += dp(c) * exp_dev((to_acc<A>(z[c]) - shift) - log_sum);
  dot = group_sum<kBlock>(dot, smem);
  for (int64_t c = threadIdx.x; c < C; c += kBlock) {
    const A p = exp_dev((to_acc<A>(z[c]) - shift) - log_sum);
    dz[c] = from_acc<T>(p * (dp(c) - dot));
  }
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
  return launch_rows(q, q.dtype, q.rows, kBlock, stream, [](auto* t) { return &bwd_kernel<pointee_t<decltype(t)>>; });
}

}  // namespace soft_f1
}  // namespace tricks

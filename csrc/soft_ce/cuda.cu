// Soft-target cross-entropy, CUDA: one block per row, or per piece of a row when there are too
// few rows to fill the GPU (common/math.h's row_pieces). Forward reads the row once with an online
// log-sum-exp per thread (running max and sum rescaled when the max grows), so any C works
// (128k-class rows stream through in one pass) without a second read; the block then merges
// the (max, sum) pairs, and merge_kernel the pieces'. Backward: one pass, dz = g (exp(z - lse) T
// - w t).
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

static_assert(kBlock * kUnroll == kCudaSweep, "row_pieces cuts rows in sweeps of the kernels' classes");

// A row's (or piece's) sums as one thread holds them: the online log-sum-exp pair (m, s), and
// sz = sum_c w_c z_c, sw = sum_c w_c (class weights; 1 each without them), st and stz (dense
// targets).
template <typename A>
struct Sums {
  A m, s, sz, sw, st, stz;
};

// The block's sums, complete in thread 0: the (m, s) pairs merged across the warps' lanes, then
// across the warps, the others summed (sw with class weights, st and stz with dense targets).
template <typename A>
__device__ __forceinline__ Sums<A> block_sums(Sums<A> v, const Params& q, A* smem, A* sm_m, A* sm_s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A m2 = __shfl_xor_sync(0xffffffffu, v.m, o), s2 = __shfl_xor_sync(0xffffffffu, v.s, o);
    lse_merge(v.m, v.s, m2, s2);
  }
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) {
    sm_m[warp] = v.m;
    sm_s[warp] = v.s;
  }
  __syncthreads();
  v.m = sm_m[0];
  v.s = sm_s[0];
#pragma unroll
  for (int w = 1; w < kBlock / 32; ++w) lse_merge(v.m, v.s, sm_m[w], sm_s[w]);
  v.sz = group_sum<kBlock>(v.sz, smem);
  if (q.weight != nullptr) v.sw = group_sum<kBlock>(v.sw, smem);
  if (q.mode == Mode::Dense) {
    v.st = group_sum<kBlock>(v.st, smem);
    v.stz = group_sum<kBlock>(v.stz, smem);
  }
  return v;
}

// Row i's loss and stats from its complete sums.
template <typename T, typename A>
__device__ __forceinline__ void finish_row(const Params& q, int64_t i, const Sums<A>& v) {
  const T* z = static_cast<const T*>(q.logits) + i * q.classes;
  const A log_sum = row_log_sum(v.m, log(v.s)), lse = v.m + log_sum;
  A* loss = static_cast<A*>(q.loss);
  A* stats = static_cast<A*>(q.stats);
  A total;
  if (q.mode == Mode::Dense) {
    total = v.st;
    loss[i] = lse * v.st - v.stz;
  } else {
    const RowTarget<A> r = row_target<A>(q, i);
    total = compact_total(q, r, v.sw);
    loss[i] = compact_loss(q, r, lse, total, v.sz, [z](int64_t c) { return to_acc<A>(z[c]); });
  }
  stats[kStats * i] = v.m;
  stats[kStats * i + 1] = log_sum;
  stats[kStats * i + 2] = total;
}

// Row blockIdx.x's piece blockIdx.y (the whole row when q.pieces is 1): its sums, finished into
// the row's loss and stats, or with pieces written to q.parts for merge_kernel.
template <typename T>
__global__ void __launch_bounds__(kBlock) fwd_kernel(const Params q) {
  using A = acc_t<T>;
  __shared__ A smem[kBlock / 32];
  __shared__ A sm_m[kBlock / 32], sm_s[kBlock / 32];
  const int64_t i = blockIdx.x, C = q.classes, begin = blockIdx.y * q.piece_classes;
  const int64_t end = begin + q.piece_classes < C ? begin + q.piece_classes : C;
  const T* z = static_cast<const T*>(q.logits) + i * C;
  const T* t = q.mode == Mode::Dense ? static_cast<const T*>(q.dense) + i * C : nullptr;
  Sums<A> v{-INFINITY, 0, 0, 0, 0, 0};
  struct In {
    T z, t;
    A w;
  };
  const auto load = [&](int64_t c) { return In{z[c], t != nullptr ? t[c] : T(), class_weight<A>(q, c)}; };
  for_each_unrolled<kUnroll>(begin + threadIdx.x, end, static_cast<int64_t>(kBlock), load,
                             [&](int64_t, const In& in) {
    const A x = to_acc<A>(in.z);
    if (x > v.m) {
      v.s = (v.m == -INFINITY ? A(0) : v.s * exp_dev(v.m - x)) + A(1);
      v.m = x;
    } else if (x != -INFINITY) {  // -inf - -inf would be NaN
      v.s += exp_dev(x - v.m);
    }
    v.sz += weighted(in.w, x);
    v.sw += in.w;
    if (t != nullptr) {
      const A tv = to_acc<A>(in.t) * in.w;
      v.st += tv;
      v.stz += weighted(tv, x);
    }
  });
  v = block_sums(v, q, smem, sm_m, sm_s);
  if (threadIdx.x != 0) return;
  if (q.pieces == 1) {
    finish_row<T>(q, i, v);
    return;
  }
  A* part = static_cast<A*>(q.parts) + kParts * (i * q.pieces + blockIdx.y);
  part[0] = v.m;
  part[1] = v.s;
  part[2] = v.sz;
  part[3] = v.sw;
  part[4] = v.st;
  part[5] = v.stz;
}

// Row blockIdx.x's loss and stats from its pieces' sums (rows in pieces only).
template <typename T>
__global__ void __launch_bounds__(kBlock) merge_kernel(const Params q) {
  using A = acc_t<T>;
  __shared__ A smem[kBlock / 32];
  __shared__ A sm_m[kBlock / 32], sm_s[kBlock / 32];
  const int64_t i = blockIdx.x;
  const A* parts = static_cast<const A*>(q.parts) + kParts * i * q.pieces;
  Sums<A> v{-INFINITY, 0, 0, 0, 0, 0};
  // kUnroll pieces loaded before any is merged, as the sweeps load classes (a piece at a time
  // waited a round trip per 24 bytes: 77 % of the modelled H100 ceiling)
  for_each_unrolled<kUnroll>(
      static_cast<int64_t>(threadIdx.x), q.pieces, static_cast<int64_t>(kBlock),
      [&](int64_t k) {
        const A* p = parts + kParts * k;
        return Sums<A>{p[0], p[1], p[2], p[3], p[4], p[5]};
      },
      [&](int64_t, const Sums<A>& p) {
        lse_merge(v.m, v.s, p.m, p.s);
        v.sz += p.sz;
        v.sw += p.sw;
        v.st += p.st;
        v.stz += p.stz;
      });
  v = block_sums(v, q, smem, sm_m, sm_s);
  if (threadIdx.x == 0) finish_row<T>(q, i, v);
}

template <typename T>
__global__ void __launch_bounds__(kBlock) bwd_kernel(const Params q) {
  using A = acc_t<T>;
  const int64_t i = blockIdx.x, C = q.classes, begin = blockIdx.y * q.piece_classes;
  const int64_t end = begin + q.piece_classes < C ? begin + q.piece_classes : C;
  const T* z = static_cast<const T*>(q.logits) + i * C;
  T* dz = static_cast<T*>(q.dlogits) + i * C;
  const A* stats = static_cast<const A*>(q.stats);
  const A g = static_cast<const A*>(q.grad)[i * q.grad_stride], shift = stats[kStats * i],
          log_sum = stats[kStats * i + 1], total = stats[kStats * i + 2];
  auto softmax = [&](T zc) { return exp_dev((to_acc<A>(zc) - shift) - log_sum); };
  // fp64: one class per iteration, or sm_90's ptxas spills the unrolled exp polynomials
  // (compile-check)
  constexpr int unroll = sizeof(A) == 8 ? 1 : kUnroll;
  const int64_t first = begin + threadIdx.x, stride = kBlock;
  if (q.mode == Mode::Dense) {
    const T* t = static_cast<const T*>(q.dense) + i * C;
    struct In {
      T z, t;
      A w;
    };
    for_each_unrolled<unroll>(
        first, end, stride, [&](int64_t c) { return In{z[c], t[c], class_weight<A>(q, c)}; },
        [&](int64_t c, const In& in) { dz[c] = from_acc<T>(g * (softmax(in.z) * total - in.w * to_acc<A>(in.t))); });
    return;
  }
  const RowTarget<A> r = row_target<A>(q, i);
  const A off = static_cast<A>(q.label_smoothing) / static_cast<A>(C);
  struct In {
    T z;
    A w;
  };
  for_each_unrolled<unroll>(first, end, stride, [&](int64_t c) { return In{z[c], class_weight<A>(q, c)}; },
                            [&](int64_t c, const In& in) {
                              A v;
                              if (r.ignored) v = 0;
                              else if (r.invalid) v = NAN;
                              else v = g * (softmax(in.z) * total - in.w * compact_target(r, c, off));
                              dz[c] = from_acc<T>(v);
                            });
}

}  // namespace

const char* launch_fwd_cuda(const Params& q, void* stream) {
  const char* error = launch_rows(q, q.dtype, q.rows, q.pieces, kBlock, stream,
                                  [](auto* t) { return &fwd_kernel<pointee_t<decltype(t)>>; });
  if (error != nullptr || q.pieces == 1) return error;
  return launch_rows(q, q.dtype, q.rows, 1, kBlock, stream,
                     [](auto* t) { return &merge_kernel<pointee_t<decltype(t)>>; });
}

const char* launch_bwd_cuda(const Params& q, void* stream) {
  return launch_rows(q, q.dtype, q.rows, q.pieces, kBlock, stream,
                     [](auto* t) { return &bwd_kernel<pointee_t<decltype(t)>>; });
}

}  // namespace soft_ce
}  // namespace tricks

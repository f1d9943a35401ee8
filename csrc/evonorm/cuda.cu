// EvoNorm-S0, CUDA: one block per (sample, group). Forward: shifted sum, centred sum of
// squares, output (3 reads of the group, the last two mostly from L2: a group is 100 KB at
// 256x56x56 fp32 with 32 groups); backward: per-channel sums of the group, then dx. Elements
// are walked by a flat in-group index e = c_local * P + p (32-bit: groups < 2^31 elements).
#include <cuda_runtime.h>

#include <algorithm>

#include "common/cuda_dtype.cuh"
#include "common/cuda_launch.cuh"
#include "common/cuda_loop.cuh"
#include "common/cuda_reduce.cuh"
#include "evonorm/math.h"

namespace tricks {
namespace evonorm {
namespace {

constexpr int kBlock = 256;
// The loops over a group keep kUnrollOf<T> elements per thread in flight instead of 1
// (common/cuda_loop.cuh; scripts/gpu_model.py on sm_90: the fp16 forward from 73 % of the
// modelled H100 ceiling to 100 %, the fp32 split output pass from 55 % to 100 %).
// Chunks merged per iteration in the split output pass.
constexpr int kUnroll = 4;

// use(e, load(e)) for this thread's elements first, first + kBlock, ... < end of a group (T: the
// tensor's element type).
template <typename T, typename Load, typename Use>
__device__ __forceinline__ void for_each_element(uint32_t first, uint32_t end, Load load, Use use) {
  for_each_unrolled<kUnrollOf<T>>(first, end, static_cast<uint32_t>(kBlock), load, use);
}

__device__ __forceinline__ int64_t offset_of(const Params& q, int64_t n, int64_t c, int64_t p) {
  return n * q.stride_n + c * q.stride_c + p * q.stride_p;
}

// This block's (sample, group): channels c0 .. c0 + cg, P spatial positions each.
struct Group {
  int64_t n, c0;
  uint32_t cg, P;
};

__device__ __forceinline__ Group group_of(const Params& q) {
  // 32-bit division: the grid has N * G < 2^31 blocks, and a 64-bit one is a subroutine call
  const uint32_t groups = static_cast<uint32_t>(q.groups);
  const uint32_t cg = static_cast<uint32_t>(q.channels) / groups;
  return Group{blockIdx.x / groups, (blockIdx.x % groups) * cg, cg, static_cast<uint32_t>(q.spatial)};
}

// The group's first element: the pivot its statistics are taken about (evonorm/math.h).
template <typename T, typename A>
__device__ __forceinline__ A pivot_of(const Params& q, const Group& gr) {
  return to_acc<A>(static_cast<const T*>(q.x)[offset_of(q, gr.n, gr.c0, 0)]);
}

// Shift (mean - pivot) and centred sum of squares of elements [e0, e1) of the group (e0 < e1),
// two passes (the second from L1/L2); every thread gets both. Every chunk of a split group
// takes the group's pivot, so their shifts merge as they are.
template <typename T, typename A>
__device__ __forceinline__ void moments(const Params& q, const Group& gr, uint32_t e0, uint32_t e1, A* smem, A& shift,
                                        A& m2) {
  const T* x = static_cast<const T*>(q.x);
  const uint32_t P = gr.P;
  const A pivot = pivot_of<T, A>(q, gr);
  const auto load = [&](uint32_t e) { return x[offset_of(q, gr.n, gr.c0 + e / P, e % P)]; };
  A s = 0;
  for_each_element<T>(e0 + threadIdx.x, e1, load, [&](uint32_t, T v) { s += to_acc<A>(v) - pivot; });
  shift = group_sum<kBlock>(s, smem) / static_cast<A>(e1 - e0);
  A sq = 0;
  for_each_element<T>(e0 + threadIdx.x, e1, load, [&](uint32_t, T v) {
    const A d = centred(to_acc<A>(v), pivot, shift);
    sq += d * d;
  });
  m2 = group_sum<kBlock>(sq, smem);
}

// Outputs of elements [e0, e1) of the group; block (x, 0)'s thread 0 stores the shift and rstd.
template <typename T, typename A>
__device__ __forceinline__ void write_outputs(const Params& q, const Group& gr, uint32_t e0, uint32_t e1, A shift,
                                              A r) {
  if (blockIdx.y == 0 && threadIdx.x == 0) {
    static_cast<A*>(q.mean)[blockIdx.x] = shift;
    static_cast<A*>(q.rstd)[blockIdx.x] = r;
  }
  const T* x = static_cast<const T*>(q.x);
  T* y = static_cast<T*>(q.y);
  const A* v = static_cast<const A*>(q.v);
  const A* weight = static_cast<const A*>(q.weight);
  const A* bias = static_cast<const A*>(q.bias);
  struct In {
    T x;
    A v, weight, bias;
  };
  for_each_element<T>(
      e0 + threadIdx.x, e1,
      [&](uint32_t e) {
        const int64_t c = gr.c0 + e / gr.P;
        return In{x[offset_of(q, gr.n, c, e % gr.P)], v[c], weight[c], bias[c]};
      },
      [&](uint32_t e, const In& in) {
        const A xv = to_acc<A>(in.x);
        y[offset_of(q, gr.n, gr.c0 + e / gr.P, e % gr.P)] =
            from_acc<T>(forward(xv, sigmoid_of(in.v * xv, exp_dev(-in.v * xv)), r, in.weight, in.bias));
      });
}

template <typename A>
__device__ __forceinline__ A rstd_of(const Params& q, A m2, uint32_t M) {
  return A(1) / sqrt(m2 / static_cast<A>(M) + static_cast<A>(q.eps));
}

template <typename T>
__global__ void __launch_bounds__(kBlock) fwd_kernel(const Params q) {
  using A = acc_t<T>;
  __shared__ A smem[kBlock / 32];
  const Group gr = group_of(q);
  const uint32_t M = gr.cg * gr.P;
  A shift, m2;
  moments<T>(q, gr, 0, M, smem, shift, m2);
  write_outputs<T>(q, gr, 0, M, shift, rstd_of(q, m2, M));
}

// Split forward, pass 1: chunk blockIdx.y of the group: its count, shift and centred sum of
// squares.
template <typename T>
__global__ void __launch_bounds__(kBlock) split_stats_kernel(const Params q) {
  using A = acc_t<T>;
  __shared__ A smem[kBlock / 32];
  const Group gr = group_of(q);
  const uint32_t split = static_cast<uint32_t>(q.split), M = gr.cg * gr.P, chunk = (M + split - 1) / split;
  const uint32_t e0 = blockIdx.y * chunk, e1 = min(M, e0 + chunk);
  A* out = static_cast<A*>(q.partials) + 3 * (static_cast<int64_t>(blockIdx.x) * q.split + blockIdx.y);
  if (e0 >= e1) {
    if (threadIdx.x == 0) out[0] = out[1] = out[2] = A(0);
    return;  // uniform across the block: no thread reaches a barrier
  }
  A shift, m2;
  moments<T>(q, gr, e0, e1, smem, shift, m2);
  if (threadIdx.x == 0) {
    out[0] = static_cast<A>(e1 - e0);
    out[1] = shift;
    out[2] = m2;
  }
}

// Split forward, pass 2: every block merges the group's chunks in the same order (so all agree
// bit for bit) and writes its chunk's outputs.
template <typename T>
__global__ void __launch_bounds__(kBlock) split_out_kernel(const Params q) {
  using A = acc_t<T>;
  const Group gr = group_of(q);
  const uint32_t split = static_cast<uint32_t>(q.split), M = gr.cg * gr.P, chunk = (M + split - 1) / split;
  const uint32_t e0 = blockIdx.y * chunk, e1 = min(M, e0 + chunk);
  const A* part = static_cast<const A*>(q.partials) + 3 * static_cast<int64_t>(blockIdx.x) * q.split;
  A n = 0, shift = 0, m2 = 0;
  // the chunks' (count, shift, m2) loaded kUnroll at a time, merged in chunk order
  for (int64_t k = 0; k < q.split; k += kUnroll) {
    A in[kUnroll][3] = {};
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (k + u < q.split)
        for (int j = 0; j < 3; ++j) in[u][j] = part[3 * (k + u) + j];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (k + u < q.split) merge_moments(n, shift, m2, in[u][0], in[u][1], in[u][2]);
  }
  write_outputs<T>(q, gr, e0, e1, shift, rstd_of(q, m2, M));
}

template <typename T>
__global__ void __launch_bounds__(kBlock) bwd_kernel(const Params q) {
  using A = acc_t<T>;
  __shared__ A smem[kBlock / 32];
  const Group gr = group_of(q);
  const int64_t n = gr.n, c0 = gr.c0;
  const uint32_t cg = gr.cg, P = gr.P, M = cg * P;
  const T* x = static_cast<const T*>(q.x);
  const T* dy = static_cast<const T*>(q.dy);
  const A pivot = pivot_of<T, A>(q, gr);
  const A shift = static_cast<const A*>(q.mean)[blockIdx.x], r = static_cast<const A*>(q.rstd)[blockIdx.x];
  const A* v = static_cast<const A*>(q.v);
  const A* weight = static_cast<const A*>(q.weight);
  A sum_ga = 0;  // kept by every thread: group_sum returns the sum to all
  for (int64_t c = c0; c < c0 + cg; ++c) {
    const A vc = v[c];
    A a = 0, vv = 0, b = 0;
    struct XDy {
      T x, dy;
    };
    for_each_element<T>(
        threadIdx.x, P,
        [&](uint32_t p) {
          const int64_t o = offset_of(q, n, c, p);
          return XDy{x[o], dy[o]};
        },
        [&](uint32_t, const XDy& in) {
          const A xv = to_acc<A>(in.x), d = to_acc<A>(in.dy);
          const A s = sigmoid_of(vc * xv, exp_dev(-vc * xv));
          a += d * xv * s;
          vv += d * xv * xv * s * (A(1) - s);
          b += d;
        });
    a = group_sum<kBlock>(a, smem);
    vv = group_sum<kBlock>(vv, smem);
    b = group_sum<kBlock>(b, smem);
    if (threadIdx.x == 0) {
      A* pc = static_cast<A*>(q.partials) + 3 * (n * q.channels + c);
      pc[0] = r * a;
      pc[1] = r * vv;
      pc[2] = b;
    }
    sum_ga += weight[c] * a;
  }
  const A c_ng = r / static_cast<A>(M) * sum_ga;
  T* dx = static_cast<T*>(q.dx);
  struct In {
    T x, dy;
    A v, weight;
  };
  for_each_element<T>(
      threadIdx.x, M,
      [&](uint32_t e) {
        const int64_t c = c0 + e / P, o = offset_of(q, n, c, e % P);
        return In{x[o], dy[o], v[c], weight[c]};
      },
      [&](uint32_t e, const In& in) {
        const A xv = to_acc<A>(in.x);
        const A s = sigmoid_of(in.v * xv, exp_dev(-in.v * xv));
        dx[offset_of(q, n, c0 + e / P, e % P)] =
            from_acc<T>(backward(xv, to_acc<A>(in.dy), s, r, in.weight, in.v, c_ng, centred(xv, pivot, shift)));
      });
}

}  // namespace

int64_t choose_split_cuda(int64_t groups_total, int64_t group_numel) {
  int device = 0, sms = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  // One block per group already gives >= 2 blocks per SM, or groups are small: no split.
  // Else enough chunks for ~2 blocks per SM, each of >= 8192 elements (32 KB fp32: the chunk's
  // second pass still finds it in L2), at most 64 chunks (the merge loop in every block).
  if (groups_total >= 2 * sms || group_numel < 2 * 8192) return 1;
  const int64_t want = (2 * sms + groups_total - 1) / groups_total;
  return std::max<int64_t>(1, std::min<int64_t>({want, group_numel / 8192, 64}));
}

const char* launch_fwd_cuda(const Params& q, void* stream) {
  if (q.batch * q.channels * q.spatial == 0) return nullptr;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const unsigned blocks = static_cast<unsigned>(q.batch * q.groups);
  dispatch_dtype(q.dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if (q.split > 1) {
      const dim3 grid(blocks, static_cast<unsigned>(q.split));
      launch_kernel(split_stats_kernel<T>, grid, kBlock, 0, s, q);
      launch_kernel(split_out_kernel<T>, grid, kBlock, 0, s, q);
    } else {
      launch_kernel(fwd_kernel<T>, blocks, kBlock, 0, s, q);
    }
  });
  return last_error();
}

const char* launch_bwd_cuda(const Params& q, void* stream) {
  if (q.batch * q.channels * q.spatial == 0) return nullptr;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch_dtype(q.dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch_kernel(bwd_kernel<T>, static_cast<unsigned>(q.batch * q.groups), kBlock, 0, s, q);
  });
  return last_error();
}

}  // namespace evonorm
}  // namespace tricks

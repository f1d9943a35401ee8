// Weight standardization, CUDA. A group of TPR threads owns one output channel (row) and makes
// three passes over it (sum, centred sum of squares, write). Weight rows are short (K <= ~5K for
// the convs and linears of ResNet/ViT/GPT-2), so passes two and three hit L1/L2, and DRAM
// traffic stays at the floor: read w once, write w_hat once (bwd: read go, w; write dw).
#include <cuda_runtime.h>

#include "common/cuda_dtype.cuh"
#include "common/cuda_launch.cuh"
#include "common/cuda_loop.cuh"
#include "common/cuda_reduce.cuh"
#include "weight_standardize/math.h"

namespace tricks {
namespace ws {
namespace {

constexpr int kBlock = 256;
// The row loops keep kUnrollOf<T> loads per thread in flight instead of 1 (common/cuda_loop.cuh;
// scripts/gpu_model.py on sm_90: the fp16 forward from 60 % of the modelled H100 ceiling to 88 %).

template <typename T, int TPR>
__global__ void __launch_bounds__(kBlock) fwd_kernel(const Params p) {
  using A = acc_t<T>;
  constexpr int RPB = kBlock / TPR;
  __shared__ A smem[kBlock / 32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * RPB + threadIdx.x / TPR;
  if (row >= p.rows) return;  // uniform per row group, so no barrier is skipped by a subset
  const int lane = threadIdx.x % TPR;
  const int64_t K = p.K;
  const T* x = static_cast<const T*>(p.w) + row * K;
  const A pivot = K > 0 ? to_acc<A>(x[0]) : A(0);
  const int64_t first = lane, stride = TPR;
  const auto load = [&](int64_t k) { return x[k]; };
  A s = 0;
  for_each_unrolled<kUnrollOf<T>>(first, K, stride, load, [&](int64_t, T v) { s += to_acc<A>(v) - pivot; });
  const A mean = shifted_mean(pivot, group_sum<TPR>(s, smem), K);
  A q = 0;
  for_each_unrolled<kUnrollOf<T>>(first, K, stride, load, [&](int64_t, T v) {
    const A d = to_acc<A>(v) - mean;
    q += d * d;
  });
  const A rstd = rstd_of(group_sum<TPR>(q, smem), K, static_cast<A>(p.eps));
  const A a = gain_of(static_cast<const A*>(p.gain), row);
  T* y = static_cast<T*>(p.out) + row * K;
  for_each_unrolled<kUnrollOf<T>>(first, K, stride, load,
                             [&](int64_t k, T v) { y[k] = from_acc<T>(forward(to_acc<A>(v), mean, rstd, a)); });
  if (lane == 0) {
    static_cast<A*>(p.mean)[row] = mean;
    static_cast<A*>(p.rstd)[row] = rstd;
  }
}

template <typename T, int TPR>
__global__ void __launch_bounds__(kBlock) bwd_kernel(const BwdParams p) {
  using A = acc_t<T>;
  constexpr int RPB = kBlock / TPR;
  __shared__ A smem[kBlock / 32];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * RPB + threadIdx.x / TPR;
  if (row >= p.rows) return;
  const int lane = threadIdx.x % TPR;
  const int64_t K = p.K;
  const T* g = static_cast<const T*>(p.grad_out) + row * K;
  const T* x = static_cast<const T*>(p.w) + row * K;
  const A m = static_cast<const A*>(p.mean)[row];
  const A rs = static_cast<const A*>(p.rstd)[row];
  struct GX {
    T g, x;
  };
  const int64_t first = lane, stride = TPR;
  const auto load = [&](int64_t k) { return GX{g[k], x[k]}; };
  A s1 = 0, s2 = 0;
  for_each_unrolled<kUnrollOf<T>>(first, K, stride, load, [&](int64_t, const GX& v) {
    const A gv = to_acc<A>(v.g);
    s1 += gv;
    s2 += gv * (to_acc<A>(v.x) - m) * rs;
  });
  s1 = group_sum<TPR>(s1, smem);
  s2 = group_sum<TPR>(s2, smem);
  const A a = gain_of(static_cast<const A*>(p.gain), row);
  const A s1k = mean_of(s1, K), s2k = mean_of(s2, K);
  T* d = static_cast<T*>(p.grad_w) + row * K;
  for_each_unrolled<kUnrollOf<T>>(first, K, stride, load, [&](int64_t k, const GX& v) {
    d[k] = from_acc<T>(backward(to_acc<A>(v.g), to_acc<A>(v.x), m, rs, a, s1k, s2k));
  });
  if (lane == 0) static_cast<A*>(p.grad_gain)[row] = s2;
}

// One warp per row up to K = 1024 (32 loads per thread per pass); a whole block beyond.
constexpr int64_t kWarpRowMaxK = 1024;

template <template <typename, int> class Kernel, typename P>
const char* launch(const P& p, void* stream) {
  if (p.rows == 0) return nullptr;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch_dtype(p.dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if (p.K <= kWarpRowMaxK) {
      constexpr int RPB = kBlock / 32;
      Kernel<T, 32>::launch((p.rows + RPB - 1) / RPB, s, p);
    } else {
      Kernel<T, kBlock>::launch(p.rows, s, p);
    }
  });
  return last_error();
}

template <typename T, int TPR>
struct FwdLaunch {
  static void launch(int64_t blocks, cudaStream_t s, const Params& p) {
    launch_kernel(fwd_kernel<T, TPR>, blocks, kBlock, 0, s, p);
  }
};
template <typename T, int TPR>
struct BwdLaunch {
  static void launch(int64_t blocks, cudaStream_t s, const BwdParams& p) {
    launch_kernel(bwd_kernel<T, TPR>, blocks, kBlock, 0, s, p);
  }
};

}  // namespace

const char* launch_fwd_cuda(const Params& p, void* stream) { return launch<FwdLaunch>(p, stream); }
const char* launch_bwd_cuda(const BwdParams& p, void* stream) { return launch<BwdLaunch>(p, stream); }

}  // namespace ws
}  // namespace tricks

// Weight standardization, CPU: one task per output channel (at::parallel_for over rows).
// fp16/bf16 elements are read and written through load_as / store_rounded (common/cpu_simd.h):
// through c10's struct types GCC left every 16-bit loop scalar.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/register.h"

#include "common/cpu_simd.h"
#include "weight_standardize/prepare.h"

namespace tricks {
namespace ws {
namespace {

// Independent partial sums let the compiler vectorize the reductions without -ffast-math (which
// would license reassociation everywhere) and keep rounding error low. 64 of them are four
// AVX-512 accumulators: with 8 (one vector) each add waited for the previous one (a 4-cycle
// latency chain) and a 512x512x3x3 fp32 forward took 2.5 ms on one thread, 0.84 ms with 64. They
// are folded pairwise, a vector add per level: a sequential fold of 64 cost 8 cycles per element
// of a 64-element row. The tail fills the lanes too: summed into one, the 49 elements of a
// depthwise 7x7 row were another latency chain (2.8 ns per element, forward).
constexpr int kLanes = 64;
// Rows shorter than 128 take 8 partial sums: on a short row the 64 lanes' zeroing and six-level
// fold cost more than the adds (768x1x7x7 fp32 on 2 threads: forward 38 -> 28 us, backward 30 ->
// 17 us). 8 on longer rows brought the latency chain back (64x3x7x7, K = 147: forward 10 -> 18 us);
// 16 below 256 gained less on the 49-element rows (forward 31 us, backward 22 us).
constexpr int kShortLanes = 8;
constexpr int64_t kShortRow = 128;

// The terms of the row sums, as always-inline functors (docs/DESIGN.md, "CPU kernels: loops GCC
// vectorizes"): with lambdas GCC called the term out of line, compiled for the baseline ISA, and
// every WS loop ran scalar (512x512x3x3 fp32, one thread: forward 3.3 ms, backward 2.9 ms).
template <typename A>
struct Shifted {  // x - pivot
  A pivot;
  TRICKS_CPU_INLINE A operator()(A v, int64_t) const { return v - pivot; }
};

template <typename A>
struct SquaredFrom {  // (x - mean)^2
  A mean;
  TRICKS_CPU_INLINE A operator()(A v, int64_t) const { return (v - mean) * (v - mean); }
};

template <typename A>
struct Plain {  // go
  TRICKS_CPU_INLINE A operator()(A v, int64_t) const { return v; }
};

template <typename T, typename A>
struct TimesStandardized {  // go * what, what = (x - mean) * rstd
  const T* __restrict__ x;
  A mean, rstd;
  TRICKS_CPU_INLINE A operator()(A v, int64_t k) const { return v * (load_as<A>(x, k) - mean) * rstd; }
};

template <int Lanes, typename T, typename A, typename F>
TRICKS_CPU_INLINE A row_sum_in(const T* __restrict__ x, int64_t K, F f) {
  A part[Lanes] = {};
  int64_t k = 0;
  for (; k + Lanes <= K; k += Lanes)
    for (int j = 0; j < Lanes; ++j) part[j] += f(load_as<A>(x, k + j), k + j);
  // the tail lane by lane too: short rows (a depthwise 7x7 has 49 elements) are all tail
  for (int64_t j = 0; j < K - k; ++j) part[j] += f(load_as<A>(x, k + j), k + j);
  for (int width = Lanes / 2; width >= 1; width /= 2)
    for (int j = 0; j < width; ++j) part[j] += part[j + width];
  return part[0];
}

template <typename T, typename A, typename F>
TRICKS_CPU_INLINE A row_sum(const T* __restrict__ x, int64_t K, F f) {
  return K < kShortRow ? row_sum_in<kShortLanes, T, A>(x, K, f) : row_sum_in<kLanes, T, A>(x, K, f);
}

template <typename T, typename A>
TRICKS_CPU_INLINE void fwd_row(const T* __restrict__ x, T* __restrict__ y, int64_t K, A mean, A rstd, A a) {
  for (int64_t k = 0; k < K; ++k) store_rounded(y, k, forward(load_as<A>(x, k), mean, rstd, a));
}

template <typename T, typename A>
TRICKS_CPU_INLINE void bwd_row(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ d, int64_t K,
                               A m, A rs, A a, A s1k, A s2k) {
  for (int64_t k = 0; k < K; ++k) store_rounded(d, k, backward(load_as<A>(g, k), load_as<A>(x, k), m, rs, a, s1k, s2k));
}

// Rows per task: enough work (~16K elements) to amortize the thread hand-off.
int64_t grain(int64_t K) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1)); }

template <typename T>
TRICKS_CPU_CLONES void fwd_rows(const Params& p, int64_t begin, int64_t end) {
  using A = acc_t<T>;
  const T* w = static_cast<const T*>(p.w);
  T* out = static_cast<T*>(p.out);
  const A* gain = static_cast<const A*>(p.gain);
  A* mean_out = static_cast<A*>(p.mean);
  A* rstd_out = static_cast<A*>(p.rstd);
  const int64_t K = p.K;
  const A eps = static_cast<A>(p.eps);
  for (int64_t r = begin; r < end; ++r) {
    const T* x = w + r * K;
    const A pivot = K > 0 ? load_as<A>(x, 0) : A(0);
    const A mean = shifted_mean(pivot, row_sum<T, A>(x, K, Shifted<A>{pivot}), K);
    const A rstd = rstd_of(row_sum<T, A>(x, K, SquaredFrom<A>{mean}), K, eps);
    fwd_row<T, A>(x, out + r * K, K, mean, rstd, gain_of(gain, r));
    mean_out[r] = mean;
    rstd_out[r] = rstd;
  }
}

template <typename T>
void fwd_kernel(const Params& p) {
  at::parallel_for(0, p.rows, grain(p.K), [&](int64_t begin, int64_t end) { fwd_rows<T>(p, begin, end); });
}

template <typename T>
TRICKS_CPU_CLONES void bwd_rows(const BwdParams& p, int64_t begin, int64_t end) {
  using A = acc_t<T>;
  const T* go = static_cast<const T*>(p.grad_out);
  const T* w = static_cast<const T*>(p.w);
  const A* gain = static_cast<const A*>(p.gain);
  const A* mean = static_cast<const A*>(p.mean);
  const A* rstd = static_cast<const A*>(p.rstd);
  T* gw = static_cast<T*>(p.grad_w);
  A* gg = static_cast<A*>(p.grad_gain);
  const int64_t K = p.K;
  for (int64_t r = begin; r < end; ++r) {
    const T* g = go + r * K;
    const T* x = w + r * K;
    const A m = mean[r], rs = rstd[r];
    const A s1 = row_sum<T, A>(g, K, Plain<A>{});
    const A s2 = row_sum<T, A>(g, K, TimesStandardized<T, A>{x, m, rs});
    bwd_row<T, A>(g, x, gw + r * K, K, m, rs, gain_of(gain, r), mean_of(s1, K), mean_of(s2, K));
    gg[r] = s2;
  }
}

template <typename T>
void bwd_kernel(const BwdParams& p) {
  at::parallel_for(0, p.rows, grain(p.K), [&](int64_t begin, int64_t end) { bwd_rows<T>(p, begin, end); });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd_cpu(const at::Tensor& w, double eps,
                                                       const c10::optional<at::Tensor>& gain) {
  auto f = prepare_fwd(w, eps, gain);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "weight_standardize_fwd_cpu",
                                  [&] { fwd_kernel<scalar_t>(f.params); });
  return {f.out, f.mean, f.rstd};
}

std::tuple<at::Tensor, at::Tensor> bwd_cpu(const at::Tensor& grad_out, const at::Tensor& w,
                                           const c10::optional<at::Tensor>& gain,
                                           const at::Tensor& mean, const at::Tensor& rstd) {
  auto b = prepare_bwd(grad_out, w, gain, mean, rstd);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(), "weight_standardize_bwd_cpu",
                                  [&] { bwd_kernel<scalar_t>(b.params); });
  return {b.grad_w, b.grad_gain};
}

}  // namespace
}  // namespace ws
}  // namespace tricks

TRICKS_REGISTER(CPU, "weight_standardize_fwd", &tricks::ws::fwd_cpu, "weight_standardize_bwd", &tricks::ws::bwd_cpu)

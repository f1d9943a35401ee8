// Weight standardization, CPU: one task per output channel (at::parallel_for over rows).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/cpu_simd.h"
#include "weight_standardize/prepare.h"

namespace tricks {
namespace ws {
namespace {

// Eight independent partial sums let the compiler vectorize the reductions without
// -ffast-math (which would license reassociation everywhere) and keep rounding error low.
constexpr int kLanes = 8;

template <typename T, typename A, typename F>
TRICKS_CPU_INLINE A row_sum(const T* x, int64_t K, F&& f) {
  A part[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes)
    for (int j = 0; j < kLanes; ++j) part[j] += f(static_cast<A>(x[k + j]), k + j);
  for (; k < K; ++k) part[0] += f(static_cast<A>(x[k]), k);
  A s = 0;
  for (int j = 0; j < kLanes; ++j) s += part[j];
  return s;
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
  for (int64_t r = begin; r < end; ++r) {
    const T* x = w + r * K;
    const A pivot = K > 0 ? static_cast<A>(x[0]) : A(0);
    const A mean = shifted_mean(pivot, row_sum<T, A>(x, K, [pivot](A v, int64_t) { return v - pivot; }), K);
    const A sq = row_sum<T, A>(x, K, [mean](A v, int64_t) { return (v - mean) * (v - mean); });
    const A rstd = rstd_of(sq, K, static_cast<A>(p.eps));
    const A a = gain_of(gain, r);
    T* y = out + r * K;
    for (int64_t k = 0; k < K; ++k) y[k] = static_cast<T>(forward(static_cast<A>(x[k]), mean, rstd, a));
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
    const A s1 = row_sum<T, A>(g, K, [](A v, int64_t) { return v; });
    const A s2 = row_sum<T, A>(g, K, [&](A v, int64_t k) { return v * (static_cast<A>(x[k]) - m) * rs; });
    const A a = gain_of(gain, r);
    const A s1k = mean_of(s1, K), s2k = mean_of(s2, K);
    T* d = gw + r * K;
    for (int64_t k = 0; k < K; ++k)
      d[k] = static_cast<T>(backward(static_cast<A>(g[k]), static_cast<A>(x[k]), m, rs, a, s1k, s2k));
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

TORCH_LIBRARY_IMPL(tricks_ext, CPU, m) {
  m.impl("weight_standardize_fwd", &tricks::ws::fwd_cpu);
  m.impl("weight_standardize_bwd", &tricks::ws::bwd_cpu);
}

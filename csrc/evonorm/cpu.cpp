// EvoNorm-S0, CPU: one task per (sample, group). NCHW groups are one contiguous block per
// channel (kUnit: unit spatial stride, vector loops with kLanes partial sums); channels_last
// walks the spatial dim with stride C. Forward: 3 passes over the group (shifted sum, centred
// sum of squares, output) while it sits in L2 (25K elements at 256x56x56, 32 groups); backward:
// 2 passes (per-channel sums, then dx).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/register.h"

#include <cmath>

#include "common/cpu_simd.h"
#include "evonorm/prepare.h"

namespace tricks {
namespace evonorm {
namespace {

constexpr int kLanes = 16;

TRICKS_CPU_INLINE float exp_acc(float x) { return exp_cpu(x); }
TRICKS_CPU_INLINE double exp_acc(double x) { return std::exp(x); }

template <typename T, bool kUnit>
TRICKS_CPU_INLINE const T* at_c(const Params& q, const void* base, int64_t n, int64_t c) {
  return static_cast<const T*>(base) + n * q.stride_n + c * q.stride_c;
}

// sum over p of f(x_p) for one channel row, in kLanes partial sums when the stride is 1.
template <typename T, bool kUnit, typename A, typename F>
TRICKS_CPU_INLINE A row_sum(const T* x, int64_t P, int64_t sp, F f) {
  A lanes[kLanes] = {};
  int64_t p = 0;
  if constexpr (kUnit) {
    for (; p + kLanes <= P; p += kLanes)
      for (int l = 0; l < kLanes; ++l) lanes[l] += f(static_cast<A>(x[p + l]));
  }
  A s = 0;
  for (; p < P; ++p) s += f(static_cast<A>(x[kUnit ? p : p * sp]));
  for (int l = 0; l < kLanes; ++l) s += lanes[l];
  return s;
}

template <typename T, bool kUnit>
TRICKS_CPU_CLONES void fwd_group(const Params& q, int64_t n, int64_t g) {
  using A = acc_t<T>;
  const int64_t cg = q.channels / q.groups, P = q.spatial, sp = kUnit ? 1 : q.stride_p, M = cg * P;
  const int64_t c0 = g * cg;
  const A pivot = static_cast<A>(*at_c<T, kUnit>(q, q.x, n, c0));
  A sum = 0;
  for (int64_t c = c0; c < c0 + cg; ++c)
    sum += row_sum<T, kUnit, A>(at_c<T, kUnit>(q, q.x, n, c), P, sp, [pivot](A v) { return v - pivot; });
  const A shift = sum / static_cast<A>(M);
  A sq = 0;
  for (int64_t c = c0; c < c0 + cg; ++c)
    sq += row_sum<T, kUnit, A>(at_c<T, kUnit>(q, q.x, n, c), P, sp, [pivot, shift](A v) {
      const A d = centred(v, pivot, shift);
      return d * d;
    });
  const A r = A(1) / std::sqrt(sq / static_cast<A>(M) + static_cast<A>(q.eps));
  static_cast<A*>(q.mean)[n * q.groups + g] = shift;
  static_cast<A*>(q.rstd)[n * q.groups + g] = r;
  const A* v = static_cast<const A*>(q.v);
  const A* weight = static_cast<const A*>(q.weight);
  const A* bias = static_cast<const A*>(q.bias);
  for (int64_t c = c0; c < c0 + cg; ++c) {
    const T* x = at_c<T, kUnit>(q, q.x, n, c);
    T* y = const_cast<T*>(at_c<T, kUnit>(q, q.y, n, c));
    const A vc = v[c], gc = weight[c] * r, bc = bias[c];
    for (int64_t p = 0; p < P; ++p) {
      const A xv = static_cast<A>(x[p * sp]);
      const A s = sigmoid_of(vc * xv, exp_acc(-vc * xv));
      y[p * sp] = static_cast<T>(forward(xv, s, A(1), gc, bc));
    }
  }
}

template <typename T, bool kUnit>
TRICKS_CPU_CLONES void bwd_group(const Params& q, int64_t n, int64_t g) {
  using A = acc_t<T>;
  const int64_t cg = q.channels / q.groups, P = q.spatial, sp = kUnit ? 1 : q.stride_p, M = cg * P;
  const int64_t c0 = g * cg;
  const A pivot = static_cast<A>(*at_c<T, kUnit>(q, q.x, n, c0));
  const A shift = static_cast<const A*>(q.mean)[n * q.groups + g];
  const A r = static_cast<const A*>(q.rstd)[n * q.groups + g];
  const A* v = static_cast<const A*>(q.v);
  const A* weight = static_cast<const A*>(q.weight);
  A* part = static_cast<A*>(q.partials);
  A sum_ga = 0;
  for (int64_t c = c0; c < c0 + cg; ++c) {
    const T* x = at_c<T, kUnit>(q, q.x, n, c);
    const T* dy = at_c<T, kUnit>(q, q.dy, n, c);
    const A vc = v[c];
    A a[kLanes] = {}, vv[kLanes] = {}, b[kLanes] = {};
    int64_t p = 0;
    if constexpr (kUnit) {
      for (; p + kLanes <= P; p += kLanes)
        for (int l = 0; l < kLanes; ++l) {
          const A xv = static_cast<A>(x[p + l]), d = static_cast<A>(dy[p + l]);
          const A s = sigmoid_of(vc * xv, exp_acc(-vc * xv));
          a[l] += d * xv * s;
          vv[l] += d * xv * xv * s * (A(1) - s);
          b[l] += d;
        }
    }
    A sa = 0, sv = 0, sb = 0;
    for (; p < P; ++p) {
      const A xv = static_cast<A>(x[p * sp]), d = static_cast<A>(dy[p * sp]);
      const A s = sigmoid_of(vc * xv, exp_acc(-vc * xv));
      sa += d * xv * s;
      sv += d * xv * xv * s * (A(1) - s);
      sb += d;
    }
    for (int l = 0; l < kLanes; ++l) {
      sa += a[l];
      sv += vv[l];
      sb += b[l];
    }
    A* pc = part + 3 * (n * q.channels + c);
    pc[0] = r * sa;
    pc[1] = r * sv;
    pc[2] = sb;
    sum_ga += weight[c] * sa;
  }
  const A c_ng = r / static_cast<A>(M) * sum_ga;
  for (int64_t c = c0; c < c0 + cg; ++c) {
    const T* x = at_c<T, kUnit>(q, q.x, n, c);
    const T* dy = at_c<T, kUnit>(q, q.dy, n, c);
    T* dx = const_cast<T*>(at_c<T, kUnit>(q, q.dx, n, c));
    const A vc = v[c], gc = weight[c];
    for (int64_t p = 0; p < P; ++p) {
      const A xv = static_cast<A>(x[p * sp]);
      const A s = sigmoid_of(vc * xv, exp_acc(-vc * xv));
      dx[p * sp] = static_cast<T>(backward(xv, static_cast<A>(dy[p * sp]), s, r, gc, vc, c_ng, centred(xv, pivot, shift)));
    }
  }
}

template <typename F>
void for_groups(const Params& q, F f) {
  const int64_t tasks = q.batch * q.groups;
  at::parallel_for(0, tasks, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) f(t / q.groups, t % q.groups);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> evonorm_fwd_cpu(const at::Tensor& x, const at::Tensor& v,
                                                               const at::Tensor& weight, const at::Tensor& bias,
                                                               int64_t groups, double eps, int64_t /*split*/) {
  auto f = prepare_fwd(x, v, weight, bias, groups, eps);
  if (x.numel() == 0) return {f.y, f.mean.zero_(), f.rstd.zero_()};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "evonorm_fwd_cpu", [&] {
    if (f.params.stride_p == 1) for_groups(f.params, [&](int64_t n, int64_t g) { fwd_group<scalar_t, true>(f.params, n, g); });
    else for_groups(f.params, [&](int64_t n, int64_t g) { fwd_group<scalar_t, false>(f.params, n, g); });
  });
  return {f.y, f.mean, f.rstd};
}

std::tuple<at::Tensor, at::Tensor> evonorm_bwd_cpu(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& v,
                                                   const at::Tensor& weight, const at::Tensor& mean,
                                                   const at::Tensor& rstd, int64_t groups, double eps) {
  auto b = prepare_bwd(dy, x, v, weight, mean, rstd, groups, eps);
  if (x.numel() == 0) return {b.dx, b.partials.zero_()};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "evonorm_bwd_cpu", [&] {
    if (b.params.stride_p == 1) for_groups(b.params, [&](int64_t n, int64_t g) { bwd_group<scalar_t, true>(b.params, n, g); });
    else for_groups(b.params, [&](int64_t n, int64_t g) { bwd_group<scalar_t, false>(b.params, n, g); });
  });
  return {b.dx, b.partials};
}

}  // namespace
}  // namespace evonorm
}  // namespace tricks

TRICKS_REGISTER(CPU, "evonorm_s0_fwd", &tricks::evonorm::evonorm_fwd_cpu,
                     "evonorm_s0_bwd", &tricks::evonorm::evonorm_bwd_cpu)

// Optimizer step math (GC + Adam/AdamW/RAdam + Lookahead), shared by the CPU and CUDA kernels.
// The spec is tricks_ext/reference/optim.py. Each tensor's step counter (incremented before the
// kernel, as torch's fused Adam does) gives the per-step scalars, computed per tensor in float64
// by step_scalars() below, on the device for CUDA (no host sync, CUDA-graph friendly):
//   p -= step_size * m / (sqrt(v) * inv_denom_scale + eps)   (has_denom)
//   p -= step_size * m                                        (RAdam while rho_t <= 5)
// inv_denom_scale = 1 / sqrt(bc2) for Adam, 1 for rectified RAdam: a reciprocal per tensor leaves
// one sqrt and one division per element (the CPU loop is bound by divider/sqrt throughput).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/math.h"

namespace tricks {
namespace optim {

// Everything a launch needs, torch-free. Pointer tables hold one entry per tensor.
struct Params {
  const int64_t* work;        // [n_items, 4]: tensor, start, length, gc (1: the item is a GC row)
  void* const* p;             // params (dtype)
  const void* const* g;       // grads (dtype, same strides as p)
  void* const* m;             // exp_avg (acc_t)
  void* const* v;             // exp_avg_sq (acc_t)
  void* const* s;             // slow weights (slow_dtype) or nullptr without Lookahead
  const float* const* step;   // step counters, already counting this step
  const float* found_inf;     // nullptr or a scalar: != 0 skips the whole step
  const float* grad_scale;    // nullptr or a scalar: grads are divided by it
  int64_t n_items;
  double lr, beta1, beta2, eps, weight_decay, alpha;
  int64_t lookahead_k;        // 0: no Lookahead
  bool decoupled, rectify, maximize;
  DType dtype, slow_dtype;
};

template <typename A>
struct Scalars {
  A step_size, inv_denom_scale;
  bool has_denom, sync;
};

TRICKS_HD double pow_of(double base, double step) {
  return base > 0.0 ? std::exp(step * std::log(base)) : (step == 0.0 ? 1.0 : 0.0);
}

template <typename A>
TRICKS_HD Scalars<A> step_scalars(double step, const Params& q) {
  const double bc1 = 1.0 - pow_of(q.beta1, step);
  const double b2t = pow_of(q.beta2, step);
  const double bc2 = 1.0 - b2t;
  Scalars<A> s{static_cast<A>(q.lr / bc1), static_cast<A>(1.0 / std::sqrt(bc2)), true, false};
  if (q.rectify) {
    const double rho_inf = 2.0 / (1.0 - q.beta2) - 1.0;
    const double rho_t = rho_inf - 2.0 * step * b2t / bc2;
    if (rho_t > 5.0) {
      const double r = std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t));
      s.step_size = static_cast<A>(q.lr * r * std::sqrt(bc2) / bc1);
      s.inv_denom_scale = A(1);
    } else {
      s.has_denom = false;
    }
  }
  s.sync = q.lookahead_k > 0 && q.s != nullptr && static_cast<int64_t>(step) % q.lookahead_k == 0;
  return s;
}

// Weight decay as two branch-free factors, so the element loop vectorizes:
// p *= p_mul (decoupled: 1 - lr wd, else 1);  g += l2 * p (L2: wd, else 0).
template <typename A>
struct Decay {
  A p_mul, l2;
};

template <typename A>
TRICKS_HD Decay<A> decay_of(const Params& q) {
  return q.decoupled ? Decay<A>{static_cast<A>(1.0 - q.lr * q.weight_decay), A(0)}
                     : Decay<A>{A(1), static_cast<A>(q.weight_decay)};
}

// The moment coefficients. 1 - beta is taken in float64 and then rounded, as torch does with
// its Python-float betas: in fp32, 1 - fp32(0.999) = 0.00099998713, 1.3e-5 below 0.001, which
// made every Adam update 6.8e-6 larger than torch's.
template <typename A>
struct Moments {
  A beta1, beta2, one_minus_beta1, one_minus_beta2;
};

template <typename A>
TRICKS_HD Moments<A> moments_of(const Params& q) {
  return Moments<A>{static_cast<A>(q.beta1), static_cast<A>(q.beta2), static_cast<A>(1.0 - q.beta1),
                    static_cast<A>(1.0 - q.beta2)};
}

// One element: g already centralized (and divided by the AMP grad scale); returns the new p.
// HasDenom is false only for RAdam while rho_t <= 5 (a template flag keeps the loop branch-free).
template <bool HasDenom, typename A>
TRICKS_HD A update(A p, A g, A& m, A& v, Moments<A> b, A eps, Decay<A> d, A step_size, A inv_denom_scale) {
  g += d.l2 * p;
  p *= d.p_mul;
  m = b.beta1 * m + b.one_minus_beta1 * g;
  v = b.beta2 * v + b.one_minus_beta2 * g * g;
  if constexpr (HasDenom) {
    return p - step_size * m / (std::sqrt(v) * inv_denom_scale + eps);
  } else {
    return p - step_size * m;
  }
}

// Lookahead on a sync step: slow += alpha (p - slow); p = slow. Returns the new slow (= new p).
template <typename A>
TRICKS_HD A lookahead(A p, A slow, A alpha) {
  return slow + alpha * (p - slow);
}

}  // namespace optim
}  // namespace tricks

// Optimizer step math (GC + Adam/AdamW/RAdam + Lookahead), shared by the CPU and CUDA kernels.
// The spec is tricks_ext/reference/optim.py. Per-step scalars that depend on the step count
// (bias corrections, the RAdam rectification) are computed per tensor on the host in float64
// and arrive as step_size and inv_denom_scale (1 / sqrt(bc2) for Adam, 1 for rectified RAdam):
//   p -= step_size * m / (sqrt(v) * inv_denom_scale + eps)   (has_denom)
//   p -= step_size * m                                        (RAdam while rho_t <= 5)
// The reciprocal is taken once per tensor on the host: per element that leaves one sqrt and one
// division (the CPU loop is bound by divider/sqrt throughput, ~5 cycles per 8 lanes each).
#pragma once

#include <cmath>

#include "tricks/common.h"

namespace tricks {
namespace optim {

template <typename A>
struct Hyper {
  A beta1, beta2, eps, weight_decay, alpha;
  bool decoupled, maximize;
};

// Weight decay as two branch-free factors, so the element loop vectorizes:
// p *= p_mul (decoupled: 1 - lr wd, else 1);  g += l2 * p (L2: wd, else 0).
template <typename A>
struct Decay {
  A p_mul, l2;
};

template <typename A>
TRICKS_HD Decay<A> decay_of(const Hyper<A>& h, A lr) {
  return h.decoupled ? Decay<A>{A(1) - lr * h.weight_decay, A(0)} : Decay<A>{A(1), h.weight_decay};
}

template <typename A>
struct TensorScalars {
  A step_size, inv_denom_scale, lr;
  bool has_denom, sync;
};

// One element: g already centralized (and divided by the AMP grad scale); returns the new p.
// HasDenom is false only for RAdam while rho_t <= 5 (a template flag keeps the loop branch-free).
template <bool HasDenom, typename A>
TRICKS_HD A update(A p, A g, A& m, A& v, A beta1, A beta2, A eps, Decay<A> d, A step_size, A inv_denom_scale) {
  g += d.l2 * p;
  p *= d.p_mul;
  m = beta1 * m + (A(1) - beta1) * g;
  v = beta2 * v + (A(1) - beta2) * g * g;
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

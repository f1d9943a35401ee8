// SASA+'s step math (statopt's QHM update and its statistic's sums), shared by the CPU and CUDA
// kernels. The spec is tricks_ext/reference/sasa.py:
//   g = grad + weight_decay x;  h = momentum h + (1 - momentum) g;
//   d = g (no buffers) | h (qhm_nu == 1) | (1 - qhm_nu) g + qhm_nu h;  x <- x - lr d
// (with statopt's roundings, see direction)
// and per work item the sums <x_new, d> (x_new as stored) and ||d||^2, in the accumulation type
// over the item, in float64 across items. Fusing them into the update costs no bytes: the step
// reads x, g, h and writes x, h (20 B/param in fp32) with or without them, where the unfused
// statistic read x and d again (16 B/param more).
#pragma once

#include <cstdint>

#include "common/math.h"

namespace tricks {
namespace sasa {

// The direction's form: statopt's QHM with no momentum buffers, with qhm_nu == 1, or general.
enum Kind : int { kGrad = 0, kMomentum = 1, kQhm = 2 };

// Everything a launch needs, torch-free. Pointer tables hold one entry per tensor.
struct Params {
  const int64_t* work;   // [n_items, 3]: tensor, start, length
  void* const* p;        // params (dtype), written
  const void* const* g;  // grads (dtype)
  void* const* h;        // momentum buffers (dtype), written; nullptr for kGrad
  const double* lr;      // the LR on the params' device
  double* sums;          // [n_items, 2]: <x_new, d>, ||d||^2 of each item
  int64_t n_items;
  DType dtype;
  Kind kind;
  double momentum, qhm_nu, weight_decay;
};

template <typename A>
struct Coefs {
  A lr, momentum, one_minus_momentum, nu, one_minus_nu, weight_decay;
};

// 1 - momentum and 1 - qhm_nu in float64, then rounded, as torch rounds its Python floats.
template <typename A>
TRICKS_HD Coefs<A> coefs_of(const Params& q) {
  return Coefs<A>{static_cast<A>(*q.lr), static_cast<A>(q.momentum), static_cast<A>(1.0 - q.momentum),
                  static_cast<A>(q.qhm_nu), static_cast<A>(1.0 - q.qhm_nu), static_cast<A>(q.weight_decay)};
}

// One element: updates h (kMomentum, kQhm) and returns d. Rounded as statopt's torch ops round
// them on the CPU (each `add_(alpha, t)` one fused multiply-add, each `mul_` a product):
// grad.add_(wd, x); h.mul_(m).add_(1 - m, g); d = g.mul(1 - nu).add_(nu, h).
template <int K, typename A>
TRICKS_HD A direction(A x, A g, A& h, const Coefs<A>& c) {
  g = fma_rn(c.weight_decay, x, g);
  if constexpr (K == kGrad) {
    return g;
  } else {
    h = fma_rn(c.one_minus_momentum, g, c.momentum * h);
    if constexpr (K == kMomentum) {
      return h;
    } else {
      return fma_rn(c.nu, h, c.one_minus_nu * g);
    }
  }
}

// x - lr d as statopt's x.add_(-lr, d).
template <typename A>
TRICKS_HD A descend(A x, A d, A lr) {
  return fma_rn(-lr, d, x);
}

// Torch-free CUDA launcher (cuda.cu): nullptr or the CUDA error.
const char* launch_sasa_step_cuda(const Params& q, void* stream);

}  // namespace sasa
}  // namespace tricks

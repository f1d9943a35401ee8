// Optimizer step math (clipping + GC + Adam/AdamW/RAdam + Lookahead + EMA), shared by the CPU and
// CUDA kernels.
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

// The step's hyperparameters, X(C++ type, name), in the order of their one declaration,
// tricks_ext/ops/optim.py's Hyperparams (the op's schema is built from it; tests/test_contract.py
// fails when this list differs from it in names or order, and torch refuses to load the op
// when the bindings' argument types differ from the schema's). The bindings take them as
// arguments in this order (TRICKS_OPTIM_ARGS, prepare.h) and copy them into Params.
#define TRICKS_OPTIM_HYPERPARAMS(X)                                                                      \
  X(double, lr) X(double, beta1) X(double, beta2) X(double, eps) X(double, weight_decay)                 \
  X(bool, decoupled_weight_decay) X(double, lookahead_alpha) X(int64_t, lookahead_k) X(bool, rectify)     \
  X(bool, maximize) X(double, clip_value) X(double, agc_clip_factor) X(double, agc_eps) X(double, ema_decay) \
  X(double, ema_min_decay) X(int64_t, ema_update_after_step) X(double, ema_warmup_gamma)                  \
  X(double, ema_warmup_power) X(bool, ema_warmup)

// Everything a launch needs, torch-free. Pointer tables hold one entry per tensor.
struct Params {
  const int64_t* work;        // [n_items, 4]: tensor, start, length, flags (kGcRow, kAgcRow, kPrepared)
  void* const* p;             // params (dtype)
  const void* const* g;       // grads (dtype, same strides as p)
  void* const* m;             // exp_avg (acc_t)
  void* const* v;             // exp_avg_sq (acc_t)
  void* const* s;             // slow weights (slow_dtype) or nullptr without Lookahead
  void* const* e;             // EMA of the params (acc_t) or nullptr without EMA
  const float* const* step;   // step counters, already counting this step
  const float* found_inf;     // nullptr or a scalar: != 0 skips the whole step
  const float* grad_scale;    // nullptr or a scalar: grads are divided by it
  const double* lr_tensor;    // nullptr or the LR on the device, read in place of lr (a tensor LR)
  int64_t n_items;
  DType dtype, slow_dtype;
  // lookahead_k 0: no Lookahead; clip_value: clip_grad_value_'s bound on the unscaled grads
  // (+inf: off); agc_*: timm's adaptive_clip_grad on kAgcRow items; ema_*: timm
  // ModelEmaV3.get_decay(step) with each tensor's own step counter (see ema_decay_of).
#define TRICKS_OPTIM_FIELD(type, name) type name;
  TRICKS_OPTIM_HYPERPARAMS(TRICKS_OPTIM_FIELD)
#undef TRICKS_OPTIM_FIELD
};

// Work-item flags (the plan's fourth column): the item is one row p[i] of a tensor, whose
// gradient is centralized (kGcRow) and/or clipped by timm's unit-wise AGC (kAgcRow: the row's
// grad norm against its param norm; a tensor of dim <= 1 is one row); or a chunk of a tensor
// whose grad the caller already clipped and centralized (kPrepared: rows too long to hold on
// chip, tricks_ext/ops/optim.py), which only the grad scale still applies to.
constexpr int64_t kGcRow = 1, kAgcRow = 2, kPrepared = 4;

// timm's AGC: the factor that scales one row's grad, norms taken on the unscaled grad.
template <typename A>
TRICKS_HD A agc_scale(A grad_norm, A param_norm, A factor, A eps) {
  const A max_norm = (param_norm > eps ? param_norm : eps) * factor;
  return grad_norm < max_norm ? A(1) : max_norm / (grad_norm > A(1e-6) ? grad_norm : A(1e-6));
}

// clip_grad_value_: NaN passes through (both comparisons are false), as torch's clamp_.
template <typename A>
TRICKS_HD A clip_to(A g, A c) {
  return g > c ? c : (g < -c ? -c : g);
}

template <typename A>
struct Scalars {
  A step_size, inv_denom_scale;
  A ema_w, ema_1mw;  // lerp weight 1 - decay and 1 - weight, rounded as torch.lerp rounds them
  bool has_denom, sync;
};

// The LR of this step: the tensor's where the optimizer has one (a schedule writes it on the
// device, so the step reads no host value), else the lr argument.
TRICKS_HD double lr_of(const Params& q) { return q.lr_tensor != nullptr ? *q.lr_tensor : q.lr; }

TRICKS_HD double pow_of(double base, double step) {
  return base > 0.0 ? std::exp(step * std::log(base)) : (step == 0.0 ? 1.0 : 0.0);
}

// ModelEmaV3.get_decay: t = step - update_after_step - 1; 0 while t <= 0 (the EMA copies the
// params), then decay, or with warmup 1 - (1 + t / gamma)^-power clamped to [min_decay, decay].
TRICKS_HD double ema_decay_of(double step, const Params& q) {
  const double t = step - static_cast<double>(q.ema_update_after_step) - 1.0;
  if (t <= 0.0) return 0.0;
  if (!q.ema_warmup) return q.ema_decay;
  const double d = 1.0 - std::exp(-q.ema_warmup_power * std::log(1.0 + t / q.ema_warmup_gamma));
  const double capped = d < q.ema_decay ? d : q.ema_decay;
  return capped > q.ema_min_decay ? capped : q.ema_min_decay;
}

template <typename A>
TRICKS_HD Scalars<A> step_scalars(double step, const Params& q) {
  const double bc1 = 1.0 - pow_of(q.beta1, step);
  const double b2t = pow_of(q.beta2, step);
  const double bc2 = 1.0 - b2t;
  const double decay = q.e != nullptr ? ema_decay_of(step, q) : 0.0;
  const A ema_w = static_cast<A>(1.0 - decay);
  const double lr = lr_of(q);
  Scalars<A> s{static_cast<A>(lr / bc1), static_cast<A>(1.0 / std::sqrt(bc2)), ema_w, A(1) - ema_w, true, false};
  if (q.rectify) {
    const double rho_inf = 2.0 / (1.0 - q.beta2) - 1.0;
    const double rho_t = rho_inf - 2.0 * step * b2t / bc2;
    if (rho_t > 5.0) {
      const double r = std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t));
      s.step_size = static_cast<A>(lr * r * std::sqrt(bc2) / bc1);
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
  return q.decoupled_weight_decay ? Decay<A>{static_cast<A>(1.0 - lr_of(q) * q.weight_decay), A(0)}
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

// One element: g already clipped, centralized and divided by the AMP grad scale; returns the new p.
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

// The EMA after a step: torch.lerp(ema, p, w) with w = 1 - decay, in torch's two forms (from
// the nearer end, so w = 1 gives p exactly). w is uniform per tensor, so the select is too.
template <typename A>
TRICKS_HD A ema_lerp(A ema, A p, A w, A one_minus_w) {
  return w < A(0.5) ? ema + w * (p - ema) : p - (p - ema) * one_minus_w;
}

// Torch-free CUDA launchers (cuda.cu): each returns nullptr or the CUDA error.
const char* launch_step_cuda(const Params& q, void* stream);

}  // namespace optim
}  // namespace tricks

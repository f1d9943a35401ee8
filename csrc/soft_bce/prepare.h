// Validation and allocation for the soft-target binary cross-entropy ops, shared by the CPU and
// CUDA bindings.
#pragma once

#include "common/checks.h"
#include "soft_bce/math.h"
#include "soft_ce/prepare.h"

namespace tricks {
namespace soft_bce {

using soft_ce::kMean;
using soft_ce::kNone;

// Everything but the outputs; mode from which targets are present.
inline Params prepare(const at::Tensor& logits, const c10::optional<at::Tensor>& a, const c10::optional<at::Tensor>& b,
                      const c10::optional<at::Tensor>& lam, const c10::optional<at::Tensor>& dense,
                      const c10::optional<at::Tensor>& pos_weight,
                      const c10::optional<at::Tensor>& weight, double label_smoothing,
                      c10::optional<double> target_threshold, int64_t reduction) {
  soft_ce::check_reduction(reduction);
  // The targets' checks are soft CE's (ignore_index plays no part: no label equals it there).
  const soft_ce::Params t = soft_ce::prepare(logits, a, b, lam, dense, c10::nullopt, label_smoothing, 0);
  Params q{};
  q.logits = t.logits;
  q.a = t.a;
  q.b = t.b;
  q.lam = t.lam;
  q.dense = t.dense;
  q.rows = t.rows;
  q.classes = t.classes;
  q.label_smoothing = label_smoothing;
  q.has_target_threshold = target_threshold.has_value();
  q.target_threshold = target_threshold.value_or(0.0);
  q.per_element = reduction == kNone;
  q.mode = t.mode;
  q.dtype = t.dtype;
  q.pieces = 1;
  q.piece_classes = q.classes;
  if (pos_weight.has_value()) {
    check_vector(*pos_weight, "pos_weight", q.classes, stats_dtype(logits), logits);
    q.pos_weight = pos_weight->data_ptr();
  }
  if (weight.has_value()) {
    check_vector(*weight, "weight", q.classes, stats_dtype(logits), logits);
    q.weight = weight->data_ptr();
  }
  return q;
}

struct Fwd {
  Params params;
  at::Tensor loss;  // (N, C) in the logits' dtype for 'none', else per-piece sums in the statistics dtype
};

// sweep: the CUDA kernels' classes per sweep, to cut rows into pieces (split_rows); 0 for whole
// rows (the CPU kernels).
inline Fwd prepare_fwd(const at::Tensor& logits, const c10::optional<at::Tensor>& a, const c10::optional<at::Tensor>& b,
                       const c10::optional<at::Tensor>& lam, const c10::optional<at::Tensor>& dense,
                       const c10::optional<at::Tensor>& pos_weight,
                       const c10::optional<at::Tensor>& weight, double label_smoothing,
                       c10::optional<double> target_threshold, int64_t reduction, int64_t sweep = 0) {
  Fwd f{prepare(logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold, reduction), {}};
  split_rows(f.params, sweep);
  const auto acc = logits.options().dtype(stats_dtype(logits));
  f.loss = f.params.per_element ? at::empty_like(logits) : at::empty({logits.size(0) * f.params.pieces}, acc);
  f.params.loss = f.loss.data_ptr();
  return f;
}

// The op's loss: the elements for 'none', else their sum (divided by N * C for 'mean') in the
// logits' dtype.
inline at::Tensor finish_fwd(const Fwd& f, const at::Tensor& logits, int64_t reduction) {
  if (reduction == kNone) return f.loss;
  at::Tensor total = f.loss.sum();
  if (reduction == kMean) total = total / static_cast<double>(logits.numel());
  return total.to(logits.scalar_type());
}

// dL/dloss: the elements' (N, C) in the logits' dtype for 'none', else one value in the statistics
// dtype (divided by N * C for 'mean').
inline at::Tensor loss_grad(const at::Tensor& grad, const at::Tensor& logits, int64_t reduction) {
  if (reduction == kNone) {
    TORCH_CHECK(grad.sizes() == logits.sizes(), "soft_bce_bwd: grad must be (N, C) for reduction none, got ",
                grad.sizes());
    return grad.contiguous();
  }
  TORCH_CHECK(grad.dim() == 0, "soft_bce_bwd: grad must be a scalar for reduction sum or mean, got ", grad.sizes());
  const at::Tensor g = grad.to(stats_dtype(logits));
  return reduction == kMean ? g / static_cast<double>(logits.numel()) : g;
}

// Gradient for dense targets, d loss / d t = w (-z + (pos_weight - 1) softplus(-z)); 0 through a
// target_threshold (a step). Tensor ops, not a kernel: targets rarely need a gradient.
inline at::Tensor dense_target_grad(const at::Tensor& grad, const at::Tensor& logits,
                                    const c10::optional<at::Tensor>& pos_weight,
                                    const c10::optional<at::Tensor>& weight,
                                    c10::optional<double> target_threshold, int64_t reduction) {
  const auto acc = stats_dtype(logits);
  const at::Tensor z = logits.to(acc);
  at::Tensor d = pos_weight.has_value() ? -z + (pos_weight->to(acc) - 1) * at::softplus(-z) : -z;
  if (weight.has_value()) d = d * weight->to(acc);
  if (target_threshold.has_value()) d = at::zeros_like(d);
  return (d * loss_grad(grad, logits, reduction).to(acc)).to(logits.scalar_type());
}

struct Bwd {
  Params params;
  at::Tensor dlogits, grad;  // grad: loss_grad's
};

inline Bwd prepare_bwd(const at::Tensor& grad, const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                       const c10::optional<at::Tensor>& b, const c10::optional<at::Tensor>& lam,
                       const c10::optional<at::Tensor>& dense, const c10::optional<at::Tensor>& pos_weight,
                       const c10::optional<at::Tensor>& weight,
                       double label_smoothing, c10::optional<double> target_threshold, int64_t reduction,
                       int64_t sweep = 0) {
  Bwd r{prepare(logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold, reduction),
        at::empty_like(logits), {}};
  split_rows(r.params, sweep);
  check_same_device(logits, "logits", grad, "grad");
  TORCH_CHECK(grad.scalar_type() == logits.scalar_type(), "soft_bce_bwd: grad must have the logits' dtype ",
              logits.scalar_type(), ", got ", grad.scalar_type());
  r.grad = loss_grad(grad, logits, reduction);
  r.params.grad = r.grad.data_ptr();
  r.params.dlogits = r.dlogits.data_ptr();
  return r;
}

}  // namespace soft_bce
}  // namespace tricks

// Validation and allocation for the soft-target cross-entropy ops, shared by the CPU and CUDA
// bindings.
#pragma once

#include "common/checks.h"
#include "soft_ce/math.h"

namespace tricks {
namespace soft_ce {

inline void check_labels(const at::Tensor& logits, const at::Tensor& t, const char* name) {
  check_same_device(logits, "logits", t, name);
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, "soft_ce: ", name, " must be int64, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == logits.size(0) && t.is_contiguous(), "soft_ce: ", name,
              " must be contiguous (", logits.size(0), ",), got ", t.sizes());
}

// Fills everything but the outputs; mode from which targets are present.
inline Params prepare(const at::Tensor& logits, const c10::optional<at::Tensor>& a, const c10::optional<at::Tensor>& b,
                      const c10::optional<at::Tensor>& lam, const c10::optional<at::Tensor>& dense,
                      const c10::optional<at::Tensor>& weight, double label_smoothing, int64_t ignore_index) {
  const DType dtype = to_dtype(logits, "logits");
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous(), "soft_ce: logits must be contiguous (N, C), got ",
              logits.sizes());
  TORCH_CHECK(logits.size(1) >= 1, "soft_ce: logits need at least one class");
  TORCH_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, "soft_ce: label_smoothing must be in [0, 1], got ",
              label_smoothing);
  Params q{};
  q.logits = logits.data_ptr();
  q.rows = logits.size(0);
  q.classes = logits.size(1);
  q.label_smoothing = label_smoothing;
  q.ignore_index = ignore_index;
  q.dtype = dtype;
  q.pieces = 1;
  q.piece_classes = q.classes;
  if (weight.has_value()) {
    check_vector(*weight, "weight", q.classes, stats_dtype(logits), logits);
    q.weight = weight->data_ptr();
  }
  if (dense.has_value()) {
    TORCH_CHECK(!a.has_value() && !b.has_value() && !lam.has_value(), "soft_ce: dense targets exclude labels");
    check_same_device(logits, "logits", *dense, "dense");
    TORCH_CHECK(dense->sizes() == logits.sizes() && dense->scalar_type() == logits.scalar_type() &&
                    dense->is_contiguous(),
                "soft_ce: dense targets must be contiguous with the logits' shape and dtype");
    q.dense = dense->data_ptr();
    q.mode = Mode::Dense;
    return q;
  }
  TORCH_CHECK(a.has_value(), "soft_ce: give labels (a), mixed labels (a, b, lam) or dense targets");
  check_labels(logits, *a, "a");
  q.a = a->data_ptr<int64_t>();
  TORCH_CHECK(b.has_value() == lam.has_value(), "soft_ce: mixed targets need both b and lam");
  if (!b.has_value()) {
    q.mode = Mode::Hard;
    return q;
  }
  check_labels(logits, *b, "b");
  check_same_device(logits, "logits", *lam, "lam");
  TORCH_CHECK(lam->scalar_type() == at::kFloat && lam->dim() == 1 && lam->size(0) == q.rows && lam->is_contiguous(),
              "soft_ce: lam must be contiguous float32 (", q.rows, ",)");
  q.b = b->data_ptr<int64_t>();
  q.lam = lam->data_ptr<float>();
  q.mode = Mode::Mixed;
  return q;
}

// reduction argument of the ops: the per-row losses as they are, summed, or averaged.
enum Reduction : int64_t { kNone = 0, kSum = 1, kMean = 2 };

inline void check_reduction(int64_t reduction) {
  TORCH_CHECK(reduction >= kNone && reduction <= kMean,
              "soft_ce: reduction must be 0 (none), 1 (sum) or 2 (mean), got ",
              reduction);
}

// Divisor of 'mean' (torch cross_entropy): for hard labels the rows not ignored, or with class
// weights the sum of their labels' weights (none left: 0 / 0 = NaN; a label out of range counts
// its clamped class, its row being NaN anyway), else all rows. A tensor, so that no
// device-to-host sync is needed.
inline at::Tensor mean_divisor(const Params& q, const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                               const c10::optional<at::Tensor>& weight) {
  const auto acc = stats_dtype(logits);
  if (q.mode != Mode::Hard) return at::scalar_tensor(static_cast<double>(q.rows), logits.options().dtype(acc));
  const at::Tensor kept = a->ne(q.ignore_index);
  if (!weight.has_value()) return kept.sum().to(acc);
  return at::where(kept, weight->index_select(0, a->clamp(0, q.classes - 1)), 0).sum();
}

struct Fwd {
  Params params;
  at::Tensor loss, stats;  // loss: per row, in the statistics dtype (reduced by finish_fwd)
  at::Tensor parts;        // rows in pieces: each piece's sums (Params::parts)
};

// sweep: the CUDA kernels' classes per sweep, to cut rows into pieces (split_rows); 0 for whole
// rows (the CPU kernels).
inline Fwd prepare_fwd(const at::Tensor& logits, const c10::optional<at::Tensor>& a, const c10::optional<at::Tensor>& b,
                       const c10::optional<at::Tensor>& lam, const c10::optional<at::Tensor>& dense,
                       const c10::optional<at::Tensor>& weight, double label_smoothing, int64_t ignore_index,
                       int64_t reduction, int64_t sweep = 0) {
  check_reduction(reduction);
  Fwd f{prepare(logits, a, b, lam, dense, weight, label_smoothing, ignore_index), {}, {}, {}};
  const auto opts = logits.options().dtype(stats_dtype(logits));
  f.loss = at::empty({logits.size(0)}, opts);
  f.stats = at::empty({logits.size(0), kStats}, opts);
  f.params.loss = f.loss.data_ptr();
  f.params.stats = f.stats.data_ptr();
  split_rows(f.params, sweep);
  if (f.params.pieces > 1) {
    f.parts = at::empty({logits.size(0), f.params.pieces, kParts}, opts);
    f.params.parts = f.parts.data_ptr();
  }
  return f;
}

// The op's loss from the kernel's per-row losses: reduced, in the logits' dtype (as torch).
inline at::Tensor finish_fwd(const Fwd& f, const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                             const c10::optional<at::Tensor>& weight, int64_t reduction) {
  if (reduction == kNone) return f.loss.to(logits.scalar_type());
  at::Tensor total = f.loss.sum();
  if (reduction == kMean) total = total / mean_divisor(f.params, logits, a, weight);
  return total.to(logits.scalar_type());
}

// dL/dloss_i in the statistics dtype: (N,) for 'none', else one value that every row shares,
// 1/divisor applied for 'mean'.
inline at::Tensor loss_grad(const at::Tensor& grad, const Params& q, const at::Tensor& logits,
                            const c10::optional<at::Tensor>& a, const c10::optional<at::Tensor>& weight,
                            int64_t reduction) {
  const auto acc = stats_dtype(logits);
  if (reduction == kNone) {
    TORCH_CHECK(grad.dim() == 1 && grad.size(0) == logits.size(0),
                "soft_ce_bwd: grad must be (N,) for reduction none, got ", grad.sizes());
    return grad.to(acc).contiguous();
  }
  TORCH_CHECK(grad.dim() == 0, "soft_ce_bwd: grad must be a scalar for reduction sum or mean, got ", grad.sizes());
  return reduction == kMean ? grad.to(acc) / mean_divisor(q, logits, a, weight) : grad.to(acc);
}

// Gradient for dense targets, d loss_i / d t_ic = w_c (lse_i - z_ic), from the forward's stats
// (lse = shift + log_sum). Tensor ops, not a kernel: targets rarely need a gradient.
inline at::Tensor dense_target_grad(const at::Tensor& grad, const at::Tensor& logits, const at::Tensor& dense,
                                    const c10::optional<at::Tensor>& weight, const at::Tensor& stats,
                                    double label_smoothing, int64_t reduction) {
  const Params q = prepare(logits, c10::nullopt, c10::nullopt, c10::nullopt, dense, weight, label_smoothing, 0);
  at::Tensor g = loss_grad(grad, q, logits, c10::nullopt, weight, reduction);
  if (reduction == kNone) g = g.unsqueeze(1);
  at::Tensor d = stats.narrow(1, 0, 1) + stats.narrow(1, 1, 1) - logits.to(stats.scalar_type());
  if (weight.has_value()) d = d * *weight;
  return (d * g).to(dense.scalar_type());
}

struct Bwd {
  Params params;
  at::Tensor dlogits, grad;  // grad: loss_grad's
};

inline Bwd prepare_bwd(const at::Tensor& grad, const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                       const c10::optional<at::Tensor>& b, const c10::optional<at::Tensor>& lam,
                       const c10::optional<at::Tensor>& dense, const c10::optional<at::Tensor>& weight,
                       const at::Tensor& stats, double label_smoothing, int64_t ignore_index, int64_t reduction,
                       int64_t sweep = 0) {
  check_reduction(reduction);
  Bwd r{prepare(logits, a, b, lam, dense, weight, label_smoothing, ignore_index), at::empty_like(logits), {}};
  split_rows(r.params, sweep);
  check_same_device(logits, "logits", grad, "grad");
  check_same_device(logits, "logits", stats, "stats");
  const auto acc = stats_dtype(logits);
  TORCH_CHECK(grad.scalar_type() == logits.scalar_type(), "soft_ce_bwd: grad must have the logits' dtype ",
              logits.scalar_type(), ", got ", grad.scalar_type());
  r.grad = loss_grad(grad, r.params, logits, a, weight, reduction);
  TORCH_CHECK(stats.scalar_type() == acc && stats.dim() == 2 && stats.size(0) == logits.size(0) &&
                  stats.size(1) == kStats && stats.is_contiguous(), "soft_ce_bwd: stats must be contiguous ", acc, " (N, ",
              kStats, ")");
  r.params.grad = r.grad.data_ptr();
  r.params.grad_stride = reduction == kNone ? 1 : 0;
  r.params.stats = const_cast<void*>(stats.data_ptr());
  r.params.dlogits = r.dlogits.data_ptr();
  return r;
}

}  // namespace soft_ce
}  // namespace tricks

// Validation and allocation for the soft F1 ops, shared by the CPU and CUDA bindings.
#pragma once

#include "common/checks.h"
#include "soft_f1/math.h"

namespace tricks {
namespace soft_f1 {

// Everything but the outputs: the logits, and labels a or dense targets (one of them).
inline Params prepare(const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                      const c10::optional<at::Tensor>& dense, bool multi_label) {
  const DType dtype = to_dtype(logits, "logits");
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous(), "soft_f1: logits must be contiguous (N, C), got ",
              logits.sizes());
  TORCH_CHECK(logits.size(1) >= 1, "soft_f1: logits need at least one class");
  TORCH_CHECK(a.has_value() != dense.has_value(), "soft_f1: give labels (a) or dense targets, one of them");
  Params q{};
  q.logits = logits.data_ptr();
  q.rows = logits.size(0);
  q.classes = logits.size(1);
  q.chunk_rows = chunk_rows(q.classes);
  q.multi_label = multi_label;
  q.dtype = dtype;
  if (a.has_value()) {
    check_same_device(logits, "logits", *a, "a");
    TORCH_CHECK_TYPE(a->scalar_type() == at::kLong, "soft_f1: a must be int64, got ", a->scalar_type());
    TORCH_CHECK(a->dim() == 1 && a->size(0) == q.rows && a->is_contiguous(), "soft_f1: a must be contiguous (",
                q.rows, ",), got ", a->sizes());
    q.a = a->data_ptr<int64_t>();
  } else {
    check_same_device(logits, "logits", *dense, "dense");
    TORCH_CHECK(dense->sizes() == logits.sizes() && dense->scalar_type() == logits.scalar_type() &&
                    dense->is_contiguous(),
                "soft_f1: dense targets must be contiguous with the logits' shape and dtype");
    q.dense = dense->data_ptr();
  }
  return q;
}

struct Fwd {
  Params params;
  at::Tensor partial, stats;  // (chunks, 3, C); softmax: (N, 2)
};

inline Fwd prepare_fwd(const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                       const c10::optional<at::Tensor>& dense, bool multi_label) {
  Fwd f{prepare(logits, a, dense, multi_label), {}, {}};
  const auto opts = logits.options().dtype(stats_dtype(logits));
  const int64_t chunks = (f.params.rows + f.params.chunk_rows - 1) / f.params.chunk_rows;
  f.partial = at::zeros({chunks, 3, f.params.classes}, opts);
  f.params.partial = f.partial.data_ptr();
  if (!multi_label) {
    f.stats = at::empty({f.params.rows, 2}, opts);
    f.params.stats = f.stats.data_ptr();
  }
  return f;
}

// The op's (3, C) sums: the chunks' partial sums added by a sum over the chunk dim (no atomics:
// deterministic).
inline at::Tensor finish_fwd(const Fwd& f) { return f.partial.sum(0); }

struct Bwd {
  Params params;
  at::Tensor dlogits, grad;
};

inline Bwd prepare_bwd(const at::Tensor& grad, const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                       const c10::optional<at::Tensor>& dense, bool multi_label) {
  Bwd b{prepare(logits, a, dense, multi_label), at::empty_like(logits), {}};
  check_same_device(logits, "logits", grad, "grad");
  TORCH_CHECK(grad.dim() == 2 && grad.size(0) == 3 && grad.size(1) == logits.size(1),
              "soft_f1_sums_bwd: grad must be (3, ", logits.size(1), "), got ", grad.sizes());
  b.grad = grad.to(stats_dtype(logits)).contiguous();
  b.params.grad = b.grad.data_ptr();
  b.params.dlogits = b.dlogits.data_ptr();
  return b;
}

}  // namespace soft_f1
}  // namespace tricks

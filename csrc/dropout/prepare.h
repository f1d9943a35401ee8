// Validation and allocation for dropout_apply, shared by the CPU and CUDA bindings.
#pragma once

#include "common/checks.h"
#include "dropout/math.h"

namespace tricks {
namespace dropout {

// Checks shared by the forward and the backward; `x` is the forward's x or the backward's grad.
inline void check_args(const char* op, const at::Tensor& x, const c10::optional<at::Tensor>& residual,
                       const c10::optional<at::Tensor>& gate, const at::Tensor& seed_offset, double p, int64_t group) {
  to_dtype(x, "x");
  TORCH_CHECK(x.is_contiguous(), op, ": x must be contiguous (call .contiguous() first)");
  if (residual.has_value()) {
    check_same_device(x, "x", *residual, "residual");
    TORCH_CHECK(residual->sizes() == x.sizes() && residual->scalar_type() == x.scalar_type() && residual->is_contiguous(),
                op, ": residual must be contiguous with x's shape and dtype");
  }
  if (gate.has_value()) {
    check_same_device(x, "x", *gate, "gate");
    TORCH_CHECK(gate->numel() == 1 && gate->scalar_type() == stats_dtype(x), op, ": gate must be one ", stats_dtype(x),
                " element");
  }
  check_same_device(x, "x", seed_offset, "seed_offset");
  TORCH_CHECK(seed_offset.scalar_type() == at::kLong && seed_offset.numel() == 2 && seed_offset.is_contiguous(), op,
              ": seed_offset must be a contiguous int64 tensor of 2 elements (seed, offset)");
  TORCH_CHECK(p >= 0.0 && p <= 1.0, op, ": p must be in [0, 1], got ", p);
  TORCH_CHECK(group >= 1, op, ": group must be >= 1, got ", group);
}

struct Prepared {
  Params params;
  at::Tensor y;
};

inline Prepared prepare(const at::Tensor& x, const c10::optional<at::Tensor>& residual,
                        const c10::optional<at::Tensor>& gate, const at::Tensor& seed_offset, double p, double scale,
                        int64_t group) {
  check_args("dropout_apply", x, residual, gate, seed_offset, p, group);
  Prepared r;
  r.y = at::empty_like(x);
  r.params = Params{x.data_ptr(), residual.has_value() ? residual->data_ptr() : nullptr,
                    gate.has_value() ? gate->data_ptr() : nullptr, r.y.data_ptr(), seed_offset.data_ptr<int64_t>(),
                    x.numel(), group, static_cast<float>(p), static_cast<float>(scale), to_dtype(x, "x")};
  return r;
}

struct PreparedBwd {
  BwdParams params;
  at::Tensor dx, partials;
};

inline PreparedBwd prepare_bwd(const at::Tensor& grad, const c10::optional<at::Tensor>& x,
                               const c10::optional<at::Tensor>& gate, const at::Tensor& seed_offset, double p,
                               double scale, int64_t group, int64_t elements_per_partial) {
  check_args("dropout_apply_bwd", grad, x, gate, seed_offset, p, group);
  PreparedBwd b;
  b.dx = at::empty_like(grad);
  const int64_t n_partials = x.has_value() ? (grad.numel() + elements_per_partial - 1) / elements_per_partial : 0;
  b.partials = at::empty({n_partials}, grad.options().dtype(stats_dtype(grad)));
  b.params = BwdParams{grad.data_ptr(), x.has_value() ? x->data_ptr() : nullptr,
                       gate.has_value() ? gate->data_ptr() : nullptr, b.dx.data_ptr(),
                       x.has_value() ? b.partials.data_ptr() : nullptr, seed_offset.data_ptr<int64_t>(), grad.numel(),
                       group, static_cast<float>(p), static_cast<float>(scale), to_dtype(grad, "grad")};
  return b;
}

}  // namespace dropout
}  // namespace tricks

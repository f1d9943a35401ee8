// Validation and output allocation for the weight_standardize ops, shared by the CPU and CUDA
// bindings, so both reject the same inputs with the same messages.
#pragma once

#include "common/checks.h"
#include "weight_standardize/math.h"

namespace tricks {
namespace ws {

inline void check_weight(const at::Tensor& w, const char* name) {
  TORCH_CHECK(w.dim() >= 2, name, " must have at least 2 dims (out_channels, ...), got shape ", w.sizes());
  to_dtype(w, name);
  TORCH_CHECK(is_row_dense(w), name, " must be row-dense (contiguous or channels_last); got strides ",
              w.strides(), " for shape ", w.sizes(), ": call .contiguous() first");
}

inline int64_t row_len(const at::Tensor& w) {
  return w.size(0) > 0 ? w.numel() / w.size(0) : 0;
}

struct Fwd {
  Params params;
  at::Tensor out, mean, rstd;
};

struct Bwd {
  BwdParams params;
  at::Tensor grad_out;  // keeps a restrided copy of grad_out alive while the kernel runs
  at::Tensor grad_w, grad_gain;
};

inline Fwd prepare_fwd(const at::Tensor& w, double eps, const c10::optional<at::Tensor>& gain) {
  check_weight(w, "w");
  const auto sdt = stats_dtype(w);
  if (gain.has_value()) check_vector(*gain, "gain", w.size(0), sdt, w);
  TORCH_CHECK(eps >= 0, "eps must be >= 0, got ", eps);
  Fwd f;
  f.out = at::empty_like(w);  // keeps w's (row-dense) strides
  f.mean = at::empty({w.size(0)}, w.options().dtype(sdt));
  f.rstd = at::empty({w.size(0)}, w.options().dtype(sdt));
  f.params = Params{w.data_ptr(), f.out.data_ptr(), gain.has_value() ? gain->data_ptr() : nullptr,
               f.mean.data_ptr(), f.rstd.data_ptr(), w.size(0), row_len(w), eps, to_dtype(w, "w")};
  return f;
}

inline Bwd prepare_bwd(const at::Tensor& grad_out, const at::Tensor& w, const c10::optional<at::Tensor>& gain,
                       const at::Tensor& mean, const at::Tensor& rstd) {
  check_weight(w, "w");
  const auto sdt = stats_dtype(w);
  check_same_device(w, "w", grad_out, "grad_out");
  TORCH_CHECK(grad_out.sizes() == w.sizes(), "grad_out shape ", grad_out.sizes(), " != w shape ", w.sizes());
  TORCH_CHECK_TYPE(grad_out.scalar_type() == w.scalar_type(), "grad_out dtype ", grad_out.scalar_type(),
                   " != w dtype ", w.scalar_type());
  if (gain.has_value()) check_vector(*gain, "gain", w.size(0), sdt, w);
  check_vector(mean, "mean", w.size(0), sdt, w);
  check_vector(rstd, "rstd", w.size(0), sdt, w);
  Bwd b;
  // grad_out may arrive with any strides; the kernel walks w's memory order.
  b.grad_out = grad_out.strides() == w.strides() ? grad_out : at::empty_like(w).copy_(grad_out);
  b.grad_w = at::empty_like(w);
  b.grad_gain = at::empty({w.size(0)}, w.options().dtype(sdt));
  b.params = BwdParams{b.grad_out.data_ptr(), w.data_ptr(), gain.has_value() ? gain->data_ptr() : nullptr,
                  mean.data_ptr(), rstd.data_ptr(), b.grad_w.data_ptr(), b.grad_gain.data_ptr(),
                  w.size(0), row_len(w), to_dtype(w, "w")};
  return b;
}

}  // namespace ws
}  // namespace tricks

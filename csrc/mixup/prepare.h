// Validation for mixup_apply, shared by the CPU and CUDA bindings.
#pragma once

#include "common/checks.h"
#include "mixup/math.h"

namespace tricks {
namespace mixup {

// `out` is x itself for the in-place op, else a fresh tensor with x's layout.
inline Params prepare(const at::Tensor& x, const at::Tensor& out, const at::Tensor& coef, const at::Tensor& box,
                      int64_t height, int64_t width, int64_t inner) {
  const DType dtype = to_dtype(x, "x");
  const int64_t sample = sample_size("mixup_apply", x, height, width, inner), batch = x.size(0);
  check_same_device(x, "x", coef, "coef");
  check_same_device(x, "x", box, "box");
  TORCH_CHECK_TYPE(coef.scalar_type() == at::kFloat && box.scalar_type() == at::kInt,
                   "mixup_apply: coef must be float32 and box int32, got ", coef.scalar_type(), " and ", box.scalar_type());
  TORCH_CHECK(coef.is_contiguous() && coef.dim() == 2 && coef.size(0) == batch && coef.size(1) == 2,
              "mixup_apply: coef must be contiguous (batch, 2), got ", coef.sizes());
  TORCH_CHECK(box.is_contiguous() && box.dim() == 2 && box.size(0) == batch && box.size(1) == 4,
              "mixup_apply: box must be contiguous (batch, 4), got ", box.sizes());
  return Params{x.data_ptr(), out.data_ptr(), coef.data_ptr<float>(), box.data_ptr<int32_t>(), batch, sample,
                height, width, inner, dtype};
}

}  // namespace mixup
}  // namespace tricks

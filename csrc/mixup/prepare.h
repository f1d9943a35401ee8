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
  TORCH_CHECK(x.dim() >= 1, "mixup_apply: x must have a batch dim");
  const bool empty = x.numel() == 0;  // nothing is read or written: the layout does not matter
  TORCH_CHECK(empty || (is_row_dense(x) && (x.size(0) <= 1 || x.stride(0) == x.numel() / x.size(0))),
              "mixup_apply: each sample of x must be one dense block (contiguous or channels_last)");
  const int64_t batch = x.size(0), sample = batch > 0 ? x.numel() / batch : 0;
  TORCH_CHECK(empty || (height >= 1 && width >= 1 && inner >= 1 && sample % (height * width * inner) == 0),
              "mixup_apply: height * width * inner = ", height * width * inner, " must divide the sample size ", sample);
  TORCH_CHECK(sample < (int64_t(1) << 31), "mixup_apply: samples of 2^31 elements or more are not supported");
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

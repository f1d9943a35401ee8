// Validation for mask_boxes, shared by the CPU and CUDA bindings.
#pragma once

#include "common/checks.h"
#include "mask_boxes/math.h"

namespace tricks {
namespace mask_boxes {

inline Params prepare(const at::Tensor& x, const at::Tensor& out, const at::Tensor& box, double value, int64_t height,
                      int64_t width, int64_t inner) {
  const DType dtype = to_dtype(x, "x");
  const int64_t sample = sample_size("mask_boxes", x, height, width, inner), batch = x.size(0);
  check_same_device(x, "x", box, "box");
  TORCH_CHECK(box.scalar_type() == at::kInt && box.dim() == 3 && box.size(0) == batch && box.size(2) == 4 &&
                  box.is_contiguous(), "mask_boxes: box must be contiguous int32 (batch, k, 4), got ", box.sizes(),
              " ", box.scalar_type());
  return Params{x.data_ptr(), out.data_ptr(), box.data_ptr<int32_t>(), batch, box.size(1), sample, height, width,
                inner, value, dtype};
}

}  // namespace mask_boxes
}  // namespace tricks

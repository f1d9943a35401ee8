// Validation for mask_boxes, shared by the CPU and CUDA bindings.
#pragma once

#include "common/checks.h"
#include "mask_boxes/math.h"

namespace tricks {
namespace mask_boxes {

inline Params prepare(const at::Tensor& x, const at::Tensor& out, const at::Tensor& box, double value, int64_t height,
                      int64_t width, int64_t inner) {
  const DType dtype = to_dtype(x, "x");
  TORCH_CHECK(x.dim() >= 1, "mask_boxes: x must have a batch dim");
  const bool empty = x.numel() == 0;  // nothing is read or written: the layout does not matter
  TORCH_CHECK(empty || (is_row_dense(x) && (x.size(0) <= 1 || x.stride(0) == x.numel() / x.size(0))),
              "mask_boxes: each sample of x must be one dense block (contiguous or channels_last)");
  const int64_t batch = x.size(0), sample = batch > 0 ? x.numel() / batch : 0;
  TORCH_CHECK(empty || (height >= 1 && width >= 1 && inner >= 1 && sample % (height * width * inner) == 0),
              "mask_boxes: height * width * inner = ", height * width * inner, " must divide the sample size ", sample);
  TORCH_CHECK(sample < (int64_t(1) << 31), "mask_boxes: samples of 2^31 elements or more are not supported");
  check_same_device(x, "x", box, "box");
  TORCH_CHECK(box.scalar_type() == at::kInt && box.dim() == 3 && box.size(0) == batch && box.size(2) == 4 &&
                  box.is_contiguous(), "mask_boxes: box must be contiguous int32 (batch, k, 4), got ", box.sizes(),
              " ", box.scalar_type());
  return Params{x.data_ptr(), out.data_ptr(), box.data_ptr<int32_t>(), batch, box.size(1), sample, height, width,
                inner, value, dtype};
}

}  // namespace mask_boxes
}  // namespace tricks

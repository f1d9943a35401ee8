// Box masking, CUDA bindings.
#include <torch/library.h>

#include "mask_boxes/math.h"
#include "common/cuda_stream.h"
#include "mask_boxes/prepare.h"

namespace tricks {
namespace mask_boxes {
namespace {

at::Tensor mask_boxes_cuda(const at::Tensor& x, const at::Tensor& box, double value, int64_t height, int64_t width,
                           int64_t inner) {
  c10::DeviceGuard guard(x.device());
  at::Tensor out = at::empty_like(x);
  check_launch(launch_cuda(prepare(x, out, box, value, height, width, inner), current_cuda_stream(x)), "mask_boxes");
  return out;
}

void mask_boxes_inplace_cuda(const at::Tensor& x, const at::Tensor& box, double value, int64_t height, int64_t width,
                             int64_t inner) {
  c10::DeviceGuard guard(x.device());
  check_launch(launch_cuda(prepare(x, x, box, value, height, width, inner), current_cuda_stream(x)), "mask_boxes_");
}

}  // namespace
}  // namespace mask_boxes
}  // namespace tricks

TRICKS_REGISTER_CUDA("mask_boxes", &tricks::mask_boxes::mask_boxes_cuda,
                     "mask_boxes_", &tricks::mask_boxes::mask_boxes_inplace_cuda)

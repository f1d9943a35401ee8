// Mixup / CutMix mixing, CUDA bindings.
#include <torch/library.h>

#include "mixup/math.h"
#include "common/cuda_stream.h"
#include "mixup/prepare.h"

namespace tricks {
namespace mixup {
namespace {

at::Tensor mixup_apply_cuda(const at::Tensor& x, const at::Tensor& coef, const at::Tensor& box, int64_t height,
                            int64_t width, int64_t inner) {
  c10::DeviceGuard guard(x.device());
  at::Tensor out = at::empty_like(x);
  check_launch(launch_cuda(prepare(x, out, coef, box, height, width, inner), current_cuda_stream(x)), "mixup_apply");
  return out;
}

void mixup_apply_inplace_cuda(const at::Tensor& x, const at::Tensor& coef, const at::Tensor& box, int64_t height,
                              int64_t width, int64_t inner) {
  c10::DeviceGuard guard(x.device());
  check_launch(launch_cuda(prepare(x, x, coef, box, height, width, inner), current_cuda_stream(x)), "mixup_apply_");
}

}  // namespace
}  // namespace mixup
}  // namespace tricks

TRICKS_REGISTER_CUDA("mixup_apply", &tricks::mixup::mixup_apply_cuda,
                     "mixup_apply_", &tricks::mixup::mixup_apply_inplace_cuda)

// Dropout with a regenerated mask, CUDA bindings.
#include <torch/library.h>

#include "dropout/math.h"
#include "common/cuda_stream.h"
#include "dropout/prepare.h"

namespace tricks {
namespace dropout {
namespace {

at::Tensor dropout_apply_cuda(const at::Tensor& x, const c10::optional<at::Tensor>& residual,
                              const c10::optional<at::Tensor>& gate, const at::Tensor& seed_offset, double p,
                              double scale, int64_t group) {
  c10::DeviceGuard guard(x.device());
  auto r = prepare(x, residual, gate, seed_offset, p, scale, group);
  check_launch(launch_apply_cuda(r.params, current_cuda_stream(x)), "dropout_apply");
  return r.y;
}

std::tuple<at::Tensor, at::Tensor> dropout_apply_bwd_cuda(const at::Tensor& grad, const c10::optional<at::Tensor>& x,
                                                          const c10::optional<at::Tensor>& gate,
                                                          const at::Tensor& seed_offset, double p, double scale,
                                                          int64_t group) {
  c10::DeviceGuard guard(grad.device());
  auto b = prepare_bwd(grad, x, gate, seed_offset, p, scale, group, kCudaPartialElements);
  check_launch(launch_bwd_cuda(b.params, current_cuda_stream(grad)), "dropout_apply_bwd");
  return {b.dx, b.partials};
}

}  // namespace
}  // namespace dropout
}  // namespace tricks

TRICKS_REGISTER_CUDA("dropout_apply", &tricks::dropout::dropout_apply_cuda,
                     "dropout_apply_bwd", &tricks::dropout::dropout_apply_bwd_cuda)

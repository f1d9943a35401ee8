// Soft-target binary cross-entropy, CUDA bindings.
#include <torch/library.h>

#include "soft_bce/math.h"
#include "common/cuda_stream.h"
#include "soft_bce/prepare.h"

namespace tricks {
namespace soft_bce {
namespace {

at::Tensor soft_bce_fwd_cuda(const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                             const c10::optional<at::Tensor>& b, const c10::optional<at::Tensor>& lam,
                             const c10::optional<at::Tensor>& dense, const c10::optional<at::Tensor>& pos_weight,
                             const c10::optional<at::Tensor>& weight,
                             double label_smoothing, c10::optional<double> target_threshold, int64_t reduction) {
  c10::DeviceGuard guard(logits.device());
  auto f = prepare_fwd(logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold, reduction,
                       kCudaSweep);
  check_launch(launch_fwd_cuda(f.params, current_cuda_stream(logits)), "soft_bce_fwd");
  return finish_fwd(f, logits, reduction);
}

at::Tensor soft_bce_bwd_cuda(const at::Tensor& grad, const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                             const c10::optional<at::Tensor>& b, const c10::optional<at::Tensor>& lam,
                             const c10::optional<at::Tensor>& dense, const c10::optional<at::Tensor>& pos_weight,
                             const c10::optional<at::Tensor>& weight,
                             double label_smoothing, c10::optional<double> target_threshold, int64_t reduction) {
  c10::DeviceGuard guard(logits.device());
  auto r = prepare_bwd(grad, logits, a, b, lam, dense, pos_weight, weight,
                       label_smoothing, target_threshold, reduction, kCudaSweep);
  check_launch(launch_bwd_cuda(r.params, current_cuda_stream(logits)), "soft_bce_bwd");
  return r.dlogits;
}

}  // namespace
}  // namespace soft_bce
}  // namespace tricks

TRICKS_REGISTER_CUDA("soft_bce_fwd", &tricks::soft_bce::soft_bce_fwd_cuda,
                     "soft_bce_bwd", &tricks::soft_bce::soft_bce_bwd_cuda)

// Soft F1 sums, CUDA bindings.
#include <torch/library.h>

#include "common/cuda_stream.h"
#include "soft_f1/math.h"
#include "soft_f1/prepare.h"

namespace tricks {
namespace soft_f1 {
namespace {

at::Tensor soft_f1_sums_cuda(const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                             const c10::optional<at::Tensor>& dense, bool multi_label) {
  c10::DeviceGuard guard(logits.device());
  auto f = prepare_fwd(logits, a, dense, multi_label);
  check_launch(launch_fwd_cuda(f.params, current_cuda_stream(logits)), "soft_f1_sums");
  return finish_fwd(f);
}

at::Tensor soft_f1_sums_bwd_cuda(const at::Tensor& grad, const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                                 const c10::optional<at::Tensor>& dense, bool multi_label) {
  c10::DeviceGuard guard(logits.device());
  auto b = prepare_bwd(grad, logits, a, dense, multi_label);
  check_launch(launch_bwd_cuda(b.params, current_cuda_stream(logits)), "soft_f1_sums_bwd");
  return b.dlogits;
}

}  // namespace
}  // namespace soft_f1
}  // namespace tricks

TRICKS_REGISTER_CUDA("soft_f1_sums", &tricks::soft_f1::soft_f1_sums_cuda,
                     "soft_f1_sums_bwd", &tricks::soft_f1::soft_f1_sums_bwd_cuda)

// Soft-target cross-entropy, CUDA bindings.
#include <torch/library.h>

#include "soft_ce/math.h"
#include "common/cuda_stream.h"
#include "soft_ce/prepare.h"

namespace tricks {
namespace soft_ce {
namespace {

std::tuple<at::Tensor, at::Tensor> soft_ce_fwd_cuda(const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                                                    const c10::optional<at::Tensor>& b,
                                                    const c10::optional<at::Tensor>& lam,
                                                    const c10::optional<at::Tensor>& dense,
                                                    const c10::optional<at::Tensor>& weight, double label_smoothing,
                                                    int64_t ignore_index, int64_t reduction) {
  c10::DeviceGuard guard(logits.device());
  auto f = prepare_fwd(logits, a, b, lam, dense, weight, label_smoothing, ignore_index, reduction, kCudaSweep);
  check_launch(launch_fwd_cuda(f.params, current_cuda_stream(logits)), "soft_ce_fwd");
  return {finish_fwd(f, logits, a, weight, reduction), f.stats};
}

at::Tensor soft_ce_bwd_cuda(const at::Tensor& grad, const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                            const c10::optional<at::Tensor>& b, const c10::optional<at::Tensor>& lam,
                            const c10::optional<at::Tensor>& dense, const c10::optional<at::Tensor>& weight,
                            const at::Tensor& stats, double label_smoothing, int64_t ignore_index, int64_t reduction) {
  c10::DeviceGuard guard(logits.device());
  auto r = prepare_bwd(grad, logits, a, b, lam, dense, weight, stats, label_smoothing, ignore_index, reduction,
                       kCudaSweep);
  check_launch(launch_bwd_cuda(r.params, current_cuda_stream(logits)), "soft_ce_bwd");
  return r.dlogits;
}

}  // namespace
}  // namespace soft_ce
}  // namespace tricks

TRICKS_REGISTER_CUDA("soft_ce_fwd", &tricks::soft_ce::soft_ce_fwd_cuda,
                     "soft_ce_bwd", &tricks::soft_ce::soft_ce_bwd_cuda)

// Weight standardization, CUDA bindings: validate, pick the stream, launch.
#include <torch/library.h>

#include "common/cuda_stream.h"
#include "weight_standardize/math.h"
#include "weight_standardize/prepare.h"

namespace tricks {
namespace ws {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd_cuda(const at::Tensor& w, double eps,
                                                        const c10::optional<at::Tensor>& gain) {
  c10::DeviceGuard guard(w.device());
  auto f = prepare_fwd(w, eps, gain);
  check_launch(launch_fwd_cuda(f.params, current_cuda_stream(w)), "weight_standardize_fwd");
  return {f.out, f.mean, f.rstd};
}

std::tuple<at::Tensor, at::Tensor> bwd_cuda(const at::Tensor& grad_out, const at::Tensor& w,
                                            const c10::optional<at::Tensor>& gain,
                                            const at::Tensor& mean, const at::Tensor& rstd) {
  c10::DeviceGuard guard(w.device());
  auto b = prepare_bwd(grad_out, w, gain, mean, rstd);
  check_launch(launch_bwd_cuda(b.params, current_cuda_stream(w)), "weight_standardize_bwd");
  return {b.grad_w, b.grad_gain};
}

}  // namespace
}  // namespace ws
}  // namespace tricks

TRICKS_REGISTER_CUDA("weight_standardize_fwd", &tricks::ws::fwd_cuda, "weight_standardize_bwd", &tricks::ws::bwd_cuda)

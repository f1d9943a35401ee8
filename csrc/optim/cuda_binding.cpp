// Fused optimizer step, CUDA bindings: validate, pick the stream, launch.
#include <torch/library.h>

#include "optim/math.h"
#include "common/cuda_stream.h"
#include "optim/prepare.h"

namespace tricks {
namespace optim {
namespace {

void optim_step_cuda(TRICKS_OPTIM_TENSOR_ARGS TRICKS_OPTIM_ARGS) {
  const int64_t n = static_cast<int64_t>(params.size());
  if (n == 0) return;
  const c10::Device device = params[0].device();
  c10::DeviceGuard guard(device);
  check_lists(params, grads, exp_avgs, exp_avg_sqs, slows, emas, steps, device);
  Params q = TRICKS_OPTIM_MAKE_PARAMS(params, slows);
  TORCH_CHECK(ptrs.has_value(), "optim_step_: CUDA needs the plan's pointer table (ptrs)");
  bind_work(q, work, device);
  bind_ptrs(q, *ptrs, n, !slows.empty(), !emas.empty(), device);
  q.found_inf = scalar_ptr(found_inf, "found_inf", device);
  q.grad_scale = scalar_ptr(grad_scale, "grad_scale", device);
  q.lr_tensor = scalar_ptr<double>(lr_tensor, "lr_tensor", device);
  check_launch(launch_step_cuda(q, current_cuda_stream(params[0])), "optim_step_");
}

}  // namespace
}  // namespace optim
}  // namespace tricks

TRICKS_REGISTER_CUDA("optim_step_", &tricks::optim::optim_step_cuda)

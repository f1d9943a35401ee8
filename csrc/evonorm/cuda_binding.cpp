// EvoNorm-S0, CUDA bindings.
#include <torch/library.h>

#include "evonorm/math.h"
#include "common/cuda_stream.h"
#include "evonorm/prepare.h"

namespace tricks {
namespace evonorm {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> evonorm_fwd_cuda(const at::Tensor& x, const at::Tensor& v,
                                                                const at::Tensor& weight, const at::Tensor& bias,
                                                                int64_t groups, double eps, int64_t split) {
  c10::DeviceGuard guard(x.device());
  TORCH_CHECK(split >= 0, "evonorm_s0_fwd: split must be >= 0 (0: automatic), got ", split);
  const int64_t groups_total = x.size(0) * groups;
  if (split == 0 && groups >= 1 && groups_total > 0)
    split = choose_split_cuda(groups_total, x.numel() / groups_total);
  split = std::min<int64_t>(split, 65535);  // grid.y
  auto f = prepare_fwd(x, v, weight, bias, groups, eps, split);
  TORCH_CHECK(x.numel() / std::max<int64_t>(x.size(0) * groups, 1) < (int64_t(1) << 31),
              "evonorm_s0: groups of 2^31 elements or more are not supported");
  if (x.numel() == 0) return {f.y, f.mean.zero_(), f.rstd.zero_()};
  check_launch(launch_fwd_cuda(f.params, current_cuda_stream(x)), "evonorm_s0_fwd");
  return {f.y, f.mean, f.rstd};
}

std::tuple<at::Tensor, at::Tensor> evonorm_bwd_cuda(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& v,
                                                    const at::Tensor& weight, const at::Tensor& mean,
                                                    const at::Tensor& rstd, int64_t groups, double eps) {
  c10::DeviceGuard guard(x.device());
  auto b = prepare_bwd(dy, x, v, weight, mean, rstd, groups, eps);
  if (x.numel() == 0) return {b.dx, b.partials.zero_()};
  check_launch(launch_bwd_cuda(b.params, current_cuda_stream(x)), "evonorm_s0_bwd");
  return {b.dx, b.partials};
}

}  // namespace
}  // namespace evonorm
}  // namespace tricks

TRICKS_REGISTER_CUDA("evonorm_s0_fwd", &tricks::evonorm::evonorm_fwd_cuda,
                     "evonorm_s0_bwd", &tricks::evonorm::evonorm_bwd_cuda)

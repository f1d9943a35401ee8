// Fused optimizer step, CUDA bindings: validate, pick the stream, launch.
#include <torch/library.h>

#include "optim/cuda.h"
#include "common/cuda_stream.h"
#include "optim/prepare.h"

namespace tricks {
namespace optim {
namespace {

void optim_step_cuda(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                     at::TensorList slows, at::TensorList steps, const c10::optional<at::Tensor>& work,
                     const c10::optional<at::Tensor>& ptrs, const c10::optional<at::Tensor>& found_inf,
                     const c10::optional<at::Tensor>& grad_scale, double lr, double beta1, double beta2, double eps,
                     double weight_decay, bool decoupled, double alpha, int64_t lookahead_k, bool rectify,
                     int64_t gc_min_dim, bool maximize) {
  (void)gc_min_dim;  // encoded in `work`
  const int64_t n = static_cast<int64_t>(params.size());
  if (n == 0) return;
  const c10::Device device = params[0].device();
  c10::DeviceGuard guard(device);
  const auto grads_ok = check_lists(params, grads, exp_avgs, exp_avg_sqs, slows, steps, device);
  for (int64_t i = 0; i < n; ++i)
    TORCH_CHECK(grads_ok[i].is_same(grads[i]), "optim_step_: on CUDA, grad ", i,
                " must have its param's strides (the pointer table holds the grads' addresses)");
  TORCH_CHECK(work.has_value() && ptrs.has_value(), "optim_step_: CUDA needs the work list and pointer table");
  TORCH_CHECK(work->device() == device && work->scalar_type() == at::kLong && work->dim() == 2 && work->size(1) == 4 &&
                  work->is_contiguous(),
              "optim_step_: work must be a contiguous int64 (n_items, 4) tensor on ", device);
  TORCH_CHECK(ptrs->device() == device && ptrs->scalar_type() == at::kLong && ptrs->dim() == 2 && ptrs->size(0) == 6 &&
                  ptrs->size(1) == n && ptrs->is_contiguous(),
              "optim_step_: ptrs must be a contiguous int64 (6, ", n, ") tensor on ", device);
  Params q = make_params(params, slows, lr, beta1, beta2, eps, weight_decay, decoupled, alpha, lookahead_k, rectify, maximize);
  const int64_t* table = ptrs->data_ptr<int64_t>();
  q.work = work->data_ptr<int64_t>();
  q.n_items = work->size(0);
  q.p = reinterpret_cast<void* const*>(table);
  q.g = reinterpret_cast<const void* const*>(table + n);
  q.m = reinterpret_cast<void* const*>(table + 2 * n);
  q.v = reinterpret_cast<void* const*>(table + 3 * n);
  q.s = slows.empty() ? nullptr : reinterpret_cast<void* const*>(table + 4 * n);
  q.step = reinterpret_cast<const float* const*>(table + 5 * n);
  q.found_inf = scalar_ptr(found_inf, "found_inf", device);
  q.grad_scale = scalar_ptr(grad_scale, "grad_scale", device);
  check_launch(launch_step_cuda(q, current_cuda_stream(params[0])), "optim_step_");
}

}  // namespace
}  // namespace optim
}  // namespace tricks

TORCH_LIBRARY_IMPL(tricks_ext, CUDA, m) { m.impl("optim_step_", &tricks::optim::optim_step_cuda); }

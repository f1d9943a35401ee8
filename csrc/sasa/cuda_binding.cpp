// SASA+'s fused step, CUDA bindings: validate, pick the stream, launch.
#include <torch/library.h>

#include "common/cuda_stream.h"
#include "sasa/prepare.h"

namespace tricks {
namespace sasa {
namespace {

at::Tensor sasa_step_cuda(TRICKS_SASA_ARGS) {
  const c10::Device device = lr.device();
  c10::DeviceGuard guard(device);
  Params q{};
  at::Tensor sums = prepare(q, params, grads, bufs, lr, work, ptrs, momentum, qhm_nu, weight_decay, device);
  if (q.n_items == 0) return sums;
  const int64_t n = static_cast<int64_t>(params.size());
  TORCH_CHECK(ptrs.has_value() && ptrs->device() == device && ptrs->scalar_type() == at::kLong && ptrs->dim() == 2 &&
                  ptrs->size(0) == 3 && ptrs->size(1) == n && ptrs->is_contiguous(),
              "sasa_step_: ptrs must be a contiguous int64 (3, ", n, ") tensor on ", device);
  const int64_t* table = ptrs->data_ptr<int64_t>();
  q.work = work.data_ptr<int64_t>();
  q.p = reinterpret_cast<void* const*>(table);
  q.g = reinterpret_cast<const void* const*>(table + n);
  q.h = bufs.empty() ? nullptr : reinterpret_cast<void* const*>(table + 2 * n);
  check_launch(launch_sasa_step_cuda(q, current_cuda_stream(lr)), "sasa_step_");
  return sums;
}

}  // namespace
}  // namespace sasa
}  // namespace tricks

TRICKS_REGISTER_CUDA("sasa_step_", &tricks::sasa::sasa_step_cuda)

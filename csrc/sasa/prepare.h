// Validation of the sasa_step_ arguments, shared by the CPU and CUDA bindings.
#pragma once

#include <ATen/ATen.h>

#include <cmath>

#include "common/checks.h"
#include "sasa/math.h"

namespace tricks {
namespace sasa {

// The op's arguments, in the schema's order (schema.cpp).
#define TRICKS_SASA_ARGS                                                                                  \
  at::TensorList params, at::TensorList grads, at::TensorList bufs, const at::Tensor &lr, const at::Tensor &work, \
      const c10::optional<at::Tensor>&ptrs, double momentum, double qhm_nu, double weight_decay

// Checks the lists, the LR and the work list, fills q's scalars and returns the sums' tensor
// (float64 [n_items, 2] on the device). Every param must be dense (the kernels walk its memory
// linearly); grads and buffers share its device, dtype, shape and strides.
inline at::Tensor prepare(Params& q, TRICKS_SASA_ARGS, c10::Device device) {
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n, "sasa_step_: params and grads must have the same length");
  TORCH_CHECK(bufs.empty() || bufs.size() == n, "sasa_step_: bufs must be empty or one per param");
  TORCH_CHECK(std::isfinite(momentum) && std::isfinite(qhm_nu) && std::isfinite(weight_decay),
              "sasa_step_: momentum, qhm_nu and weight_decay must be finite");
  TORCH_CHECK(lr.device() == device && lr.scalar_type() == at::kDouble && lr.numel() == 1,
              "sasa_step_: lr must be one float64 value on ", device);
  TORCH_CHECK(work.device() == device && work.scalar_type() == at::kLong && work.dim() == 2 && work.size(1) == 3 &&
                  work.is_contiguous(),
              "sasa_step_: work must be a contiguous int64 (n_items, 3) tensor on ", device);
  q.n_items = work.size(0);
  q.dtype = n ? to_dtype(params[0], "sasa_step_: params") : DType::Float32;
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    TORCH_CHECK(p.device() == device && p.scalar_type() == params[0].scalar_type(),
                "sasa_step_: params must share one device and dtype; param ", i, " is ", p.scalar_type(), " on ",
                p.device());
    TORCH_CHECK(p.is_non_overlapping_and_dense(), "sasa_step_: param ", i, " must be dense, got strides ",
                p.strides());
    for (const at::Tensor* t : {&grads[i], bufs.empty() ? &grads[i] : &bufs[i]}) {
      TORCH_CHECK(!t->is_sparse() && t->device() == device && t->scalar_type() == p.scalar_type() &&
                      t->sizes() == p.sizes() && t->strides() == p.strides(),
                  "sasa_step_: the grad and buffer of param ", i,
                  " must be dense with the param's device, dtype, shape and strides");
    }
  }
  q.kind = bufs.empty() ? kGrad : (qhm_nu == 1.0 ? kMomentum : kQhm);
  q.momentum = momentum;
  q.qhm_nu = qhm_nu;
  q.weight_decay = weight_decay;
  q.lr = lr.data_ptr<double>();
  at::Tensor sums = at::empty({q.n_items, 2}, lr.options());
  q.sums = sums.data_ptr<double>();
  return sums;
}

// The work list's rows (tensor, start, length) must lie in their tensors: checked on the host
// copy by the CPU binding; the CUDA binding trusts the plan (tricks_ext/ops/sasa.py) it gets on
// the device, as optim_step_ does.
inline void check_work(const int64_t* w, int64_t n_items, at::TensorList params) {
  const int64_t n = static_cast<int64_t>(params.size());
  for (int64_t j = 0; j < n_items; ++j, w += 3) {
    TORCH_CHECK(w[0] >= 0 && w[0] < n && w[1] >= 0 && w[2] >= 0 && w[1] + w[2] <= params[w[0]].numel(),
                "sasa_step_: work item ", j, " is outside its tensor");
  }
}

}  // namespace sasa
}  // namespace tricks

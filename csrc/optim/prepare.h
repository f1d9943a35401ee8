// Validation of the optim_step_ arguments, shared by the CPU and CUDA bindings.
#pragma once

#include <vector>

#include "common/checks.h"
#include "optim/math.h"

namespace tricks {
namespace optim {

// Checks the tensor lists: one device and dtype, state shaped and strided like its param (the
// kernels walk each param's memory linearly, so p, g, m, v, slow, ema share strides).
inline void check_lists(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                        at::TensorList exp_avg_sqs, at::TensorList slows, at::TensorList emas, at::TensorList steps,
                        c10::Device device) {
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n && exp_avgs.size() == n && exp_avg_sqs.size() == n && steps.size() == n,
              "optim_step_: params, grads, exp_avgs, exp_avg_sqs, steps must have the same length");
  TORCH_CHECK(slows.empty() || slows.size() == n, "optim_step_: slows must be empty or one per param");
  TORCH_CHECK(emas.empty() || emas.size() == n, "optim_step_: emas must be empty or one per param");
  if (n == 0) return;
  const auto dtype = params[0].scalar_type();
  to_dtype(params[0], "params");
  const auto sdt = stats_dtype(params[0]);
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    TORCH_CHECK(p.device() == device && p.scalar_type() == dtype, "optim_step_: params must share one device and dtype; param ", i,
                " is ", p.scalar_type(), " on ", p.device());
    TORCH_CHECK(is_row_dense(p), "optim_step_: param ", i, " must be contiguous or channels_last, got strides ", p.strides());
    for (const at::Tensor* t : {&exp_avgs[i], &exp_avg_sqs[i], emas.empty() ? &exp_avgs[i] : &emas[i]}) {
      TORCH_CHECK(t->device() == device && t->scalar_type() == sdt && t->strides() == p.strides() && t->sizes() == p.sizes(),
                  "optim_step_: state of param ", i, " must be ", sdt, " on ", device, " with the param's shape and strides");
    }
    if (!slows.empty()) {
      TORCH_CHECK(slows[i].device() == device && slows[i].scalar_type() == slows[0].scalar_type() &&
                      slows[i].strides() == p.strides() && slows[i].sizes() == p.sizes(),
                  "optim_step_: slow weights of param ", i, " must match the param's device, shape and strides");
      TORCH_CHECK(slows[i].scalar_type() == sdt || slows[i].scalar_type() == dtype,
                  "optim_step_: slow weights must be ", sdt, " or ", dtype);
    }
    TORCH_CHECK(steps[i].device() == device && steps[i].scalar_type() == at::kFloat && steps[i].numel() == 1,
                "optim_step_: step ", i, " must be a float32 scalar on ", device);
    const at::Tensor& g = grads[i];
    TORCH_CHECK(g.device() == device && g.sizes() == p.sizes() && g.scalar_type() == dtype && !g.is_sparse(),
                "optim_step_: grad ", i, " must be dense with the param's shape, dtype and device");
    TORCH_CHECK(g.strides() == p.strides(), "optim_step_: grad ", i,
                " must have its param's strides (the pointer table holds the grads' addresses)");
  }
}

// Checks the plan's work list (tricks_ext/ops/optim.py, Plan) and points q at it.
inline void bind_work(Params& q, const at::Tensor& work, c10::Device device) {
  TORCH_CHECK(work.device() == device && work.scalar_type() == at::kLong && work.dim() == 2 && work.size(1) == 4 &&
                  work.is_contiguous(),
              "optim_step_: work must be a contiguous int64 (n_items, 4) tensor on ", device);
  q.work = work.data_ptr<int64_t>();
  q.n_items = work.size(0);
}

// Rows of the plan's pointer table: param, grad, exp_avg, exp_avg_sq, slow, ema, step.
constexpr int64_t kPtrRows = 7;

// Checks the plan's pointer table of the n tensors and points q's tables at its rows.
inline void bind_ptrs(Params& q, const at::Tensor& ptrs, int64_t n, bool has_slows, bool has_emas, c10::Device device) {
  TORCH_CHECK(ptrs.device() == device && ptrs.scalar_type() == at::kLong && ptrs.dim() == 2 &&
                  ptrs.size(0) == kPtrRows && ptrs.size(1) == n && ptrs.is_contiguous(),
              "optim_step_: ptrs must be a contiguous int64 (", kPtrRows, ", ", n, ") tensor on ", device);
  const int64_t* table = ptrs.data_ptr<int64_t>();
  q.p = reinterpret_cast<void* const*>(table);
  q.g = reinterpret_cast<const void* const*>(table + n);
  q.m = reinterpret_cast<void* const*>(table + 2 * n);
  q.v = reinterpret_cast<void* const*>(table + 3 * n);
  q.s = has_slows ? reinterpret_cast<void* const*>(table + 4 * n) : nullptr;
  q.e = has_emas ? reinterpret_cast<void* const*>(table + 5 * n) : nullptr;
  q.step = reinterpret_cast<const float* const*>(table + 6 * n);
}

template <typename T = float>
const T* scalar_ptr(const c10::optional<at::Tensor>& t, const char* name, c10::Device device) {
  if (!t.has_value()) return nullptr;
  const auto dtype = c10::CppTypeToScalarType<T>::value;
  TORCH_CHECK(t->device() == device && t->scalar_type() == dtype && t->numel() == 1, "optim_step_: ", name,
              " must be a ", dtype, " scalar on ", device);
  return t->data_ptr<T>();
}

// The op's tensor arguments, in the schema's order (tricks_ext/ops/optim.py, _TENSOR_ARGS).
#define TRICKS_OPTIM_TENSOR_ARGS                                                                                  \
  at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,              \
      at::TensorList slows, at::TensorList emas, at::TensorList steps, const at::Tensor& work,                    \
      const c10::optional<at::Tensor>& ptrs, const c10::optional<at::Tensor>& found_inf,                           \
      const c10::optional<at::Tensor>& grad_scale, const c10::optional<at::Tensor>& lr_tensor

// The op's arguments after its tensors, one per Hyperparams field (math.h).
#define TRICKS_OPTIM_ARG(type, name) , type name
#define TRICKS_OPTIM_ARGS TRICKS_OPTIM_HYPERPARAMS(TRICKS_OPTIM_ARG)
#define TRICKS_OPTIM_SET(type, name) q.name = name;

// Params from the op's arguments: the hyperparameters as given (lookahead_k 0 without slow
// weights), the dtypes from the lists.
#define TRICKS_OPTIM_MAKE_PARAMS(params, slows) \
  make_params(params, slows, [&](Params& q) { TRICKS_OPTIM_HYPERPARAMS(TRICKS_OPTIM_SET) })

template <typename Fill>
Params make_params(at::TensorList params, at::TensorList slows, Fill fill) {
  Params q{};
  fill(q);
  TORCH_CHECK(q.clip_value > 0.0, "optim_step_: clip_value must be > 0 (inf: off), got ", q.clip_value);
  TORCH_CHECK(q.agc_clip_factor >= 0.0 && q.agc_eps >= 0.0, "optim_step_: agc_clip_factor and agc_eps must be >= 0");
  TORCH_CHECK(q.ema_warmup_gamma > 0.0 && q.ema_update_after_step >= 0,
              "optim_step_: ema_warmup_gamma must be > 0 and ema_update_after_step >= 0");
  if (slows.empty()) q.lookahead_k = 0;
  if (!params.empty()) {
    q.dtype = to_dtype(params[0], "params");
    q.slow_dtype = slows.empty() ? q.dtype : to_dtype(slows[0], "slows");
  }
  return q;
}

}  // namespace optim
}  // namespace tricks

// Autograd of tricks_ext::weight_standardize_fwd in C++ (CPU and CUDA kernels alike; the Triton and
// simt twins keep their Python registration in tricks_ext/ops/weight_standardize.py, same
// formulas). Why C++: a conv weight is small, so the fixed cost per call is the op's cost. With
// torch.library's Python autograd, even a call without grad ran a Python function (64x3x7x7 fp32
// on CPU: forward 33 us through F.weight_standardize against 14 us for the bare op, forward +
// backward 82 us against timm's batch_norm path at 54 us; benchmarks/NOTES.md).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "common/autograd_graph.h"

namespace {

using at::Tensor;
using c10::optional;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<Tensor, Tensor, Tensor> call_fwd(const Tensor& w, double eps, const optional<Tensor>& gain) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("tricks_ext::weight_standardize_fwd", "")
                       .typed<std::tuple<Tensor, Tensor, Tensor>(const Tensor&, double, const optional<Tensor>&)>();
  return op.call(w, eps, gain);
}

std::tuple<Tensor, Tensor> call_bwd(const Tensor& grad_out, const Tensor& w, const optional<Tensor>& gain,
                                    const Tensor& mean, const Tensor& rstd) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("tricks_ext::weight_standardize_bwd", "")
                       .typed<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const optional<Tensor>&,
                                                         const Tensor&, const Tensor&)>();
  return op.call(grad_out, w, gain, mean, rstd);
}

class WeightStandardize : public torch::autograd::Function<WeightStandardize> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& w, double eps, const optional<Tensor>& gain) {
    at::AutoDispatchBelowADInplaceOrView below;
    auto [out, mean, rstd] = call_fwd(w, eps, gain);
    ctx->save_for_backward({w, gain.value_or(Tensor()), mean, rstd});
    ctx->saved_data["eps"] = eps;
    ctx->mark_non_differentiable({mean, rstd});
    return {out, mean, rstd};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &w = saved[0], &mean = saved[2], &rstd = saved[3];
    const optional<Tensor> gain = saved[1].defined() ? optional<Tensor>(saved[1]) : c10::nullopt;
    // needs_input_grad counts the tensors given: gain, when present, is the second
    const bool w_grad = ctx->needs_input_grad(0), gain_grad = gain.has_value() && ctx->needs_input_grad(1);
    const Tensor& grad = grads[0];
    Tensor dw, dgain;
    if (tricks::wants_graph({grad, w, saved[1]})) {
      static auto graph = tricks::graph_backward<std::vector<Tensor>(const Tensor&, const Tensor&,
                                                                     const optional<Tensor>&, double, bool, bool)>(
          "tricks_ext::weight_standardize_graph_backward");
      auto out = graph.call(grad, w, gain, ctx->saved_data["eps"].toDouble(), w_grad, gain_grad);
      if (w_grad) dw = out[0];
      if (gain_grad) dgain = out.back();
    } else if (w_grad || gain_grad) {
      std::tie(dw, dgain) = call_bwd(grad, w, gain, mean, rstd);
    }
    return {w_grad ? dw : Tensor(), Tensor(), gain_grad ? dgain : Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor> weight_standardize_fwd_autograd(const Tensor& w, double eps,
                                                                   const optional<Tensor>& gain) {
  auto out = WeightStandardize::apply(w, eps, gain);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(tricks_ext, Autograd, m) { m.impl("weight_standardize_fwd", &weight_standardize_fwd_autograd); }

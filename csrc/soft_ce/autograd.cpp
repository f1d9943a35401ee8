// Autograd of tricks_ext::soft_ce_fwd in C++ (CPU and CUDA kernels alike; the Triton pair keeps
// its Python registration in tricks_ext/ops/soft_ce.py, same formulas). Why C++: at ImageNet
// sizes on CPU, torch.library's Python autograd layers (argument defaults, redispatch,
// setup_context, the Python backward) cost about as much as both kernels (benchmarks/NOTES.md,
// "Measurements behind code choices").
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "common/autograd_graph.h"
#include "soft_ce/prepare.h"

namespace {

using at::Tensor;
using c10::optional;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<Tensor, Tensor> call_fwd(const Tensor& logits, const optional<Tensor>& a, const optional<Tensor>& b,
                                    const optional<Tensor>& lam, const optional<Tensor>& dense,
                                    const optional<Tensor>& weight, double label_smoothing, int64_t ignore_index,
                                    int64_t reduction) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("tricks_ext::soft_ce_fwd", "")
                       .typed<std::tuple<Tensor, Tensor>(const Tensor&, const optional<Tensor>&,
                                                         const optional<Tensor>&, const optional<Tensor>&,
                                                         const optional<Tensor>&, const optional<Tensor>&, double,
                                                         int64_t, int64_t)>();
  return op.call(logits, a, b, lam, dense, weight, label_smoothing, ignore_index, reduction);
}

Tensor call_bwd(const Tensor& grad, const Tensor& logits, const optional<Tensor>& a, const optional<Tensor>& b,
                const optional<Tensor>& lam, const optional<Tensor>& dense, const optional<Tensor>& weight,
                const Tensor& stats, double label_smoothing, int64_t ignore_index, int64_t reduction) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("tricks_ext::soft_ce_bwd", "")
                       .typed<Tensor(const Tensor&, const Tensor&, const optional<Tensor>&, const optional<Tensor>&,
                                     const optional<Tensor>&, const optional<Tensor>&, const optional<Tensor>&,
                                     const Tensor&, double, int64_t, int64_t)>();
  return op.call(grad, logits, a, b, lam, dense, weight, stats, label_smoothing, ignore_index, reduction);
}

optional<Tensor> opt(const Tensor& t) { return t.defined() ? optional<Tensor>(t) : c10::nullopt; }

class SoftCE : public torch::autograd::Function<SoftCE> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& logits, const optional<Tensor>& a,
                               const optional<Tensor>& b, const optional<Tensor>& lam, const optional<Tensor>& dense,
                               const optional<Tensor>& weight, double label_smoothing, int64_t ignore_index,
                               int64_t reduction) {
    at::AutoDispatchBelowADInplaceOrView below;
    auto [loss, stats] = call_fwd(logits, a, b, lam, dense, weight, label_smoothing, ignore_index, reduction);
    ctx->save_for_backward({logits, a.value_or(Tensor()), b.value_or(Tensor()), lam.value_or(Tensor()),
                            dense.value_or(Tensor()), weight.value_or(Tensor()), stats});
    ctx->saved_data["label_smoothing"] = label_smoothing;
    ctx->saved_data["ignore_index"] = ignore_index;
    ctx->saved_data["reduction"] = reduction;
    ctx->mark_non_differentiable({stats});
    return {loss, stats};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor &logits = saved[0], &stats = saved[6];
    const optional<Tensor> a = opt(saved[1]), b = opt(saved[2]), lam = opt(saved[3]), dense = opt(saved[4]),
                           weight = opt(saved[5]);
    const double label_smoothing = ctx->saved_data["label_smoothing"].toDouble();
    const int64_t ignore_index = ctx->saved_data["ignore_index"].toInt();
    const int64_t reduction = ctx->saved_data["reduction"].toInt();
    const Tensor& grad = grads[0];
    Tensor dlogits, ddense;
    // needs_input_grad counts the tensors given: dense follows logits and whichever labels are present
    const size_t dense_edge = 1 + a.has_value() + b.has_value() + lam.has_value();
    const bool logits_grad = ctx->needs_input_grad(0), dense_grad = dense.has_value() && ctx->needs_input_grad(dense_edge);
    if (tricks::wants_graph({grad, logits, dense.value_or(Tensor())})) {
      static auto graph = tricks::graph_backward<std::vector<Tensor>(
          const Tensor&, const Tensor&, const optional<Tensor>&, const optional<Tensor>&, const optional<Tensor>&,
          const optional<Tensor>&, const optional<Tensor>&, double, int64_t, int64_t, bool, bool)>(
          "tricks_ext::soft_ce_graph_backward");
      auto out = graph.call(grad, logits, a, b, lam, dense, weight, label_smoothing, ignore_index, reduction,
                            logits_grad, dense_grad);
      if (logits_grad) dlogits = out[0];
      if (dense_grad) ddense = out.back();
      return {dlogits, Tensor(), Tensor(), Tensor(), ddense, Tensor(), Tensor(), Tensor(), Tensor()};
    }
    if (logits_grad)
      dlogits = call_bwd(grad, logits, a, b, lam, dense, weight, stats, label_smoothing, ignore_index, reduction);
    if (dense_grad)
      ddense = tricks::soft_ce::dense_target_grad(grad, logits, *dense, weight, stats, label_smoothing, reduction);
    return {dlogits, Tensor(), Tensor(), Tensor(), ddense, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

std::tuple<Tensor, Tensor> soft_ce_fwd_autograd(const Tensor& logits, const optional<Tensor>& a,
                                                const optional<Tensor>& b, const optional<Tensor>& lam,
                                                const optional<Tensor>& dense, const optional<Tensor>& weight,
                                                double label_smoothing, int64_t ignore_index, int64_t reduction) {
  auto out = SoftCE::apply(logits, a, b, lam, dense, weight, label_smoothing, ignore_index, reduction);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(tricks_ext, Autograd, m) { m.impl("soft_ce_fwd", &soft_ce_fwd_autograd); }

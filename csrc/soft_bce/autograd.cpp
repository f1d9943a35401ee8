// Autograd of tricks_ext::soft_bce_fwd in C++ (CPU and CUDA kernels alike; the Triton and simt
// twins keep their Python registration in tricks_ext/ops/soft_bce.py, same formulas), for the
// reason soft CE's is (csrc/soft_ce/autograd.cpp): at 256 x 1000 on CPU, torch.library's Python
// autograd layers took 0.3 ms of a 1.0 ms forward + backward.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "common/autograd_graph.h"
#include "soft_bce/prepare.h"

namespace {

using at::Tensor;
using c10::optional;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

Tensor call_fwd(const Tensor& logits, const optional<Tensor>& a, const optional<Tensor>& b, const optional<Tensor>& lam,
                const optional<Tensor>& dense, const optional<Tensor>& pos_weight, const optional<Tensor>& weight,
                double label_smoothing, optional<double> target_threshold, int64_t reduction) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("tricks_ext::soft_bce_fwd", "")
                       .typed<Tensor(const Tensor&, const optional<Tensor>&, const optional<Tensor>&,
                                     const optional<Tensor>&, const optional<Tensor>&, const optional<Tensor>&,
                                     const optional<Tensor>&, double, optional<double>, int64_t)>();
  return op.call(logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold, reduction);
}

Tensor call_bwd(const Tensor& grad, const Tensor& logits, const optional<Tensor>& a, const optional<Tensor>& b,
                const optional<Tensor>& lam, const optional<Tensor>& dense, const optional<Tensor>& pos_weight,
                const optional<Tensor>& weight, double label_smoothing, optional<double> target_threshold,
                int64_t reduction) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("tricks_ext::soft_bce_bwd", "")
                       .typed<Tensor(const Tensor&, const Tensor&, const optional<Tensor>&, const optional<Tensor>&,
                                     const optional<Tensor>&, const optional<Tensor>&, const optional<Tensor>&,
                                     const optional<Tensor>&, double, optional<double>, int64_t)>();
  return op.call(grad, logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold, reduction);
}

optional<Tensor> opt(const Tensor& t) { return t.defined() ? optional<Tensor>(t) : c10::nullopt; }

class SoftBCE : public torch::autograd::Function<SoftBCE> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& logits, const optional<Tensor>& a,
                        const optional<Tensor>& b, const optional<Tensor>& lam, const optional<Tensor>& dense,
                        const optional<Tensor>& pos_weight, const optional<Tensor>& weight, double label_smoothing,
                        optional<double> target_threshold, int64_t reduction) {
    at::AutoDispatchBelowADInplaceOrView below;
    Tensor loss = call_fwd(logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold, reduction);
    ctx->save_for_backward({logits, a.value_or(Tensor()), b.value_or(Tensor()), lam.value_or(Tensor()),
                            dense.value_or(Tensor()), pos_weight.value_or(Tensor()), weight.value_or(Tensor())});
    ctx->saved_data["label_smoothing"] = label_smoothing;
    ctx->saved_data["has_target_threshold"] = target_threshold.has_value();
    ctx->saved_data["target_threshold"] = target_threshold.value_or(0.0);
    ctx->saved_data["reduction"] = reduction;
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor& logits = saved[0];
    const optional<Tensor> a = opt(saved[1]), b = opt(saved[2]), lam = opt(saved[3]), dense = opt(saved[4]),
                           pos_weight = opt(saved[5]), weight = opt(saved[6]);
    const double label_smoothing = ctx->saved_data["label_smoothing"].toDouble();
    const optional<double> target_threshold =
        ctx->saved_data["has_target_threshold"].toBool()
            ? optional<double>(ctx->saved_data["target_threshold"].toDouble())
            : c10::nullopt;
    const int64_t reduction = ctx->saved_data["reduction"].toInt();
    const Tensor& grad = grads[0];
    Tensor dlogits, ddense;
    // needs_input_grad counts the tensors given: dense follows logits and whichever labels are present
    const size_t dense_edge = 1 + a.has_value() + b.has_value() + lam.has_value();
    const bool logits_grad = ctx->needs_input_grad(0), dense_grad = dense.has_value() && ctx->needs_input_grad(dense_edge);
    const variable_list none(5);  // pos_weight, weight, label_smoothing, target_threshold, reduction
    if (tricks::wants_graph({grad, logits, dense.value_or(Tensor()), pos_weight.value_or(Tensor()),
                             weight.value_or(Tensor())})) {
      static auto graph = tricks::graph_backward<std::vector<Tensor>(
          const Tensor&, const Tensor&, const optional<Tensor>&, const optional<Tensor>&, const optional<Tensor>&,
          const optional<Tensor>&, const optional<Tensor>&, const optional<Tensor>&, double, optional<double>, int64_t,
          bool, bool)>("tricks_ext::soft_bce_graph_backward");
      auto out = graph.call(grad, logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold,
                            reduction, logits_grad, dense_grad);
      if (logits_grad) dlogits = out[0];
      if (dense_grad) ddense = out.back();
    } else {
      if (logits_grad)
        dlogits = call_bwd(grad, logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold,
                           reduction);
      if (dense_grad)
        ddense = tricks::soft_bce::dense_target_grad(grad, logits, pos_weight, weight, target_threshold, reduction);
    }
    variable_list out{dlogits, Tensor(), Tensor(), Tensor(), ddense};
    out.insert(out.end(), none.begin(), none.end());
    return out;
  }
};

Tensor soft_bce_fwd_autograd(const Tensor& logits, const optional<Tensor>& a, const optional<Tensor>& b,
                             const optional<Tensor>& lam, const optional<Tensor>& dense,
                             const optional<Tensor>& pos_weight, const optional<Tensor>& weight, double label_smoothing,
                             optional<double> target_threshold, int64_t reduction) {
  return SoftBCE::apply(logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold, reduction);
}

}  // namespace

TORCH_LIBRARY_IMPL(tricks_ext, Autograd, m) { m.impl("soft_bce_fwd", &soft_bce_fwd_autograd); }

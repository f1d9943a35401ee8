// Schemas of the soft-target binary cross-entropy (math: soft_bce/math.h).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(tricks_ext, m) {
  // BCE with logits of contiguous logits (N, C). Targets: labels a (one-hot, smoothed by
  // label_smoothing), mixed (a, b, lam fp32; label_smoothing is the mix's), or dense (N, C) in the
  // logits' dtype; target_threshold: targets become t > target_threshold; pos_weight and weight
  // (class weights, scaling each element's loss): (C,) in fp32 (fp64 for fp64 logits). reduction: 0 none (loss (N, C)), 1 sum, 2 mean over the N * C elements (loss ()).
  // The loss has the logits' dtype; backward takes dL/dloss (the loss's shape and dtype) and
  // recomputes everything from the logits and targets.
  m.def("soft_bce_fwd(Tensor logits, Tensor? a, Tensor? b, Tensor? lam, Tensor? dense, Tensor? pos_weight, "
        "Tensor? weight, float label_smoothing, float? target_threshold, int reduction) -> Tensor");
  m.def("soft_bce_bwd(Tensor grad, Tensor logits, Tensor? a, Tensor? b, Tensor? lam, Tensor? dense, "
        "Tensor? pos_weight, Tensor? weight, float label_smoothing, float? target_threshold, int reduction) -> Tensor");
}

// Schemas of the soft-target cross-entropy (math: soft_ce/math.h).
#include <torch/library.h>

#include "soft_ce/math.h"

TORCH_LIBRARY_FRAGMENT(tricks_ext, m) {
  // Columns of the per-row statistics (shift, log_sum, T), for the Python fake kernels.
  m.def("soft_ce_stats_columns() -> int", [] { return tricks::soft_ce::kStats; });

  // Cross-entropy of contiguous logits (N, C). Targets: labels a (hard, with label_smoothing and
  // ignore_index), mixed (a, b, lam fp32), or dense (N, C) in the logits' dtype; weight: class
  // weights (C,) in fp32 (fp64 for fp64 logits). reduction: 0 none (loss (N,)), 1 sum, 2 mean
  // (loss ()); 'mean' divides by the rows not ignored for hard labels (the sum of their labels'
  // weights with class weights), by N otherwise. Returns (loss in the logits' dtype, stats (N, soft_ce_stats_columns)
  // = shift, log_sum, T in fp32 (fp64 for fp64 logits)); backward takes dL/dloss (the loss's
  // shape and dtype) and stats, returns dlogits.
  m.def("soft_ce_fwd(Tensor logits, Tensor? a, Tensor? b, Tensor? lam, Tensor? dense, Tensor? weight, "
        "float label_smoothing, int ignore_index, int reduction) -> (Tensor, Tensor)");
  m.def("soft_ce_bwd(Tensor grad, Tensor logits, Tensor? a, Tensor? b, Tensor? lam, Tensor? dense, Tensor? weight, "
        "Tensor stats, float label_smoothing, int ignore_index, int reduction) -> Tensor");
}

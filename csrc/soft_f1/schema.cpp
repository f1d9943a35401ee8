// Schemas of the soft F1 sums (math: soft_f1/math.h).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(tricks_ext, m) {
  // Per-class soft counts of contiguous logits (N, C): (3, C) in fp32 (fp64 for fp64 logits),
  // rows sum_i t p, sum_i p, sum_i t, with p = sigmoid(logits) (multi_label) or the row's softmax
  // and t the one-hot of labels a (int64 (N,)) or dense targets (N, C) in the logits' dtype.
  m.def("soft_f1_sums(Tensor logits, Tensor? a, Tensor? dense, bool multi_label) -> Tensor");
  // dlogits from grad = dL/dsums (3, C) in the sums' dtype (row 2, the targets', is not read).
  m.def("soft_f1_sums_bwd(Tensor grad, Tensor logits, Tensor? a, Tensor? dense, bool multi_label) -> Tensor");
}

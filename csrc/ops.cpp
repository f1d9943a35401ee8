// Every tricks_ext operator schema, and the Python module init of tricks_ext._C.
// Kernels register against these schemas per dispatch key in cpu/*.cpp and cuda/*.cpp;
// fake (meta) and autograd implementations are registered from Python (tricks_ext/ops).
#include <Python.h>
#include <torch/library.h>

#include "dropout/philox_cpu.h"

namespace {
bool has_cuda_kernels() {
#ifdef TRICKS_EXT_WITH_CUDA
  return true;
#else
  return false;
#endif
}
}  // namespace

TORCH_LIBRARY(tricks_ext, m) {
  m.def("_has_cuda_kernels() -> bool", &has_cuda_kernels);
  // Whether the CPU dropout kernels draw Philox with AVX2 (cpu/philox.h; TRICKS_EXT_NO_AVX2=1
  // forces the portable path).
  m.def("_cpu_philox_avx2() -> bool", &tricks::dropout::keep_mask_uses_avx2);

  // Weight standardization over all dims but the first. `w` must be row-dense (each output
  // channel's elements contiguous in memory, any order inside: contiguous and channels_last
  // weights qualify); `gain` (per-channel multiplier, any scale folded in) is (O,) in the
  // statistics dtype (fp32, fp64 for fp64 weights).
  // Returns (w_hat, mean, rstd); mean/rstd are (O,) in the statistics dtype.
  m.def("weight_standardize_fwd(Tensor w, Tensor? gain, float eps) -> (Tensor, Tensor, Tensor)");
  // Returns (grad_w, grad_gain) where grad_gain[o] = sum_k grad_out * what (always (O,)).
  m.def("weight_standardize_bwd(Tensor grad_out, Tensor w, Tensor? gain, Tensor mean, Tensor rstd) -> (Tensor, Tensor)");

  // One optimizer step (GC + Adam/AdamW/RAdam + Lookahead) over tensors that share a device and
  // dtype, in place (math: csrc/include/tricks/optim.h). `steps` already count this step; a
  // non-zero `found_inf` skips the step (the caller undoes its count). `slows` is empty without
  // Lookahead. gc_min_dim: 0 = no GC, else centralize grads with dim >= gc_min_dim.
  // CUDA only: `work` (int64 [n_items, 4]: tensor, start, length, gc) and `ptrs` (int64 [6, n]:
  // param, grad, exp_avg, exp_avg_sq, slow, step addresses) describe the same tensors; they are
  // built once and cached by the caller (tricks_ext/ops/optim.py). The CPU kernel builds its own.
  m.def("optim_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(d!)[] slows, Tensor[] steps, Tensor? work, Tensor? ptrs, Tensor? found_inf, Tensor? grad_scale, "
        "float lr, float beta1, float beta2, float eps, float weight_decay, bool decoupled, float alpha, "
        "int lookahead_k, bool rectify, int gc_min_dim, bool maximize) -> ()");


  // Dropout with a regenerated mask, optionally fused into a gated residual:
  // y = residual + gate * x * keep * scale, keep_i = u_{i / group} >= p with u from the Philox
  // stream (seed_offset[0], seed_offset[1]) at x's contiguous element index i; group = 1 is
  // dropout, group = elements per sample is drop path; residual (like x) and gate
  // (one fp32 element, fp64 for fp64 x) optional. Linear in x, so the backward for x is the same
  // op on the gradient. x contiguous; seed_offset int64 [2] on x's device (read by the kernel:
  // graph capture and compile see a tensor, not a constant); scale = fp32(1 / (1 - p)) (0 for
  // p = 1) passed by the caller.
  m.def("dropout_apply(Tensor x, Tensor? residual, Tensor? gate, Tensor seed_offset, float p, float scale, int group) -> Tensor");
  // Backward of dropout_apply in one pass and one Philox draw: dx = gate * dropout(grad) and,
  // when x is given (the gate needs a gradient), partial sums of x * dropout(grad) per fixed
  // chunk of elements (summed by the caller: deterministic). Returns (dx, partials); partials
  // is empty without x.
  m.def("dropout_apply_bwd(Tensor grad, Tensor? x, Tensor? gate, Tensor seed_offset, float p, float scale, int group) -> (Tensor, Tensor)");

  // Mixup / CutMix mixing of a batch with its flip (math: csrc/include/tricks/mixup.h): coef
  // fp32 (B, 2) = (a, b) per sample, box int32 (B, 4) = (y0, y1, x0, x1) per sample; each sample
  // of x is one dense block viewed as [outer][height][width][inner]. The out-of-place op returns
  // a tensor with x's layout; mixup_apply_ mixes x in place.
  m.def("mixup_apply(Tensor x, Tensor coef, Tensor box, int height, int width, int inner) -> Tensor");
  m.def("mixup_apply_(Tensor(a!) x, Tensor coef, Tensor box, int height, int width, int inner) -> ()");

  // Soft-target cross-entropy (math: csrc/include/tricks/soft_ce.h) of contiguous logits (N, C).
  // Targets: labels a (hard, with smoothing and ignore_index), mixed (a, b, lam fp32), or dense
  // (N, C) in the logits' dtype. reduction: 0 none (loss (N,)), 1 sum, 2 mean (loss ()); 'mean'
  // divides by the rows not ignored for hard labels, by N otherwise. Returns (loss in the
  // logits' dtype, stats (N, 2) = lse, sum t in fp32 (fp64 for fp64 logits)); backward takes
  // dL/dloss (the loss's shape and dtype) and stats, returns dlogits.
  m.def("soft_ce_fwd(Tensor logits, Tensor? a, Tensor? b, Tensor? lam, Tensor? dense, float smoothing, "
        "int ignore_index, int reduction) -> (Tensor, Tensor)");
  m.def("soft_ce_bwd(Tensor grad, Tensor logits, Tensor? a, Tensor? b, Tensor? lam, Tensor? dense, Tensor stats, "
        "float smoothing, int ignore_index, int reduction) -> Tensor");

  // Box masking (math: csrc/include/tricks/mask_boxes.h): value where a sample's (h, w) lies in
  // any of its boxes, int32 (B, K, 4) = (y0, y1, x0, x1); layout as mixup_apply. Linear in x:
  // the backward is the same op on the gradient with value 0.
  m.def("mask_boxes(Tensor x, Tensor box, float value, int height, int width, int inner) -> Tensor");
  m.def("mask_boxes_(Tensor(a!) x, Tensor box, float value, int height, int width, int inner) -> ()");

  // EvoNorm-S0 (math: csrc/include/tricks/evonorm.h) of x viewed as (N, C, P): NCHW contiguous
  // or channels_last (one spatial stride); v, weight, bias (C,) in the statistics dtype (fp32,
  // fp64 for fp64 x). Forward returns (y with x's strides, mean (N, G), rstd (N, G)); backward
  // returns (dx, partials (N, C, 3) = r A, r V, B) for the caller's deterministic sums over N.
  // split: chunks per group of the CUDA forward's split reduction, for N * G too small to fill
  // the GPU (0: chosen from the SM count; 1: off; ignored on CPU).
  m.def("evonorm_s0_fwd(Tensor x, Tensor v, Tensor weight, Tensor bias, int groups, float eps, int split) "
        "-> (Tensor, Tensor, Tensor)");
  m.def("evonorm_s0_bwd(Tensor dy, Tensor x, Tensor v, Tensor weight, Tensor mean, Tensor rstd, int groups, float eps) "
        "-> (Tensor, Tensor)");
}

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

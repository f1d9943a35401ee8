// Schema of the fused optimizer step (math: optim/math.h).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(tricks_ext, m) {
  // One optimizer step (clipping + GC + Adam/AdamW/RAdam + Lookahead + EMA) over tensors that
  // share a device and dtype, in place. `steps` already count this step; a non-zero `found_inf`
  // skips the step (the caller undoes its count). `slows` is empty without Lookahead, `emas`
  // without EMA. Grads are divided by `grad_scale`, clamped to +-`clip_value` (inf: off) and, on
  // the work items flagged for it, clipped by timm's AGC (`agc_factor`, `agc_eps`); the EMA
  // decay follows timm's ModelEmaV3.get_decay on each tensor's step. The kernels walk the
  // tensors through the caller's plan (tricks_ext/ops/optim.py, Plan), built once and cached:
  // `work` (int64 [n_items, 4]: tensor, start, length, flags) lists the items, a row or a chunk
  // of a tensor. `ptrs` (int64 [7, n]: param, grad, exp_avg, exp_avg_sq, slow, ema, step) is
  // the CUDA kernel's table of the same tensors, kept on the device; on CPU it must be None: the
  // kernel takes the addresses from the lists. Because the CUDA kernel writes through `ptrs`,
  // the op must see the tensors themselves: it is not for functionalized (compiled) graphs.
  m.def("optim_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(d!)[] slows, Tensor(e!)[] emas, Tensor[] steps, Tensor work, Tensor? ptrs, Tensor? found_inf, "
        "Tensor? grad_scale, float lr, float beta1, float beta2, float eps, float weight_decay, bool decoupled, "
        "float alpha, int lookahead_k, bool rectify, bool maximize, float clip_value, float agc_factor, "
        "float agc_eps, float ema_decay, float ema_min_decay, int ema_after, float ema_gamma, float ema_power, "
        "bool ema_warmup) -> ()");
  // The L2 norm of all the tensors together (float32 scalar), max_grad_norm's global norm: CPU
  // only (on GPUs torch's multi-tensor norm already reads the grads once at full bandwidth).
  m.def("optim_grad_norm(Tensor[] tensors) -> Tensor");
}

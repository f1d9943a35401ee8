// Schema of the fused optimizer step (math: optim/math.h).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(tricks_ext, m) {
  // One optimizer step (GC + Adam/AdamW/RAdam + Lookahead) over tensors that share a device and
  // dtype, in place. `steps` already count this step; a non-zero `found_inf` skips the step (the
  // caller undoes its count). `slows` is empty without Lookahead. The kernels walk the tensors
  // through the caller's plan (tricks_ext/ops/optim.py, Plan), built once and cached: `work`
  // (int64 [n_items, 4]: tensor, start, length, gc) lists the items, a GC row or a chunk of a
  // tensor. `ptrs` (int64 [6, n]: param, grad, exp_avg, exp_avg_sq, slow, step addresses) is
  // the CUDA kernel's table of the same tensors, kept on the device; on CPU it must be None: the
  // kernel takes the addresses from the lists. Because the CUDA kernel writes through `ptrs`,
  // the op must see the tensors themselves: it is not for functionalized (compiled) graphs.
  m.def("optim_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(d!)[] slows, Tensor[] steps, Tensor work, Tensor? ptrs, Tensor? found_inf, Tensor? grad_scale, "
        "float lr, float beta1, float beta2, float eps, float weight_decay, bool decoupled, float alpha, "
        "int lookahead_k, bool rectify, bool maximize) -> ()");
}

// Schema of SASA+'s fused step (math: sasa/math.h, spec: tricks_ext/reference/sasa.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(tricks_ext, m) {
  // statopt's QHM step in place on params (and bufs: empty for d = g), with the sums of SASA+'s
  // statistic per row of work (tensor, start, length): float64 [n_items, 2] = (<x_new, d>,
  // ||d||^2). lr: one float64 value on the params' device, read by the kernel. ptrs: int64 (3, n)
  // addresses of params, grads, bufs (0 without), for the device kernels; None on CPU.
  m.def("sasa_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] bufs, Tensor lr, Tensor work, Tensor? ptrs, "
        "float momentum, float qhm_nu, float weight_decay) -> Tensor");
}

// Every tricks_ext operator schema, and the Python module init of tricks_ext._C.
// Kernels register against these schemas per dispatch key in cpu/*.cpp and cuda/*.cpp;
// fake (meta) and autograd implementations are registered from Python (tricks_ext/ops).
#include <Python.h>
#include <torch/library.h>

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

  // Weight standardization over all dims but the first. `w` must be row-dense (each output
  // channel's elements contiguous in memory, any order inside: contiguous and channels_last
  // weights qualify); `gain` (per-channel multiplier, any scale folded in) is (O,) in the
  // statistics dtype (fp32, fp64 for fp64 weights).
  // Returns (w_hat, mean, rstd); mean/rstd are (O,) in the statistics dtype.
  m.def("weight_standardize_fwd(Tensor w, Tensor? gain, float eps) -> (Tensor, Tensor, Tensor)");
  // Returns (grad_w, grad_gain) where grad_gain[o] = sum_k grad_out * what (always (O,)).
  m.def("weight_standardize_bwd(Tensor grad_out, Tensor w, Tensor? gain, Tensor mean, Tensor rstd) -> (Tensor, Tensor)");

  // One optimizer step (GC + Adam/AdamW/RAdam + Lookahead) over tensors that share a device and
  // dtype, in place. `scalars` is float64 [n, 5] per tensor: step_size, inv_denom_scale, lr,
  // has_denom, lookahead sync (see csrc/include/tricks/optim.h). `slows` is empty without
  // Lookahead. gc_min_dim: 0 = no GC, else centralize grads with dim >= gc_min_dim.
  m.def("optim_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
        "Tensor(d!)[] slows, Tensor scalars, float beta1, float beta2, float eps, float weight_decay, "
        "bool decoupled, float alpha, int gc_min_dim, bool maximize, float grad_inv_scale) -> ()");
}

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

// Schemas of the optimizer's ops. optim_step_ is defined from its one declaration of arguments,
// tricks_ext/ops/optim.py (Hyperparams, SCHEMA); its kernels (cpu.cpp, cuda_binding.cpp) are
// registered here by name and checked against it when Python defines it.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(tricks_ext, m) {
  // The L2 norm of all the tensors together (float32 scalar), max_grad_norm's global norm: CPU
  // only (on GPUs torch's multi-tensor norm already reads the grads once at full bandwidth).
  m.def("optim_grad_norm(Tensor[] tensors) -> Tensor");
}

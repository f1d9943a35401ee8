// Schemas of weight standardization (math: weight_standardize/math.h).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(tricks_ext, m) {
  // Weight standardization over all dims but the first. `w` must be row-dense (each output
  // channel's elements contiguous in memory, any order inside: contiguous and channels_last
  // weights qualify); `gain` (per-channel multiplier, any scale folded in) is (O,) in the
  // statistics dtype (fp32, fp64 for fp64 weights).
  // Returns (w_hat, mean, rstd); mean/rstd are (O,) in the statistics dtype.
  m.def("weight_standardize_fwd(Tensor w, float eps, Tensor? gain) -> (Tensor, Tensor, Tensor)");
  // Returns (grad_w, grad_gain) where grad_gain[o] = sum_k grad_out * what (always (O,)).
  m.def("weight_standardize_bwd(Tensor grad_out, Tensor w, Tensor? gain, Tensor mean, Tensor rstd) -> (Tensor, Tensor)");
}

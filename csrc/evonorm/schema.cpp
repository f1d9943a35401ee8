// Schemas of EvoNorm-S0 (math: evonorm/math.h).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(tricks_ext, m) {
  // x viewed as (N, C, P): NCHW contiguous or channels_last (one spatial stride); v, weight,
  // bias (C,) in the statistics dtype (fp32, fp64 for fp64 x). Forward returns (y with x's
  // strides, mean (N, G), rstd (N, G)); backward returns (dx, partials (N, C, 3) = r A, r V, B)
  // for the caller's deterministic sums over N. split: chunks per group of the CUDA forward's
  // split reduction, for N * G too small to fill the GPU (0: chosen from the SM count; 1: off;
  // one pass per group on CPU, where it changes nothing).
  m.def("evonorm_s0_fwd(Tensor x, Tensor v, Tensor weight, Tensor bias, int groups, float eps, int split) "
        "-> (Tensor, Tensor, Tensor)");
  m.def("evonorm_s0_bwd(Tensor dy, Tensor x, Tensor v, Tensor weight, Tensor mean, Tensor rstd, int groups, float eps) "
        "-> (Tensor, Tensor)");
}

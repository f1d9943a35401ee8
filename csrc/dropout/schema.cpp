// Schemas of dropout with a regenerated mask (math: dropout/math.h), and the constants the
// Python fake kernels share with the C++ ones.
#include <torch/library.h>

#include <string>

#include "dropout/math.h"
#include "dropout/philox_cpu.h"

namespace {
// Elements per partial sum of the gate gradient in dropout_apply_bwd on a device type.
int64_t partial_elements(const std::string& device_type) {
  TORCH_CHECK(device_type == "cpu" || device_type == "cuda", "dropout_apply_bwd_partial_elements: device_type must be ",
              "'cpu' or 'cuda', got '", device_type, "'");
  return device_type == "cuda" ? tricks::dropout::kCudaPartialElements : tricks::dropout::kCpuPartialElements;
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(tricks_ext, m) {
  // Whether the CPU dropout kernels draw Philox with AVX2 (dropout/philox_cpu.h;
  // TRICKS_EXT_NO_AVX2=1 forces the portable path).
  m.def("_cpu_philox_avx2() -> bool", &tricks::dropout::keep_mask_uses_avx2);
  m.def("dropout_apply_bwd_partial_elements(str device_type) -> int", &partial_elements);

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
  // chunk of elements (dropout_apply_bwd_partial_elements; summed by the caller:
  // deterministic). Returns (dx, partials); partials is empty without x.
  m.def("dropout_apply_bwd(Tensor grad, Tensor? x, Tensor? gate, Tensor seed_offset, float p, float scale, int group) -> (Tensor, Tensor)");
}

// Schemas of the Mixup / CutMix mixing (math: mixup/math.h).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(tricks_ext, m) {
  // Mixing of a batch with its flip: coef fp32 (B, 2) = (a, b) per sample, box int32 (B, 4) =
  // (y0, y1, x0, x1) per sample; each sample of x is one dense block viewed as
  // [outer][height][width][inner]. The out-of-place op returns a tensor with x's layout;
  // mixup_apply_ mixes x in place.
  m.def("mixup_apply(Tensor x, Tensor coef, Tensor box, int height, int width, int inner) -> Tensor");
  m.def("mixup_apply_(Tensor(a!) x, Tensor coef, Tensor box, int height, int width, int inner) -> ()");
}

// Schemas of box masking (math: mask_boxes/math.h).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(tricks_ext, m) {
  // value where a sample's (h, w) lies in any of its boxes, int32 (B, K, 4) = (y0, y1, x0, x1);
  // layout as mixup_apply. Linear in x: the backward is the same op on the gradient with value 0.
  m.def("mask_boxes(Tensor x, Tensor box, float value, int height, int width, int inner) -> Tensor");
  m.def("mask_boxes_(Tensor(a!) x, Tensor box, float value, int height, int width, int inner) -> ()");
}

// Box masking (cutout, SpecAugment time/frequency masks, random erasing with a constant) shared
// by the CPU and CUDA kernels: out = value where (h, w) of a sample lies in any of its K boxes
// [y0, y1) x [x0, x1) over the last two dims, else x. Samples are viewed as
// [outer][height][width][inner] (see mixup/math.h). The backward is the same op on the
// gradient with value 0.
#pragma once

#include <cstdint>

#include "common/math.h"

namespace tricks {
namespace mask_boxes {

struct Params {
  const void* x;
  void* out;            // may equal x
  const int32_t* box;   // [batch][k][4]: y0, y1, x0, x1
  int64_t batch, boxes; // boxes per sample
  int64_t sample, height, width, inner;
  double value;
  DType dtype;
};

TRICKS_HD bool masked(const int32_t* box, int64_t k, int64_t h, int64_t w) {
  bool in = false;
  // a box's four bounds read before its tests: a short-circuit chain would wait for each load in turn
  for (int64_t b = 0; b < k; ++b, box += 4) {
    const int32_t h0 = box[0], h1 = box[1], w0 = box[2], w1 = box[3];
    in |= h >= h0 && h < h1 && w >= w0 && w < w1;
  }
  return in;
}

// Torch-free CUDA launchers (cuda.cu): each returns nullptr or the CUDA error.
const char* launch_cuda(const Params& q, void* stream);

}  // namespace mask_boxes
}  // namespace tricks

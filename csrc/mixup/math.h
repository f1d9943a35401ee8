// Mixup / CutMix mixing math shared by the CPU and CUDA kernels (timm `Mixup` semantics).
// Sample i's partner is j = B - 1 - i (timm's x.flip(0)). Each sample has a coefficient pair
// (a_i, b_i) and a box [y0, y1) x [x0, x1) over its last two (H, W) dims:
//   out_i = x_j                    inside the box (CutMix),
//         = x_i                    outside when b_i == 0 (CutMix outside its box, or lam == 1),
//         = a_i x_i + b_i x_j      otherwise (Mixup; a = fp32(lam), b = fp32(1 - lam) as timm
//                                  multiplies by them, and no FMA so the two products round as
//                                  timm's x * lam + x_flip * (1 - lam) does).
// A sample is viewed as [outer][H][W][inner] elements: contiguous NCHW has inner = 1, outer = C;
// channels_last has outer = 1, inner = C. A pair (i, j) is processed together (both read before
// either is written), so out may alias x (in-place mixing).
#pragma once

#include <cstdint>

#include "common/math.h"

namespace tricks {
namespace mixup {

struct Params {
  const void* x;
  void* out;           // may equal x
  const float* coef;   // [batch][2]: a, b
  const int32_t* box;  // [batch][4]: y0, y1, x0, x1 (empty box: y0 == y1)
  int64_t batch;
  int64_t sample;      // elements per sample = outer * height * width * inner
  int64_t height, width, inner;
  DType dtype;
};

TRICKS_HD bool in_box(const int32_t* box, int64_t h, int64_t w) {
  // all four bounds read before any test: a short-circuit chain would issue its loads one after
  // another, each waiting for the one before (a GPU memory round trip each)
  const int32_t h0 = box[0], h1 = box[1], w0 = box[2], w1 = box[3];
  return h >= h0 && h < h1 && w >= w0 && w < w1;
}

// Output of a sample outside its box: a * xi + b * xj with both products rounded (no FMA).
template <typename A>
TRICKS_HD A mix(A xi, A xj, float a, float b) {
  return b == 0.0f ? xi : add_rn(mul_rn(static_cast<A>(a), xi), mul_rn(static_cast<A>(b), xj));
}

// Torch-free CUDA launchers (cuda.cu): each returns nullptr or the CUDA error.
const char* launch_cuda(const Params& q, void* stream);

}  // namespace mixup
}  // namespace tricks

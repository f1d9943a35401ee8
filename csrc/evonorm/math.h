// EvoNorm-S0 math (arXiv 2004.02967; timm EvoNorm2dS0), shared by the CPU and CUDA kernels.
// Per sample n and group g over its M = (C/G) * P elements (P = spatial size):
//   mean, var = biased variance, r = 1 / sqrt(var + eps), s = sigmoid(v_c x)
//   The statistics are taken about the group's first element x0 (its pivot): shift = mean - x0
//   = sum (x - x0) / M, and every centred value is (x - x0) - shift. When |mean| >> std the
//   elements sit within a factor 2 of x0, so x - x0 is exact (Sterbenz) and the shift keeps all
//   of its bits, where x - mean with mean rounded to fp32 would lose ulp(mean) / std of them
//   (5 % at mean 1e4, std 1e-2). The saved "mean" is that shift; a constant group has var == 0.
//   forward:  y = weight_c * x * s * r + bias_c            (numerator not centred)
//   backward: A_nc = sum_p dy x s,  V_nc = sum_p dy x^2 s (1 - s),  B_nc = sum_p dy,
//             c_ng = (r / M) sum_{c in g} weight_c A_nc,
//             dx = r weight_c dy s (1 + v_c x (1 - s)) - r^2 c_ng (x - mean),  x - mean = centred(x, x0, shift)
//             per (n, c) partials r A_nc, r V_nc, B_nc (reduced over n by the caller, in a
//             fixed order: dweight = sum_n r A, dv = weight sum_n r V, dbias = sum_n B).
// Element (n, c, p) lives at n * stride_n + c * stride_c + p * stride_p: NCHW has
// stride_p = 1, channels_last has stride_c = 1 and stride_p = C.
#pragma once

#include <cstdint>

#include "common/math.h"

namespace tricks {
namespace evonorm {

struct Params {
  const void* x;
  void* y;               // forward output, x's layout
  const void* v;         // [C] acc_t
  const void* weight;    // [C] acc_t
  const void* bias;      // [C] acc_t (forward)
  void* mean;            // [N, G] acc_t: the shift, mean - x0 (written by forward, read by backward)
  void* rstd;            // [N, G] acc_t
  const void* dy;        // backward: x's layout
  void* dx;              // backward: x's layout
  void* partials;        // backward: [N, C, 3] acc_t: r A, r V, B
                         // split forward: [N * G, split, 3] acc_t: count, mean, M2 per chunk
  int64_t split;         // forward chunks per group (1: one block per group)
  int64_t batch, channels, groups, spatial;
  int64_t stride_n, stride_c, stride_p;
  double eps;
  DType dtype;
};

// Chan et al.'s pairwise combination of (count, mean, centred sum of squares) partials: the
// split forward reduces each chunk of a group in two passes, then merges the chunks.
template <typename A>
TRICKS_HD void merge_moments(A& n, A& mean, A& m2, A n2, A mean2, A m2b) {
  if (n2 == A(0)) return;
  const A total = n + n2, delta = mean2 - mean;
  mean += delta * (n2 / total);
  m2 += m2b + delta * delta * (n * n2 / total);
  n = total;
}

template <typename A>
TRICKS_HD A sigmoid_of(A z, A e) {  // e = exp(-z), computed by the caller's exp
  return A(1) / (A(1) + e);
}

template <typename A>
TRICKS_HD A forward(A x, A s, A r, A weight, A bias) {
  return weight * x * s * r + bias;
}

// x - mean, for mean = pivot + shift (see the top of this file).
template <typename A>
TRICKS_HD A centred(A x, A pivot, A shift) {
  return (x - pivot) - shift;
}

template <typename A>
TRICKS_HD A backward(A x, A dy, A s, A r, A weight, A v, A c_ng, A x_centred) {
  return r * weight * dy * s * (A(1) + v * x * (A(1) - s)) - r * r * c_ng * x_centred;
}

// Torch-free CUDA launchers (cuda.cu): each returns nullptr or the CUDA error.
// Forward; q.split > 1 runs the split reduction (q.partials: [N * G, split, 3] workspace).
const char* launch_fwd_cuda(const Params& q, void* stream);
// Chunks per group for the split forward on the current device (1: no split).
int64_t choose_split_cuda(int64_t groups_total, int64_t group_numel);
const char* launch_bwd_cuda(const Params& q, void* stream);

}  // namespace evonorm
}  // namespace tricks

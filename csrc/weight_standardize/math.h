// Weight standardization math, shared by the CPU and CUDA kernels.
//
// One row = one output channel o with K = prod(w.shape[1:]) elements.
//   forward:  what = (w - mean) * rstd,  rstd = 1 / sqrt(biased var + eps)
//             out  = what * a,           a = gain[o] (optional, default 1; a scale is folded
//                                        into gain by the caller)
//   backward: with go = dL/dout, S1 = sum_k go, S2 = sum_k go * what,
//             dw   = a * rstd * (go - S1 / K - what * S2 / K)
//             dgain[o] = S2
// Statistics are accumulated in acc_t (fp32, or fp64 for fp64 weights) with two passes over
// the row (sum, then centred sum of squares): rows are short enough to stay in cache, and the
// centred second pass avoids the cancellation of E[x^2] - E[x]^2 on weights with a large mean.
// The first pass sums x - x[0] (shifted data): a constant row then gets mean == x exactly and
// w_hat == 0, where an unshifted fp32 mean is off by an ulp that rstd = 1/sqrt(eps) = 1000
// amplifies to ~2e-4.
#pragma once

#include "common/math.h"

namespace tricks {
namespace ws {

struct Params {
  const void* w;       // [rows, K] row-dense (each row's K elements contiguous, any order)
  void* out;           // same layout as w
  const void* gain;    // [rows] acc_t or nullptr
  void* mean;          // [rows] acc_t
  void* rstd;          // [rows] acc_t
  int64_t rows;
  int64_t K;
  double eps;
  DType dtype;
};

struct BwdParams {
  const void* grad_out;  // [rows, K], same layout as w
  const void* w;
  const void* gain;      // [rows] acc_t or nullptr
  const void* mean;      // [rows] acc_t
  const void* rstd;      // [rows] acc_t
  void* grad_w;          // [rows, K]
  void* grad_gain;       // [rows] acc_t: S2
  int64_t rows;
  int64_t K;
  DType dtype;
};

template <typename A>
TRICKS_HD A mean_of(A sum, int64_t K) {
  return K > 0 ? sum / static_cast<A>(K) : A(0);
}

// mean from the sum of (x - pivot) over the row
template <typename A>
TRICKS_HD A shifted_mean(A pivot, A shifted_sum, int64_t K) {
  return K > 0 ? pivot + shifted_sum / static_cast<A>(K) : A(0);
}

template <typename A>
TRICKS_HD A rstd_of(A centred_sq_sum, int64_t K, A eps) {
  return rsqrt_acc(mean_of(centred_sq_sum, K) + eps);
}

template <typename A>
TRICKS_HD A gain_of(const A* gain, int64_t row) {
  return gain ? gain[row] : A(1);
}

template <typename A>
TRICKS_HD A forward(A x, A mean, A rstd, A a) {
  return (x - mean) * rstd * a;
}

// dw for one element given the row sums S1 = sum go and S2 = sum go * what.
template <typename A>
TRICKS_HD A backward(A go, A x, A mean, A rstd, A a, A s1_over_k, A s2_over_k) {
  const A what = (x - mean) * rstd;
  return a * rstd * (go - s1_over_k - what * s2_over_k);
}

// Torch-free CUDA launchers (cuda.cu): each returns nullptr or the CUDA error.
const char* launch_fwd_cuda(const Params& p, void* stream);
const char* launch_bwd_cuda(const BwdParams& p, void* stream);

}  // namespace ws
}  // namespace tricks

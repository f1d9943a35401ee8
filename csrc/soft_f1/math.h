// Soft F1 math shared by the CPU and CUDA kernels. The fused op computes, per class c over the
// N rows of logits z (N, C), the soft counts the loss needs:
//   sums[0][c] = sum_i t_ic p_ic,   sums[1][c] = sum_i p_ic,   sums[2][c] = sum_i t_ic,
// p = sigmoid(z) (multi_label) or softmax(z) over the row, t dense (N, C) or the one-hot of
// labels a (a label outside [0, C) makes its row's targets NaN: every sum becomes NaN, without a
// host sync). The F1 formula on these (C,) sums is plain tensor math (tricks_ext/ops/soft_f1.py).
// Backward, from g = dL/dsums (rows 0 and 1; the targets get no gradient):
//   dL/dp_ic = g0_c t_ic + g1_c;  dz = dp p (1 - p) (sigmoid), p (dp - sum_c dp_c p_c) (softmax).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/math.h"

namespace tricks {
namespace soft_f1 {

struct Params {
  const void* logits;   // (rows, classes), contiguous
  const int64_t* a;     // (rows,) labels, or nullptr
  const void* dense;    // (rows, classes) targets in the logits' dtype, or nullptr
  void* partial;        // forward: (chunks, 3, classes) acc_t per-chunk sums
  void* stats;          // forward, softmax: (rows, 2) acc_t shift, log_sum (written by the stats pass)
  const void* grad;     // backward: (3, classes) acc_t dL/dsums
  void* dlogits;        // backward: (rows, classes)
  int64_t rows, classes;
  int64_t chunk_rows;   // rows per chunk of the forward's column sums
  bool multi_label;     // sigmoid, else softmax over the row
  DType dtype;
};

// Rows summed by one chunk of the forward: about 64K elements (a column's running sums stay in
// a register or L1 over the chunk; the (chunks, 3, C) partials are then 1/20000 of the logits'
// size at C = 1000 fp32 and summed in a fixed order: deterministic).
inline int64_t chunk_rows(int64_t classes) {
  const int64_t r = (int64_t(1) << 16) / (classes > 0 ? classes : 1);
  return r < 1 ? 1 : r;
}

// t_ic of a row with label a: 1 at the label, NaN everywhere for a label out of range.
template <typename A>
TRICKS_HD A label_target_of(const Params& q, int64_t a, int64_t c) {
  if (a < 0 || a >= q.classes) return static_cast<A>(NAN);
  return c == a ? A(1) : A(0);
}


// log_sum of a softmax row from its max and log sum exp(z - shift): NaN for a row of +inf or
// all -inf (as soft_ce's row_log_sum, torch's softmax gives NaN there).
template <typename A>
TRICKS_HD A row_log_sum(A max, A log_sum) {
  return max == static_cast<A>(INFINITY) || max == -static_cast<A>(INFINITY) ? static_cast<A>(NAN) : log_sum;
}

// The shift of a softmax row: its max, 0 for a row that is all -inf or holds +inf (no inf - inf).
template <typename A>
TRICKS_HD A row_shift(A max) {
  return max == static_cast<A>(INFINITY) || max == -static_cast<A>(INFINITY) ? A(0) : max;
}

// Torch-free CUDA launchers (cuda.cu): each returns nullptr or the CUDA error.
const char* launch_fwd_cuda(const Params& q, void* stream);
const char* launch_bwd_cuda(const Params& q, void* stream);

}  // namespace soft_f1
}  // namespace tricks

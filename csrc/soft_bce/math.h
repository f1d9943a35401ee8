// Soft-target binary cross-entropy math shared by the CPU and CUDA kernels (timm
// BinaryCrossEntropy: torch binary_cross_entropy_with_logits on one-hot, mixed or dense targets).
// Per element (row i, class c) of logits z, target t (thresholded to 1 / 0 when a target_threshold is
// given) and per-class pos_weight p (1 without one), with lw = 1 + (p - 1) t:
//   loss = (1 - t) z + lw softplus(-z),   softplus(-z) = log1p(exp(-|z|)) + max(-z, 0)
//   dloss/dz = (1 - t) - lw sigmoid(-z)   (= lw sigmoid(z) - p t, torch's backward)
// Targets as in soft CE (soft_ce/math.h), never expanded for the compact forms:
//   mixed (a, b, lam): t = s/C + (1-s)(lam [c == a] + (1 - lam) [c == b])   (Mixup's label_smoothing s)
//   hard  (a):         the same with lam = 1 (timm's one-hot with label_smoothing s: off s/C, on 1-s+s/C)
//   dense (t):         any (N, C) tensor.
// Class weights w (C,), optional, multiply each element's loss and gradient by w_c (torch's
// weight= broadcast over the rows).
// A label outside [0, C) makes its row's losses and gradients NaN (no out-of-bounds read, no
// host sync). Reductions: 'mean' divides the sum of all N*C elements by N*C (torch's).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/math.h"
#include "soft_ce/math.h"

namespace tricks {
namespace soft_bce {

using soft_ce::Mode;
using soft_ce::RowTarget;

struct Params {
  const void* logits;      // (rows, classes), contiguous
  const int64_t* a;        // (rows,) labels (mixed, hard)
  const int64_t* b;        // (rows,) partner labels (mixed)
  const float* lam;        // (rows,) weight of a (mixed)
  const void* dense;       // (rows, classes) targets in the logits' dtype (dense)
  const void* pos_weight;  // (classes,) acc_t, or nullptr
  const void* weight;      // (classes,) acc_t class weights, or nullptr
  void* loss;              // forward: (rows, classes) in the logits' dtype when per_element, else (rows,) acc_t sums
  const void* grad;        // backward: (rows, classes) logits' dtype when per_element, else one acc_t value
  void* dlogits;           // backward: (rows, classes)
  int64_t rows, classes;
  double label_smoothing;        // taken in acc_t by the kernels
  double target_threshold;        // used when has_target_threshold: t = t > target_threshold
  bool has_target_threshold;
  bool per_element;        // reduction 'none'
  Mode mode;
  DType dtype;
  // CUDA: each row cut into `pieces` of `piece_classes` classes (row_pieces; 1 and classes on the
  // CPU); the forward's sums are then per piece, loss (rows, pieces)
  int64_t pieces, piece_classes;
};

// Classes per sweep of the CUDA row kernels (kBlock x kUnroll of cuda.cu).
constexpr int64_t kCudaSweep = 1024;

// The compact row's label weights (no ignore_index: timm's BCE has none).
template <typename A>
TRICKS_HD RowTarget<A> row_target(const Params& q, int64_t i) {
  return soft_ce::row_target<A, false>(q, i);
}

template <typename A>
TRICKS_HD A threshold_target(const Params& q, A t) {
  return q.has_target_threshold ? (t > static_cast<A>(q.target_threshold) ? A(1) : A(0)) : t;
}

// p_c: class c's positive weight, 1 without them.
template <typename A>
TRICKS_HD A pos_weight_of(const Params& q, int64_t c) {
  return q.pos_weight == nullptr ? A(1) : static_cast<const A*>(q.pos_weight)[c];
}

// lw = 1 + (p - 1) t, from p = pos_weight_of(q, c) (read apart, so that a kernel can load it with
// the class's other inputs)
template <typename A>
TRICKS_HD A log_weight(const Params& q, A p, A t) {
  return q.pos_weight == nullptr ? A(1) : A(1) + (p - A(1)) * t;
}

// w_c: class c's weight, 1 without class weights.
template <typename A>
TRICKS_HD A class_weight(const Params& q, int64_t c) {
  return q.weight == nullptr ? A(1) : static_cast<const A*>(q.weight)[c];
}

// loss and gradient of one element from e = exp(-|z|), l1p = log1p(e): the callers supply both
// (the CPU kernel from its vectorizable exp / log1p, the CUDA kernel from libdevice's).
template <typename A>
TRICKS_HD A element_loss(A z, A t, A lw, A l1p) {
  return (A(1) - t) * z + lw * (l1p + (z < A(0) ? -z : A(0)));
}

template <typename A>
TRICKS_HD A element_grad(A z, A t, A lw, A e) {
  const A sig_neg = z >= A(0) ? e / (A(1) + e) : A(1) / (A(1) + e);  // sigmoid(-z), no overflow
  return (A(1) - t) - lw * sig_neg;
}

// Torch-free CUDA launchers (cuda.cu): each returns nullptr or the CUDA error.
const char* launch_fwd_cuda(const Params& q, void* stream);
const char* launch_bwd_cuda(const Params& q, void* stream);

}  // namespace soft_bce
}  // namespace tricks

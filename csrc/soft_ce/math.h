// Soft-target cross-entropy math shared by the CPU and CUDA kernels.
// Per row i of logits z (C classes), lse_i = log sum_c exp(z_ic) (kept as shift + log_sum), and
//   loss_i = lse_i * T_i - sum_c t_ic z_ic,   dz_ic = g_i (exp(z_ic - lse_i) T_i - t_ic),
// T_i = sum_c t_ic. Targets come in three forms, never expanded for the compact two:
//   mixed  (a, b, lam): t_ic = s/C + (1-s)(lam_i [c == a_i] + (1 - lam_i) [c == b_i])   (T = 1)
//   hard   (a):         the same with lam = 1 (torch cross_entropy's label_smoothing); a row
//                       whose label is ignore_index has loss 0 and gradient 0
//   dense  (t):         any (N, C) tensor (timm SoftTargetCrossEntropy).
// Compact forms: sum_c t_ic z_ic = (1-s)(lam z_a + (1-lam) z_b) + (s/C) sum_c z_ic, so the forward
// needs only max, sum exp and sum z of the row. A label outside [0, C) (and not ignore_index)
// makes its row's loss and gradient NaN instead of reading out of bounds: visible without a
// host-device sync. A target weight of 0 takes no part in the loss (see weighted()), so rows
// with -inf logits give torch's value.
// Class weights w (C,), optional, scale every target: t_ic -> w_c t_ic (torch cross_entropy's
// weight=, label-smoothing term included). Then T_i = sum_c w_c t_ic is no longer 1 for the
// compact forms: (1-s)(lam w_a + (1-lam) w_b) + (s/C) sum_c w_c, and the forward sums w_c z_c
// where it summed z_c.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/math.h"

namespace tricks {
namespace soft_ce {

enum class Mode : int32_t { Dense = 0, Mixed = 1, Hard = 2 };

struct Params {
  const void* logits;    // (rows, classes), contiguous
  const int64_t* a;      // (rows,) labels (mixed, hard)
  const int64_t* b;      // (rows,) partner labels (mixed)
  const float* lam;      // (rows,) weight of a (mixed)
  const void* dense;     // (rows, classes) targets in the logits' dtype (dense)
  const void* weight;    // (classes,) class weights in acc_t, or nullptr
  void* loss;            // forward: (rows,) acc_t (fp32; fp64 for fp64 logits), like stats and grad
  void* stats;           // (rows, kStats): shift, log_sum, T (written by forward, read by backward)
  const void* grad;      // backward: dL/dloss_i acc_t, at grad[i * grad_stride]
  int64_t grad_stride;   // 1: one per row (reduction 'none'); 0: one for all rows (sum, mean)
  void* dlogits;         // backward: (rows, classes)
  int64_t rows, classes;
  double label_smoothing;      // taken in acc_t by the kernels (fp64 logits keep its full precision)
  int64_t ignore_index;
  Mode mode;
  DType dtype;
  // CUDA: each row cut into `pieces` of `piece_classes` classes (row_pieces; 1 and classes on the
  // CPU); with pieces > 1 the forward writes each piece's sums to parts, (rows, pieces, kParts)
  // acc_t, and a second kernel merges them
  int64_t pieces, piece_classes;
  void* parts;
};

// A piece's sums: max, sum exp(z - max), sum w z, sum w, sum w t, sum w t z.
constexpr int64_t kParts = 6;
// Classes per sweep of the CUDA row kernels (kBlock x kUnroll of cuda.cu).
constexpr int64_t kCudaSweep = 1024;

// Row-constant part of the compact targets: weights of a_i and b_i (in the accumulation type
// A: fp32, or fp64 for fp64 logits), and validity.
template <typename A>
struct RowTarget {
  int64_t a, b;
  A wa, wb;  // (1-s) lam and (1-s)(1-lam)
  bool ignored, invalid;
};

// Row i's compact targets from params P with mode, a, b, lam, label_smoothing and classes (the
// soft BCE's too: kIgnore false, it has no ignore_index).
template <typename A, bool kIgnore = true, typename P>
TRICKS_HD RowTarget<A> row_target(const P& q, int64_t i) {
  RowTarget<A> r{0, 0, A(0), A(0), false, false};
  if (q.mode == Mode::Dense) return r;
  r.a = q.a[i];
  const A keep = A(1) - static_cast<A>(q.label_smoothing);
  if (q.mode == Mode::Hard) {
    if constexpr (kIgnore) r.ignored = r.a == q.ignore_index;
    r.b = r.a;
    r.wa = keep;
  } else {
    const A lam = static_cast<A>(q.lam[i]);
    r.b = q.b[i];
    r.wa = keep * lam;
    r.wb = keep * (A(1) - lam);
  }
  r.invalid = !r.ignored && (r.a < 0 || r.a >= q.classes || r.b < 0 || r.b >= q.classes);
  return r;
}

// w * z where a zero weight contributes 0 even for z = -inf (a masked logit): torch's
// cross_entropy leaves out the classes a target does not weigh, so 0 * -inf must not make NaN.
template <typename A>
TRICKS_HD A weighted(A w, A z) {
  return w == A(0) ? A(0) : w * z;
}

// Per-row statistics saved for the backward: lse = shift + log_sum kept as its two parts, so
// that the backward's softmax, exp((z - shift) - log_sum), does not carry the rounding of lse
// (at |z| ~ 3e3 in fp32 that is 2.4e-4 absolute, a 1e-4 relative error on every probability).
constexpr int64_t kStats = 3;  // shift, log_sum, T

// log_sum of a row from its max and log sum exp(z - shift): NaN when the row holds +inf or is
// all -inf (torch's log_softmax gives inf - inf there), which also makes the backward's
// softmax NaN over the whole row, as torch's gradient is.
template <typename A>
TRICKS_HD A row_log_sum(A max, A log_sum) {
  return max == static_cast<A>(INFINITY) || max == -static_cast<A>(INFINITY) ? static_cast<A>(NAN) : log_sum;
}


// w_c: class c's weight, 1 without class weights.
template <typename A>
TRICKS_HD A class_weight(const Params& q, int64_t c) {
  return q.weight == nullptr ? A(1) : static_cast<const A*>(q.weight)[c];
}

// T_i of a compact row from sum_w = sum_c w_c: exactly 1 without class weights (or where the
// row's labels are not read: ignored or invalid).
template <typename A>
TRICKS_HD A compact_total(const Params& q, const RowTarget<A>& r, A sum_w) {
  if (q.weight == nullptr || r.ignored || r.invalid) return A(1);
  return r.wa * class_weight<A>(q, r.a) + r.wb * class_weight<A>(q, r.b) +
         static_cast<A>(q.label_smoothing) / A(q.classes) * sum_w;
}

// loss_i of a compact row from its lse, total T_i and sum_wz = sum_c w_c z_ic; load(c) reads
// z_ic (called only for a valid label: an out-of-range one must not be dereferenced).
template <typename A, typename Load>
TRICKS_HD A compact_loss(const Params& q, const RowTarget<A>& r, A lse, A total, A sum_wz, Load load) {
  if (r.ignored) return A(0);
  if (r.invalid) return static_cast<A>(NAN);
  return lse * total - (weighted(r.wa * class_weight<A>(q, r.a), load(r.a)) +
                        weighted(r.wb * class_weight<A>(q, r.b), load(r.b)) +
                        weighted(static_cast<A>(q.label_smoothing) / A(q.classes), sum_wz));
}

// t_ic of a compact row (before its class weight).
template <typename A>
TRICKS_HD A compact_target(const RowTarget<A>& r, int64_t c, A off) {
  return off + (c == r.a ? r.wa : A(0)) + (c == r.b ? r.wb : A(0));
}

// Torch-free CUDA launchers (cuda.cu): each returns nullptr or the CUDA error.
const char* launch_fwd_cuda(const Params& q, void* stream);
const char* launch_bwd_cuda(const Params& q, void* stream);

}  // namespace soft_ce
}  // namespace tricks

// Soft F1 sums, CPU: one task per chunk of rows (soft_f1/math.h's chunk_rows), each adding its
// rows into its own (3, C) partial sums in row order, so the result does not depend on the
// thread count. Each row's probabilities go to a buffer in L1 first (a softmax row: max, exp,
// sum, scale); the column loops vectorize (every load unconditional, the targets dense or a
// constant 0 with the label added apart).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "common/cpu_simd.h"
#include "common/register.h"
#include "soft_f1/prepare.h"

namespace tricks {
namespace soft_f1 {
namespace {

TRICKS_CPU_INLINE float exp_acc(float x) { return tricks::exp_cpu(x); }
TRICKS_CPU_INLINE double exp_acc(double x) { return std::exp(x); }

// 32 independent partial maxima and sums, so GCC vectorizes the reductions (soft_ce/cpu.cpp).
constexpr int kLanes = 32;

// The row's probabilities into p (C values, L1): sigmoid(z), or the softmax as exp(z - max)
// times the reciprocal of their sum. One loop per kind: a select between the two in one loop
// computed both exps.
template <typename T, typename A>
TRICKS_CPU_INLINE void row_probabilities(bool multi_label, const T* z, int64_t C, A* p) {
  if (multi_label) {
    for (int64_t c = 0; c < C; ++c) p[c] = A(1) / (A(1) + exp_acc(-static_cast<A>(z[c])));
    return;
  }
  const int64_t Cv = C - C % kLanes;
  A mx[kLanes], se[kLanes] = {};
  for (int l = 0; l < kLanes; ++l) mx[l] = -INFINITY;
  for (int64_t c = 0; c < Cv; c += kLanes)
    for (int l = 0; l < kLanes; ++l) mx[l] = static_cast<A>(z[c + l]) > mx[l] ? static_cast<A>(z[c + l]) : mx[l];
  A m = -INFINITY;
  for (int l = 0; l < kLanes; ++l) m = mx[l] > m ? mx[l] : m;
  for (int64_t c = Cv; c < C; ++c) m = static_cast<A>(z[c]) > m ? static_cast<A>(z[c]) : m;
  const A shift = row_shift(m);
  for (int64_t c = 0; c < C; ++c) p[c] = exp_acc(static_cast<A>(z[c]) - shift);
  for (int64_t c = 0; c < Cv; c += kLanes)
    for (int l = 0; l < kLanes; ++l) se[l] += p[c + l];
  A sum = 0;
  for (int l = 0; l < kLanes; ++l) sum += se[l];
  for (int64_t c = Cv; c < C; ++c) sum += p[c];
  // a row of +inf or all -inf: NaN everywhere, as torch's softmax (row_log_sum)
  const bool finite_max = m != static_cast<A>(INFINITY) && m != -static_cast<A>(INFINITY);
  const A scale = finite_max ? A(1) / sum : static_cast<A>(NAN);
  for (int64_t c = 0; c < C; ++c) p[c] *= scale;
}

template <typename T>
TRICKS_CPU_CLONES void fwd_chunk(const Params& q, int64_t chunk, acc_t<T>* p) {
  using A = acc_t<T>;
  const int64_t C = q.classes, r0 = chunk * q.chunk_rows, r1 = std::min(q.rows, r0 + q.chunk_rows);
  A* tp = static_cast<A*>(q.partial) + chunk * 3 * C;
  A* sp = tp + C;
  A* st = sp + C;
  for (int64_t i = r0; i < r1; ++i) {
    row_probabilities(q.multi_label, static_cast<const T*>(q.logits) + i * C, C, p);
    for (int64_t c = 0; c < C; ++c) sp[c] += p[c];
    if (q.dense != nullptr) {
      const T* t = static_cast<const T*>(q.dense) + i * C;
      for (int64_t c = 0; c < C; ++c) {
        tp[c] += static_cast<A>(t[c]) * p[c];
        st[c] += static_cast<A>(t[c]);
      }
      continue;
    }
    const int64_t a = q.a[i];
    if (a < 0 || a >= C) {  // NaN targets: every count of the chunk becomes NaN
      for (int64_t c = 0; c < C; ++c) {
        tp[c] += static_cast<A>(NAN);
        st[c] += static_cast<A>(NAN);
      }
      continue;
    }
    tp[a] += p[a];
    st[a] += A(1);
  }
}

// dL/dp of row i into dp (C values): g_tp t + g_sp, the targets dense or the label's one-hot
// (every element NaN for a label out of range). Written out per target kind: behind a lambda
// GCC compiled the per-element target out of line for the baseline ISA and the loops stayed
// scalar (docs/DESIGN.md, "CPU kernels").
template <typename T, typename A>
TRICKS_CPU_INLINE void row_dp(const Params& q, int64_t i, A* dp) {
  const int64_t C = q.classes;
  const A* g_tp = static_cast<const A*>(q.grad);
  const A* g_sp = g_tp + C;
  if (q.dense != nullptr) {
    const T* t = static_cast<const T*>(q.dense) + i * C;
    for (int64_t c = 0; c < C; ++c) dp[c] = g_tp[c] * static_cast<A>(t[c]) + g_sp[c];
    return;
  }
  for (int64_t c = 0; c < C; ++c) dp[c] = g_sp[c];
  const int64_t a = q.a[i];
  if (a < 0 || a >= C) {
    for (int64_t c = 0; c < C; ++c) dp[c] = static_cast<A>(NAN);
  } else {
    dp[a] += g_tp[a];
  }
}

template <typename T>
TRICKS_CPU_CLONES void bwd_rows(const Params& q, int64_t r0, int64_t r1, acc_t<T>* p, acc_t<T>* dp) {
  using A = acc_t<T>;
  const int64_t C = q.classes, Cv = C - C % kLanes;
  for (int64_t i = r0; i < r1; ++i) {
    T* dz = static_cast<T*>(q.dlogits) + i * C;
    row_probabilities(q.multi_label, static_cast<const T*>(q.logits) + i * C, C, p);
    row_dp<T>(q, i, dp);
    if (q.multi_label) {
      for (int64_t c = 0; c < C; ++c) dz[c] = static_cast<T>(dp[c] * p[c] * (A(1) - p[c]));
      continue;
    }
    A lanes[kLanes] = {};
    for (int64_t c = 0; c < Cv; c += kLanes)
      for (int l = 0; l < kLanes; ++l) lanes[l] += dp[c + l] * p[c + l];
    A dot = 0;
    for (int l = 0; l < kLanes; ++l) dot += lanes[l];
    for (int64_t c = Cv; c < C; ++c) dot += dp[c] * p[c];
    for (int64_t c = 0; c < C; ++c) dz[c] = static_cast<T>(p[c] * (dp[c] - dot));
  }
}

at::Tensor soft_f1_sums_cpu(const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                            const c10::optional<at::Tensor>& dense, bool multi_label) {
  auto f = prepare_fwd(logits, a, dense, multi_label);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "soft_f1_sums_cpu", [&] {
    at::parallel_for(0, f.partial.size(0), 1, [&](int64_t s, int64_t e) {
      std::vector<acc_t<scalar_t>> p(f.params.classes);  // one row's probabilities, in L1
      for (int64_t k = s; k < e; ++k) fwd_chunk<scalar_t>(f.params, k, p.data());
    });
  });
  return finish_fwd(f);
}

at::Tensor soft_f1_sums_bwd_cpu(const at::Tensor& grad, const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                                const c10::optional<at::Tensor>& dense, bool multi_label) {
  auto b = prepare_bwd(grad, logits, a, dense, multi_label);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "soft_f1_sums_bwd_cpu", [&] {
    at::parallel_for(0, b.params.rows, b.params.chunk_rows, [&](int64_t s, int64_t e) {
      std::vector<acc_t<scalar_t>> p(b.params.classes), dp(b.params.classes);  // one row's, in L1
      bwd_rows<scalar_t>(b.params, s, e, p.data(), dp.data());
    });
  });
  return b.dlogits;
}

}  // namespace
}  // namespace soft_f1
}  // namespace tricks

TRICKS_REGISTER(CPU, "soft_f1_sums", &tricks::soft_f1::soft_f1_sums_cpu,
                     "soft_f1_sums_bwd", &tricks::soft_f1::soft_f1_sums_bwd_cpu)

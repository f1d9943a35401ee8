// Soft-target cross-entropy, CPU: one task per block of rows; a row (4 KB at C = 1000 fp32) is
// read from memory once and revisited in L1: pass 1 max (+ sum z, and sum t, sum t z for dense
// targets), pass 2 sum exp(z - max). Reductions run in kLanes independent partial sums so GCC
// vectorizes them (a single float accumulator cannot be reordered without -ffast-math).
// Class weights are a template parameter kW: without them w is the constant 1 and every
// multiply by it folds away, so the unweighted loops are the ones measured before weights.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/register.h"

#include <cmath>

#include "common/cpu_simd.h"
#include "soft_ce/prepare.h"

namespace tricks {
namespace soft_ce {
namespace {

// 32 lanes (4 AVX2 vectors of independent sums): with 16, GCC keeps the max chain through
// memory and the forward is slower (benchmarks/NOTES.md, "Measurements behind code choices").
constexpr int kLanes = 32;

TRICKS_CPU_INLINE float exp_acc(float x) { return tricks::exp_cpu(x); }
TRICKS_CPU_INLINE double exp_acc(double x) { return std::exp(x); }

template <typename A>
TRICKS_CPU_INLINE A lane_sum(const A* v) {
  A s = 0;
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}

// w_c: the class weights' value, or the constant 1 (kW false).
template <bool kW, typename A>
TRICKS_CPU_INLINE A weight_of(const A* w, int64_t c) {
  if constexpr (kW) return w[c];
  return A(1);
}

template <typename T, bool kW>
TRICKS_CPU_CLONES void fwd_rows(const Params& q, int64_t r0, int64_t r1) {
  using A = acc_t<T>;
  const int64_t C = q.classes, Cv = C - C % kLanes;
  const A* w = static_cast<const A*>(q.weight);
  A sum_w = 0;  // sum_c w_c (compact totals): the row loop's invariant
  for (int64_t c = 0; kW && c < C; ++c) sum_w += w[c];
  for (int64_t i = r0; i < r1; ++i) {
    const T* z = static_cast<const T*>(q.logits) + i * C;
    const T* t = q.mode == Mode::Dense ? static_cast<const T*>(q.dense) + i * C : nullptr;
    // sz: sum_c w_c z_c
    A mx[kLanes], sz[kLanes] = {}, st[kLanes] = {}, stz[kLanes] = {}, se[kLanes] = {};
    for (int l = 0; l < kLanes; ++l) mx[l] = -INFINITY;
    for (int64_t c = 0; c < Cv; c += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        const A v = static_cast<A>(z[c + l]);
        mx[l] = v > mx[l] ? v : mx[l];
        sz[l] += kW ? weighted(weight_of<kW>(w, c + l), v) : v;
      }
    A m = -INFINITY, sum_z = lane_sum(sz);
    for (int l = 0; l < kLanes; ++l) m = mx[l] > m ? mx[l] : m;
    for (int64_t c = Cv; c < C; ++c) {
      const A v = static_cast<A>(z[c]);
      m = v > m ? v : m;
      sum_z += kW ? weighted(weight_of<kW>(w, c), v) : v;
    }
    if (t) {
      for (int64_t c = 0; c < Cv; c += kLanes)
        for (int l = 0; l < kLanes; ++l) {
          const A tv = static_cast<A>(t[c + l]) * weight_of<kW>(w, c + l);
          st[l] += tv;
          stz[l] += weighted(tv, static_cast<A>(z[c + l]));
        }
    }
    const A shift = std::isinf(m) ? A(0) : m;  // all -inf (or +inf) rows: no inf - inf
    for (int64_t c = 0; c < Cv; c += kLanes)
      for (int l = 0; l < kLanes; ++l) se[l] += exp_acc(static_cast<A>(z[c + l]) - shift);
    A sum_e = lane_sum(se);
    for (int64_t c = Cv; c < C; ++c) sum_e += exp_acc(static_cast<A>(z[c]) - shift);
    const A log_sum = row_log_sum(m, std::log(sum_e)), lse = shift + log_sum;
    A* loss = static_cast<A*>(q.loss);
    A* stats = static_cast<A*>(q.stats);
    A total;
    if (t) {
      A sum_t = lane_sum(st), sum_tz = lane_sum(stz);
      for (int64_t c = Cv; c < C; ++c) {
        const A tv = static_cast<A>(t[c]) * weight_of<kW>(w, c);
        sum_t += tv;
        sum_tz += weighted(tv, static_cast<A>(z[c]));
      }
      total = sum_t;
      loss[i] = lse * sum_t - sum_tz;
    } else {
      const RowTarget<A> r = row_target<A>(q, i);
      total = compact_total(q, r, sum_w);
      loss[i] = compact_loss(q, r, lse, total, sum_z, [z](int64_t c) { return static_cast<A>(z[c]); });
    }
    stats[kStats * i] = shift;
    stats[kStats * i + 1] = log_sum;
    stats[kStats * i + 2] = total;
  }
}

template <typename T, bool kW>
TRICKS_CPU_CLONES void bwd_rows(const Params& q, int64_t r0, int64_t r1) {
  using A = acc_t<T>;
  const int64_t C = q.classes;
  const A* w = static_cast<const A*>(q.weight);
  const A* stats = static_cast<const A*>(q.stats);
  for (int64_t i = r0; i < r1; ++i) {
    const T* z = static_cast<const T*>(q.logits) + i * C;
    T* dz = static_cast<T*>(q.dlogits) + i * C;
    const A g = static_cast<const A*>(q.grad)[i * q.grad_stride], shift = stats[kStats * i],
            log_sum = stats[kStats * i + 1], total = stats[kStats * i + 2];
    if (q.mode == Mode::Dense) {
      const T* t = static_cast<const T*>(q.dense) + i * C;
      for (int64_t c = 0; c < C; ++c)
        dz[c] = static_cast<T>(g * (exp_acc((static_cast<A>(z[c]) - shift) - log_sum) * total -
                                    weight_of<kW>(w, c) * static_cast<A>(t[c])));
      continue;
    }
    const RowTarget<A> r = row_target<A>(q, i);
    if (r.ignored || r.invalid) {
      const T fill = static_cast<T>(r.ignored ? A(0) : A(NAN));
      for (int64_t c = 0; c < C; ++c) dz[c] = fill;
      continue;
    }
    // exp_acc written out in each loop: behind a lambda GCC calls it instead of inlining it
    // into the ISA clones, and the loop does not vectorize. Without class weights T = 1.
    const A off = static_cast<A>(q.label_smoothing) / static_cast<A>(C), scale = kW ? total : A(1);
    for (int64_t c = 0; c < C; ++c)
      dz[c] = static_cast<T>(g * (exp_acc((static_cast<A>(z[c]) - shift) - log_sum) * scale - weight_of<kW>(w, c) * off));
    for (const int64_t c : {r.a, r.b})  // the two labelled classes, recomputed whole (one rounding)
      dz[c] = static_cast<T>(g * (exp_acc((static_cast<A>(z[c]) - shift) - log_sum) * scale -
                                  weight_of<kW>(w, c) * compact_target(r, c, off)));
  }
}

int64_t grain(const Params& q) {
  return std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(q.classes, 1));  // >= 16K elements per task
}

std::tuple<at::Tensor, at::Tensor> soft_ce_fwd_cpu(const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                                                   const c10::optional<at::Tensor>& b,
                                                   const c10::optional<at::Tensor>& lam,
                                                   const c10::optional<at::Tensor>& dense,
                                                   const c10::optional<at::Tensor>& weight, double label_smoothing,
                                                   int64_t ignore_index, int64_t reduction) {
  auto f = prepare_fwd(logits, a, b, lam, dense, weight, label_smoothing, ignore_index, reduction);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "soft_ce_fwd_cpu", [&] {
    at::parallel_for(0, f.params.rows, grain(f.params), [&](int64_t s, int64_t e) {
      if (f.params.weight) fwd_rows<scalar_t, true>(f.params, s, e);
      else fwd_rows<scalar_t, false>(f.params, s, e);
    });
  });
  return {finish_fwd(f, logits, a, weight, reduction), f.stats};
}

at::Tensor soft_ce_bwd_cpu(const at::Tensor& grad, const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                           const c10::optional<at::Tensor>& b, const c10::optional<at::Tensor>& lam,
                           const c10::optional<at::Tensor>& dense, const c10::optional<at::Tensor>& weight,
                           const at::Tensor& stats, double label_smoothing, int64_t ignore_index, int64_t reduction) {
  auto r = prepare_bwd(grad, logits, a, b, lam, dense, weight, stats, label_smoothing, ignore_index, reduction);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "soft_ce_bwd_cpu", [&] {
    at::parallel_for(0, r.params.rows, grain(r.params), [&](int64_t s, int64_t e) {
      if (r.params.weight) bwd_rows<scalar_t, true>(r.params, s, e);
      else bwd_rows<scalar_t, false>(r.params, s, e);
    });
  });
  return r.dlogits;
}

}  // namespace
}  // namespace soft_ce
}  // namespace tricks

TRICKS_REGISTER(CPU, "soft_ce_fwd", &tricks::soft_ce::soft_ce_fwd_cpu,
                     "soft_ce_bwd", &tricks::soft_ce::soft_ce_bwd_cpu)

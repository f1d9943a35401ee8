// Soft-target binary cross-entropy, CPU: one task per block of rows, each row one pass over its
// classes in kLanes-wide steps that GCC vectorizes (exp and log1p inlined from cpu_simd.h, the
// compact target as two compares per element); the forward sums a row in kLanes partial sums.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/register.h"

#include <cmath>
#include <type_traits>

#include "common/cpu_simd.h"
#include "soft_bce/prepare.h"

namespace tricks {
namespace soft_bce {
namespace {

constexpr int kLanes = 16;
constexpr int64_t kChunk = 512;  // classes per buffered chunk of the reduced forward (2 KB of fp32)

TRICKS_CPU_INLINE float exp_acc(float x) { return tricks::exp_cpu(x); }
TRICKS_CPU_INLINE double exp_acc(double x) { return std::exp(x); }
TRICKS_CPU_INLINE float log1p_acc(float x) { return tricks::log1p_cpu(x); }
TRICKS_CPU_INLINE double log1p_acc(double x) { return std::log1p(x); }

// The inner loops vectorize because every load in them is unconditional and every choice a
// select: dense or compact targets are a template parameter; a compact row runs the whole row
// at its off-label target (a constant) and then recomputes the one or two labelled classes
// (mixing int64 label compares into fp32 lanes kept GCC from vectorizing: 4.3 ms -> see
// benchmarks/NOTES.md); pos_weight is always an array (ones when none is given); the class
// weights are a template parameter, so the unweighted loops read no second array of C values
// (at C = 131072 fp32, 512 KB beside each row); an invalid row is filled apart.
// The target_threshold as values, not read through Params in the loops: a store to the output may
// alias Params for all GCC knows, so it would reload them on every element and not vectorize.
// Whether a dense target is thresholded is a template parameter as well: as a run-time
// `on ? step : t` GCC kept a scalar select in the loop and left every dense loop scalar
// (256 x 1000 fp32, one thread: forward 4.05 ms and backward 1.87 ms against the compact
// targets' 0.29 and 0.15).
template <typename A>
struct Threshold {
  bool on;
  A at;
  explicit Threshold(const Params& q) : on(q.has_target_threshold), at(static_cast<A>(q.target_threshold)) {}
};

enum class Targets { Compact, Dense, DenseStep };  // DenseStep: dense, thresholded

template <Targets kT, typename A>
TRICKS_CPU_INLINE A dense_target(const Threshold<A>& th, A t) {
  if constexpr (kT == Targets::DenseStep) return t > th.at ? A(1) : A(0);
  return t;
}

// The run-time form, for the per-row values of compact targets (outside the loops).
template <typename A>
TRICKS_CPU_INLINE A thresholded(const Threshold<A>& th, A t) {
  return th.on ? dense_target<Targets::DenseStep>(th, t) : t;
}

// The per-class arrays the loops read: pos_weight, and the class weights when kW.
template <typename A, bool kW>
struct ClassArrays {
  const A* pw;
  const A* w;
};

template <typename A, bool kW>
TRICKS_CPU_INLINE A class_weighted(const ClassArrays<A, kW>& k, int64_t c, A x) {
  if constexpr (kW) return k.w[c] * x;
  return x;
}

template <typename A, bool kW, typename T>
TRICKS_CPU_INLINE A loss_of(const T* z, const ClassArrays<A, kW>& k, int64_t c, A t) {
  const A v = static_cast<A>(z[c]);
  return class_weighted(k, c, element_loss(v, t, A(1) + (k.pw[c] - A(1)) * t, log1p_acc(exp_acc(v < A(0) ? v : -v))));
}

template <typename A, bool kW, typename T>
TRICKS_CPU_INLINE A grad_of(const T* z, const ClassArrays<A, kW>& k, int64_t c, A t) {
  const A v = static_cast<A>(z[c]);
  return class_weighted(k, c, element_grad(v, t, A(1) + (k.pw[c] - A(1)) * t, exp_acc(v < A(0) ? v : -v)));
}

// The one or two labelled classes of a compact row, with their targets (b = -1 when b == a).
template <typename A>
struct Labelled {
  int64_t a, b;
  A ta, tb;
};

template <typename A>
TRICKS_CPU_INLINE Labelled<A> labelled(const Threshold<A>& th, const RowTarget<A>& r, A off) {
  const bool same = r.b == r.a;
  return {r.a, same ? -1 : r.b, thresholded(th, off + r.wa + (same ? r.wb : A(0))), thresholded(th, off + r.wb)};
}

template <typename T, Targets kT, bool kW>
TRICKS_CPU_CLONES void fwd_rows(const Params& q, int64_t r0, int64_t r1) {
  using A = acc_t<T>;
  constexpr bool kDense = kT != Targets::Compact;
  const int64_t C = q.classes;
  const Threshold<A> th(q);
  const A off = static_cast<A>(q.label_smoothing) / static_cast<A>(C), t_off = thresholded(th, off);
  const ClassArrays<A, kW> cls{static_cast<const A*>(q.pos_weight), static_cast<const A*>(q.weight)};
  A buf[kChunk];
  for (int64_t i = r0; i < r1; ++i) {
    const T* z = static_cast<const T*>(q.logits) + i * C;
    const T* t = kDense ? static_cast<const T*>(q.dense) + i * C : nullptr;
    const RowTarget<A> r = row_target<A>(q, i);
    if (q.per_element) {
      T* out = static_cast<T*>(q.loss) + i * C;
      if (r.invalid) {
        for (int64_t c = 0; c < C; ++c) out[c] = static_cast<T>(A(NAN));
      } else if constexpr (kDense) {
        for (int64_t c = 0; c < C; ++c) out[c] = static_cast<T>(loss_of(z, cls, c,
                                                                        dense_target<kT>(th, static_cast<A>(t[c]))));
      } else {
        for (int64_t c = 0; c < C; ++c) out[c] = static_cast<T>(loss_of(z, cls, c, t_off));
        const Labelled<A> l = labelled(th, r, off);
        out[l.a] = static_cast<T>(loss_of(z, cls, l.a, l.ta));
        if (l.b >= 0) out[l.b] = static_cast<T>(loss_of(z, cls, l.b, l.tb));
      }
      continue;
    }
    // A chunk's losses into a buffer, then summed in kLanes partial sums (computed and summed
    // in one loop, GCC vectorized neither).
    A lanes[kLanes] = {};
    for (int64_t c0 = 0; c0 < C; c0 += kChunk) {
      const int64_t n = std::min<int64_t>(kChunk, C - c0), nv = n - n % kLanes;
      if constexpr (kDense) {
        for (int64_t c = 0; c < n; ++c) buf[c] = loss_of(z, cls, c0 + c, dense_target<kT>(th, static_cast<A>(t[c0 + c])));
      } else {
        for (int64_t c = 0; c < n; ++c) buf[c] = loss_of(z, cls, c0 + c, t_off);
      }
      for (int64_t c = 0; c < nv; c += kLanes)
        for (int k = 0; k < kLanes; ++k) lanes[k] += buf[c + k];
      for (int64_t c = nv; c < n; ++c) lanes[c % kLanes] += buf[c];
    }
    A sum = 0;
    for (int k = 0; k < kLanes; ++k) sum += lanes[k];
    if (!kDense && !r.invalid) {  // the labelled classes at their own targets
      const Labelled<A> l = labelled(th, r, off);
      sum += loss_of(z, cls, l.a, l.ta) - loss_of(z, cls, l.a, t_off);
      if (l.b >= 0) sum += loss_of(z, cls, l.b, l.tb) - loss_of(z, cls, l.b, t_off);
    }
    static_cast<A*>(q.loss)[i] = r.invalid ? A(NAN) : sum;
  }
}

template <typename T, Targets kT, bool kW>
TRICKS_CPU_CLONES void bwd_rows(const Params& q, int64_t r0, int64_t r1) {
  using A = acc_t<T>;
  constexpr bool kDense = kT != Targets::Compact;
  const int64_t C = q.classes;
  const Threshold<A> th(q);
  const A off = static_cast<A>(q.label_smoothing) / static_cast<A>(C), t_off = thresholded(th, off);
  const ClassArrays<A, kW> cls{static_cast<const A*>(q.pos_weight), static_cast<const A*>(q.weight)};
  const A g = q.per_element ? A(1) : *static_cast<const A*>(q.grad);
  for (int64_t i = r0; i < r1; ++i) {
    const T* z = static_cast<const T*>(q.logits) + i * C;
    const T* t = kDense ? static_cast<const T*>(q.dense) + i * C : nullptr;
    const T* ge = q.per_element ? static_cast<const T*>(q.grad) + i * C : nullptr;
    T* dz = static_cast<T*>(q.dlogits) + i * C;
    const RowTarget<A> r = row_target<A>(q, i);
    if (r.invalid) {
      for (int64_t c = 0; c < C; ++c) dz[c] = static_cast<T>(A(NAN));
      continue;
    }
    auto scale = [&](int64_t c) { return ge != nullptr ? static_cast<A>(ge[c]) : g; };
    if constexpr (kDense) {
      if (ge != nullptr) {
        for (int64_t c = 0; c < C; ++c)
          dz[c] = static_cast<T>(static_cast<A>(ge[c]) * grad_of(z, cls, c, dense_target<kT>(th, static_cast<A>(t[c]))));
      } else {
        for (int64_t c = 0; c < C; ++c) dz[c] = static_cast<T>(g * grad_of(z, cls, c, dense_target<kT>(th, static_cast<A>(t[c]))));
      }
    } else {
      if (ge != nullptr) {
        for (int64_t c = 0; c < C; ++c) dz[c] = static_cast<T>(static_cast<A>(ge[c]) * grad_of(z, cls, c, t_off));
      } else {
        for (int64_t c = 0; c < C; ++c) dz[c] = static_cast<T>(g * grad_of(z, cls, c, t_off));
      }
      const Labelled<A> l = labelled(th, r, off);
      dz[l.a] = static_cast<T>(scale(l.a) * grad_of(z, cls, l.a, l.ta));
      if (l.b >= 0) dz[l.b] = static_cast<T>(scale(l.b) * grad_of(z, cls, l.b, l.tb));
    }
  }
}

// The CPU loops read pos_weight unconditionally: ones when the user gives none (C values).
at::Tensor ones_if_absent(Params& q, const at::Tensor& logits) {
  at::Tensor ones;
  if (q.pos_weight == nullptr) {
    ones = at::ones({q.classes}, logits.options().dtype(stats_dtype(logits)));
    q.pos_weight = ones.data_ptr();
  }
  return ones;
}

// body(kT, first row, end row) on blocks of >= 16K elements, kT the targets' kind as a type
template <typename F>
void for_rows(const Params& q, F&& body) {
  const Targets kind = q.mode != Mode::Dense ? Targets::Compact : q.has_target_threshold ? Targets::DenseStep : Targets::Dense;
  at::parallel_for(0, q.rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(q.classes, 1)),
                   [&](int64_t s, int64_t e) {
                     switch (kind) {
                       case Targets::Compact: return body(std::integral_constant<Targets, Targets::Compact>{}, s, e);
                       case Targets::Dense: return body(std::integral_constant<Targets, Targets::Dense>{}, s, e);
                       case Targets::DenseStep: return body(std::integral_constant<Targets, Targets::DenseStep>{}, s, e);
                     }
                   });
}

at::Tensor soft_bce_fwd_cpu(const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                            const c10::optional<at::Tensor>& b, const c10::optional<at::Tensor>& lam,
                            const c10::optional<at::Tensor>& dense, const c10::optional<at::Tensor>& pos_weight,
                            const c10::optional<at::Tensor>& weight,
                            double label_smoothing, c10::optional<double> target_threshold, int64_t reduction) {
  auto f = prepare_fwd(logits, a, b, lam, dense, pos_weight, weight, label_smoothing, target_threshold, reduction);
  const at::Tensor ones = ones_if_absent(f.params, logits);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "soft_bce_fwd_cpu", [&] {
    for_rows(f.params, [&](auto kT, int64_t s, int64_t e) {
      if (f.params.weight != nullptr) fwd_rows<scalar_t, decltype(kT)::value, true>(f.params, s, e);
      else fwd_rows<scalar_t, decltype(kT)::value, false>(f.params, s, e);
    });
  });
  return finish_fwd(f, logits, reduction);
}

at::Tensor soft_bce_bwd_cpu(const at::Tensor& grad, const at::Tensor& logits, const c10::optional<at::Tensor>& a,
                            const c10::optional<at::Tensor>& b, const c10::optional<at::Tensor>& lam,
                            const c10::optional<at::Tensor>& dense, const c10::optional<at::Tensor>& pos_weight,
                            const c10::optional<at::Tensor>& weight,
                            double label_smoothing, c10::optional<double> target_threshold, int64_t reduction) {
  auto r = prepare_bwd(grad, logits, a, b, lam, dense, pos_weight, weight,
                       label_smoothing, target_threshold, reduction);
  const at::Tensor ones = ones_if_absent(r.params, logits);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "soft_bce_bwd_cpu", [&] {
    for_rows(r.params, [&](auto kT, int64_t s, int64_t e) {
      if (r.params.weight != nullptr) bwd_rows<scalar_t, decltype(kT)::value, true>(r.params, s, e);
      else bwd_rows<scalar_t, decltype(kT)::value, false>(r.params, s, e);
    });
  });
  return r.dlogits;
}

}  // namespace
}  // namespace soft_bce
}  // namespace tricks

TRICKS_REGISTER(CPU, "soft_bce_fwd", &tricks::soft_bce::soft_bce_fwd_cpu,
                     "soft_bce_bwd", &tricks::soft_bce::soft_bce_bwd_cpu)

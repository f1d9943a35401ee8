// Fused optimizer step, CPU: one at::parallel_for over a work list covering every tensor.
// A work item is one row (its GC mean and AGC norms are taken while the row is in cache, then
// the update sweeps it again from L1/L2, so they add no second pass over g from DRAM) or a
// chunk of a tensor; the caller plans the list (tricks_ext/ops/optim.py, Plan). Consecutive items are grouped into tasks of >= kTask elements and
// threads get equal task counts, so they get about equal element counts although rows range
// from 9 (depthwise) to thousands of elements.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/register.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/cpu_simd.h"
#include "common/cpu_tasks.h"
#include "optim/prepare.h"

namespace tricks {
namespace optim {
namespace {

constexpr int64_t kTask = 1 << 16;   // elements per parallel task

// One row of the plan's work list (int64 [n_items, 4]), read in place.
struct Item {
  int64_t tensor, begin, len, flags;
};
static_assert(sizeof(Item) == 4 * sizeof(int64_t), "Item must match a work-list row");

// A sum over one row in kLanes partial sums (4 AVX-512 or 8 AVX2 accumulators), the tail into
// the first 8, then a pairwise fold. With one 8-wide accumulator the GC mean pass was bound by
// the add latency: GC cost 20-35 % of a step (rows of 576 to 4,608 fp32) on an AVX-512 Xeon,
// 12-17 % with 64 lanes.
constexpr int kLanes = 64;

template <typename A, typename F>
TRICKS_CPU_INLINE A lane_sum(int64_t len, const F& term) {
  A part[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= len; k += kLanes)
    for (int j = 0; j < kLanes; ++j) part[j] += term(k + j);
  for (; k + 8 <= len; k += 8)
    for (int j = 0; j < 8; ++j) part[j] += term(k + j);
  for (; k < len; ++k) part[0] += term(k);
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) part[j] += part[j + w];
  return part[0];
}

// The terms of the row sums. Functors with always-inline calls, not lambdas: GCC left lambdas
// of this file out of line, where they are compiled for the baseline ISA, not the caller's
// AVX-512 / AVX2 clone (a ResNet-50 Ranger step took 8x as long).
template <typename A, typename T>
struct Value {
  const T* x;
  TRICKS_CPU_INLINE A operator()(int64_t k) const { return load_as<A>(x, k); }
};
template <typename A, typename T>
struct Square {
  const T* x;
  TRICKS_CPU_INLINE A operator()(int64_t k) const {
    const A v = load_as<A>(x, k);
    return v * v;
  }
};
// The unscaled grad, clamped by clip_value (+inf: not clamped); squared for AGC's norm.
template <typename A, typename T, bool Squared>
struct Clipped {
  const T* g;
  A gmul, clip;
  TRICKS_CPU_INLINE A operator()(int64_t k) const {
    const A v = clip_to(load_as<A>(g, k) * gmul, clip);
    return Squared ? v * v : v;
  }
};

// The mean pass reads a row from DRAM as one stream that nothing overlaps; prefetching the first
// kPrefetchLines of the next row before this item's sweep starts that stream under the sweep's
// (GC's share of a ResNet-50 step 17 -> 11 %; prefetching whole rows of 4,608 was no better).
constexpr int64_t kPrefetchLines = 32;

template <typename T>
TRICKS_CPU_INLINE void prefetch_row(const Item& it, const Params& q) {
  const char* row = static_cast<const char*>(q.g[it.tensor]) + it.begin * static_cast<int64_t>(sizeof(T));
  const int64_t bytes = std::min<int64_t>(it.len * static_cast<int64_t>(sizeof(T)), kPrefetchLines * 64);
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(row + b, 0, 3);
}

// The update sweep of one item, its per-item values resolved (GC mean, AGC factor folded into
// gmul and clip). A struct with a template member rather than a generic lambda, for the reason
// given at Value.
template <typename T, typename S>
struct Sweep {
  using A = acc_t<T>;
  T* p;
  const T* g;
  A* m;
  A* v;
  S* slow;
  A* ema;
  int64_t len;
  A gmul, clip, mean, eps, alpha;
  Moments<A> b;
  Decay<A> d;
  Scalars<A> s;

  template <bool kDenom, bool kSync, bool kEma>
  TRICKS_CPU_INLINE void run() const {
    loop<kDenom, kSync, kEma>(p, g, m, v, slow, ema, *this);
  }

  // The pointers as restrict parameters: GCC does not take __restrict__ from local variables
  // here, so it versioned the loop for aliasing, and with six arrays (Lookahead sync + EMA) the
  // pair checks passed its limit (vect-max-version-for-alias-checks = 10): that variant ran
  // scalar, 118 ms per ResNet-50 step instead of 37.
  template <bool kDenom, bool kSync, bool kEma>
  TRICKS_CPU_INLINE static void loop(T* __restrict__ pp, const T* __restrict__ gp, A* __restrict__ mp,
                                     A* __restrict__ vp, S* __restrict__ sp, A* __restrict__ ep, const Sweep& w) {
    // locals: through the struct, the stores to m/v could alias every field
    const int64_t n = w.len;
    const A gm = w.gmul, c = w.clip, mu = w.mean, e = w.eps, al = w.alpha;
    const Moments<A> bb = w.b;
    const Decay<A> dd = w.d;
    const Scalars<A> ss = w.s;
    for (int64_t k = 0; k < n; ++k) {
      A mk = mp[k], vk = vp[k];
      A pk = update<kDenom>(load_as<A>(pp, k), clip_to(load_as<A>(gp, k) * gm, c) - mu, mk, vk, bb, e, dd,
                            ss.step_size, ss.inv_denom_scale);
      mp[k] = mk;
      vp[k] = vk;
      if constexpr (kSync) {
        pk = lookahead(pk, load_as<A>(sp, k), al);
        store_rounded(sp, k, pk);
      }
      const A stored = store_rounded(pp, k, pk);
      if constexpr (kEma) ep[k] = ema_lerp(ep[k], stored, ss.ema_w, ss.ema_1mw);
    }
  }

  template <bool kDenom, bool kSync>
  TRICKS_CPU_INLINE void run_ema() const {
    if (ema) run<kDenom, kSync, true>(); else run<kDenom, kSync, false>();
  }
};

template <typename T, typename S>
TRICKS_CPU_INLINE void run_item(const Item& it, const Params& q, const Scalars<acc_t<T>>& scalars) {
  using A = acc_t<T>;
  const int64_t i = it.tensor;
  Sweep<T, S> w;
  w.p = static_cast<T*>(q.p[i]) + it.begin;
  w.g = static_cast<const T*>(q.g[i]) + it.begin;
  w.m = static_cast<A*>(q.m[i]) + it.begin;
  w.v = static_cast<A*>(q.v[i]) + it.begin;
  w.slow = q.s ? static_cast<S*>(q.s[i]) + it.begin : nullptr;
  w.ema = q.e ? static_cast<A*>(q.e[i]) + it.begin : nullptr;
  w.len = it.len;
  w.eps = static_cast<A>(q.eps);
  w.alpha = static_cast<A>(q.lookahead_alpha);
  w.b = moments_of<A>(q);
  w.d = decay_of<A>(q);
  w.s = scalars;
  const A inv_scale = q.grad_scale ? A(1) / static_cast<A>(*q.grad_scale) : A(1);
  const A gmul = q.maximize ? -inv_scale : inv_scale;
  const A clip = (it.flags & kPrepared) ? A(INFINITY) : static_cast<A>(q.clip_value);
  // AGC scales the row by f > 0, which commutes with the clamp: clip_to(x f, c f) = f clip_to(x, c)
  A f = A(1);
  if (it.flags & kAgcRow) {
    const A gn = std::sqrt(lane_sum<A>(it.len, Clipped<A, T, true>{w.g, gmul, clip}));
    const A pn = std::sqrt(lane_sum<A>(it.len, Square<A, T>{w.p}));
    f = agc_scale(gn, pn, static_cast<A>(q.agc_clip_factor), static_cast<A>(q.agc_eps));
  }
  w.mean = A(0);
  if (it.flags & kGcRow) {
    const A sum = std::isinf(clip) ? lane_sum<A>(it.len, Value<A, T>{w.g}) * gmul
                                   : lane_sum<A>(it.len, Clipped<A, T, false>{w.g, gmul, clip});
    w.mean = sum * f / static_cast<A>(it.len);
  }
  w.gmul = gmul * f;
  w.clip = clip * f;
  if (w.s.has_denom) {
    if (w.s.sync) w.template run_ema<true, true>(); else w.template run_ema<true, false>();
  } else {
    if (w.s.sync) w.template run_ema<false, true>(); else w.template run_ema<false, false>();
  }
}

template <typename T, typename S>
TRICKS_CPU_CLONES void run_items(const Item* items, int64_t begin, int64_t end, const Params& q,
                                 const Scalars<acc_t<T>>* scalars) {
  for (int64_t j = begin; j < end; ++j) {
    if (j + 1 < end && (items[j + 1].flags & (kGcRow | kAgcRow))) prefetch_row<T>(items[j + 1], q);
    run_item<T, S>(items[j], q, scalars[items[j].tensor]);
  }
}

void optim_step_cpu(TRICKS_OPTIM_TENSOR_ARGS TRICKS_OPTIM_ARGS) {
  const int64_t n = static_cast<int64_t>(params.size());
  if (n == 0) return;
  const c10::Device cpu(c10::kCPU);
  check_lists(params, grads, exp_avgs, exp_avg_sqs, slows, emas, steps, cpu);
  Params q = TRICKS_OPTIM_MAKE_PARAMS(params, slows);
  if (const float* inf = scalar_ptr(found_inf, "found_inf", cpu); inf && *inf != 0.0f) return;
  TORCH_CHECK(!ptrs.has_value(), "optim_step_: on CPU ptrs must be None (the kernel takes the lists' addresses)");
  bind_work(q, work, cpu);
  q.grad_scale = scalar_ptr(grad_scale, "grad_scale", cpu);
  if (const double* lr = scalar_ptr<double>(lr_tensor, "lr_tensor", cpu)) q.lr = *lr;  // host memory: no sync
  std::vector<void*> p_ptr(n), m_ptr(n), v_ptr(n), s_ptr(slows.empty() ? 0 : n), e_ptr(emas.empty() ? 0 : n);
  std::vector<const void*> g_ptr(n);
  std::vector<const float*> step_ptr(n);
  for (int64_t i = 0; i < n; ++i) {
    p_ptr[i] = params[i].data_ptr();
    g_ptr[i] = grads[i].data_ptr();
    m_ptr[i] = exp_avgs[i].data_ptr();
    v_ptr[i] = exp_avg_sqs[i].data_ptr();
    if (!slows.empty()) s_ptr[i] = slows[i].data_ptr();
    if (!emas.empty()) e_ptr[i] = emas[i].data_ptr();
    step_ptr[i] = steps[i].data_ptr<float>();
  }
  q.p = p_ptr.data();
  q.g = g_ptr.data();
  q.m = m_ptr.data();
  q.v = v_ptr.data();
  q.s = slows.empty() ? nullptr : s_ptr.data();
  q.e = emas.empty() ? nullptr : e_ptr.data();
  q.step = step_ptr.data();
  for (int64_t j = 0; j < q.n_items; ++j) {
    const int64_t* w = q.work + 4 * j;
    TORCH_CHECK(w[0] >= 0 && w[0] < n && w[1] >= 0 && w[2] >= 0 && w[1] + w[2] <= params[w[0]].numel(),
                "optim_step_: work item ", j, " is outside its tensor");
    // flags: a set of kGcRow and kAgcRow, or kPrepared alone
    TORCH_CHECK(w[3] >= 0 && w[3] <= kPrepared, "optim_step_: work item ", j, " has invalid flags ", w[3]);
  }
  const Item* items = reinterpret_cast<const Item*>(q.work);
  const std::vector<int64_t> tasks = task_starts(items, q.n_items, kTask);
  const bool slow_in_param_dtype = !slows.empty() && q.slow_dtype == q.dtype && q.dtype != DType::Float32 &&
                                   q.dtype != DType::Float64;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, params[0].scalar_type(), "optim_step_cpu", [&] {
    using A = acc_t<scalar_t>;
    std::vector<Scalars<A>> scalars(n);  // once per tensor, not per GC row
    for (int64_t i = 0; i < n; ++i) scalars[i] = step_scalars<A>(static_cast<double>(*q.step[i]), q);
    at::parallel_for(0, static_cast<int64_t>(tasks.size()) - 1, 1, [&](int64_t b, int64_t e) {
      if (slow_in_param_dtype)
        run_items<scalar_t, scalar_t>(items, tasks[b], tasks[e], q, scalars.data());
      else
        run_items<scalar_t, A>(items, tasks[b], tasks[e], q, scalars.data());
    });
  });
}

// max_grad_norm's global norm on CPU. torch's get_total_norm (one vector_norm per tensor) ran at
// 3.4x the time of its read on a ResNet-50 grad set (11.7 ms for 102 MB, 2 threads): chunks of
// kTask elements across every tensor, squares summed in kLanes partial sums, the chunk sums
// added in fp64 in chunk order (so the result does not depend on the thread count).
template <typename T>
TRICKS_CPU_CLONES double sq_sum(const T* x, int64_t len) {
  using A = acc_t<T>;
  return static_cast<double>(lane_sum<A>(len, Square<A, T>{x}));
}

at::Tensor optim_grad_norm_cpu(at::TensorList tensors) {
  std::vector<at::Tensor> dense;  // any dense layout: the sum of squares does not care about order
  dense.reserve(tensors.size());
  struct Chunk {
    size_t tensor;
    int64_t begin, len;
  };
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    TORCH_CHECK(t.device().is_cpu() && !t.is_sparse(), "optim_grad_norm: tensor ", i, " must be a dense CPU tensor");
    to_dtype(t, "tensors");
    dense.push_back(t.is_non_overlapping_and_dense() ? t : t.contiguous());
    for (int64_t b = 0; b < t.numel(); b += kTask) chunks.push_back({i, b, std::min(kTask, t.numel() - b)});
  }
  std::vector<double> part(chunks.size());
  at::parallel_for(0, static_cast<int64_t>(chunks.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const Chunk& c = chunks[j];
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dense[c.tensor].scalar_type(), "optim_grad_norm", [&] {
        part[j] = sq_sum(dense[c.tensor].data_ptr<scalar_t>() + c.begin, c.len);
      });
    }
  });
  double total = 0.0;
  for (double v : part) total += v;
  return at::scalar_tensor(std::sqrt(total), at::TensorOptions().dtype(at::kFloat));
}

}  // namespace
}  // namespace optim
}  // namespace tricks

TRICKS_REGISTER(CPU, "optim_step_", &tricks::optim::optim_step_cpu,
                     "optim_grad_norm", &tricks::optim::optim_grad_norm_cpu)

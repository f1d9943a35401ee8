// Fused optimizer step, CPU: one at::parallel_for over a work list covering every tensor.
// A work item is one GC row (its mean is taken while the row is in cache, then the update
// sweeps it again from L1/L2, so GC adds no second pass over g from DRAM) or, without GC, a
// chunk of a tensor; the caller plans the list (tricks_ext/ops/optim.py, Plan). Consecutive items are grouped into tasks of >= kTask elements and
// threads get equal task counts, so they get about equal element counts although rows range
// from 9 (depthwise) to thousands of elements.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/cpu_simd.h"
#include "optim/prepare.h"

namespace tricks {
namespace optim {
namespace {

constexpr int64_t kTask = 1 << 16;   // elements per parallel task

// One row of the plan's work list (int64 [n_items, 4]), read in place.
struct Item {
  int64_t tensor, begin, len, gc_row;
};
static_assert(sizeof(Item) == 4 * sizeof(int64_t), "Item must match a work-list row");

// The sum of one GC row in kLanes partial sums (4 AVX-512 or 8 AVX2 accumulators), the tail
// into the first 8, then a pairwise fold. With one 8-wide accumulator the mean pass was bound by
// the add latency: GC cost 20-35 % of a step (rows of 576 to 4,608 fp32) on an AVX-512 Xeon,
// 12-17 % with 64 lanes.
constexpr int kLanes = 64;

template <typename A, typename T>
TRICKS_CPU_INLINE A row_sum(const T* g, int64_t len) {
  A part[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= len; k += kLanes)
    for (int j = 0; j < kLanes; ++j) part[j] += static_cast<A>(g[k + j]);
  for (; k + 8 <= len; k += 8)
    for (int j = 0; j < 8; ++j) part[j] += static_cast<A>(g[k + j]);
  for (; k < len; ++k) part[0] += static_cast<A>(g[k]);
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) part[j] += part[j + w];
  return part[0];
}

// The mean pass reads a row from DRAM as one stream that nothing overlaps; prefetching the first
// kPrefetchLines of the next GC row before this item's sweep starts that stream under the sweep's
// (GC's share of a ResNet-50 step 17 -> 11 %; prefetching whole rows of 4,608 was no better).
constexpr int64_t kPrefetchLines = 32;

template <typename T>
TRICKS_CPU_INLINE void prefetch_row(const Item& it, const Params& q) {
  const char* row = static_cast<const char*>(q.g[it.tensor]) + it.begin * static_cast<int64_t>(sizeof(T));
  const int64_t bytes = std::min<int64_t>(it.len * static_cast<int64_t>(sizeof(T)), kPrefetchLines * 64);
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(row + b, 0, 3);
}

template <typename T, typename S>
TRICKS_CPU_INLINE void run_item(const Item& it, const Params& q, const Scalars<acc_t<T>>& scalars) {
  using A = acc_t<T>;
  // Local copies: with a reference into the heap, the compiler must assume the stores through
  // m/v may change it and reloads it every iteration, which also blocks vectorization.
  const Scalars<A> s = scalars;
  const int64_t i = it.tensor;
  T* p = static_cast<T*>(q.p[i]) + it.begin;
  const T* g = static_cast<const T*>(q.g[i]) + it.begin;
  A* m = static_cast<A*>(q.m[i]) + it.begin;
  A* v = static_cast<A*>(q.v[i]) + it.begin;
  S* slow = q.s ? static_cast<S*>(q.s[i]) + it.begin : nullptr;
  const Decay<A> d = decay_of<A>(q);
  const A inv_scale = q.grad_scale ? A(1) / static_cast<A>(*q.grad_scale) : A(1);
  const A gmul = q.maximize ? -inv_scale : inv_scale;
  const Moments<A> b = moments_of<A>(q);
  const A eps = static_cast<A>(q.eps);
  const A alpha = static_cast<A>(q.alpha);
  const A mean = it.gc_row ? row_sum<A>(g, it.len) * gmul / static_cast<A>(it.len) : A(0);
  auto sweep = [&](auto has_denom, auto sync) {
    constexpr bool kDenom = decltype(has_denom)::value, kSync = decltype(sync)::value;
    T* __restrict__ pp = p;
    const T* __restrict__ gp = g;
    A* __restrict__ mp = m;
    A* __restrict__ vp = v;
    S* __restrict__ sp = slow;
    for (int64_t k = 0; k < it.len; ++k) {
      A mk = mp[k], vk = vp[k];
      A pk = update<kDenom>(static_cast<A>(pp[k]), static_cast<A>(gp[k]) * gmul - mean, mk, vk, b, eps, d,
                            s.step_size, s.inv_denom_scale);
      mp[k] = mk;
      vp[k] = vk;
      if constexpr (kSync) {
        pk = lookahead(pk, static_cast<A>(sp[k]), alpha);
        sp[k] = static_cast<S>(pk);
      }
      pp[k] = static_cast<T>(pk);
    }
  };
  using T_ = std::true_type;
  using F_ = std::false_type;
  if (s.has_denom) {
    if (s.sync) sweep(T_{}, T_{}); else sweep(T_{}, F_{});
  } else {
    if (s.sync) sweep(F_{}, T_{}); else sweep(F_{}, F_{});
  }
}

template <typename T, typename S>
TRICKS_CPU_CLONES void run_items(const Item* items, int64_t begin, int64_t end, const Params& q,
                                 const Scalars<acc_t<T>>* scalars) {
  for (int64_t j = begin; j < end; ++j) {
    if (j + 1 < end && items[j + 1].gc_row) prefetch_row<T>(items[j + 1], q);
    run_item<T, S>(items[j], q, scalars[items[j].tensor]);
  }
}

void optim_step_cpu(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                    at::TensorList slows, at::TensorList steps, const at::Tensor& work,
                    const c10::optional<at::Tensor>& ptrs,
                    const c10::optional<at::Tensor>& found_inf, const c10::optional<at::Tensor>& grad_scale, double lr,
                    double beta1, double beta2, double eps, double weight_decay, bool decoupled, double alpha,
                    int64_t lookahead_k, bool rectify, bool maximize) {
  const int64_t n = static_cast<int64_t>(params.size());
  if (n == 0) return;
  const c10::Device cpu(c10::kCPU);
  check_lists(params, grads, exp_avgs, exp_avg_sqs, slows, steps, cpu);
  if (const float* inf = scalar_ptr(found_inf, "found_inf", cpu); inf && *inf != 0.0f) return;
  Params q = make_params(params, slows, lr, beta1, beta2, eps, weight_decay, decoupled, alpha, lookahead_k, rectify, maximize);
  TORCH_CHECK(!ptrs.has_value(), "optim_step_: on CPU ptrs must be None (the kernel takes the lists' addresses)");
  bind_work(q, work, cpu);
  q.grad_scale = scalar_ptr(grad_scale, "grad_scale", cpu);
  std::vector<void*> p_ptr(n), m_ptr(n), v_ptr(n), s_ptr(slows.empty() ? 0 : n);
  std::vector<const void*> g_ptr(n);
  std::vector<const float*> step_ptr(n);
  for (int64_t i = 0; i < n; ++i) {
    p_ptr[i] = params[i].data_ptr();
    g_ptr[i] = grads[i].data_ptr();
    m_ptr[i] = exp_avgs[i].data_ptr();
    v_ptr[i] = exp_avg_sqs[i].data_ptr();
    if (!slows.empty()) s_ptr[i] = slows[i].data_ptr();
    step_ptr[i] = steps[i].data_ptr<float>();
  }
  q.p = p_ptr.data();
  q.g = g_ptr.data();
  q.m = m_ptr.data();
  q.v = v_ptr.data();
  q.s = slows.empty() ? nullptr : s_ptr.data();
  q.step = step_ptr.data();
  for (int64_t j = 0; j < q.n_items; ++j) {
    const int64_t* w = q.work + 4 * j;
    TORCH_CHECK(w[0] >= 0 && w[0] < n && w[1] >= 0 && w[2] >= 0 && w[1] + w[2] <= params[w[0]].numel(),
                "optim_step_: work item ", j, " is outside its tensor");
  }
  const Item* items = reinterpret_cast<const Item*>(q.work);
  std::vector<int64_t> tasks{0};  // item index where each task starts
  int64_t acc_len = 0;
  for (int64_t j = 0; j < q.n_items; ++j) {
    acc_len += items[j].len;
    if (acc_len >= kTask) {
      tasks.push_back(j + 1);
      acc_len = 0;
    }
  }
  if (tasks.back() != q.n_items) tasks.push_back(q.n_items);
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

}  // namespace
}  // namespace optim
}  // namespace tricks

TORCH_LIBRARY_IMPL(tricks_ext, CPU, m) { m.impl("optim_step_", &tricks::optim::optim_step_cpu); }

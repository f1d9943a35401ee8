// Fused optimizer step, CPU: one at::parallel_for over a work list covering every tensor.
// A work item is one GC row (its mean is taken while the row is in cache, then the update
// sweeps it again from L1/L2, so GC adds no second pass over g from DRAM) or, without GC, a
// chunk of kChunk elements. Consecutive items are grouped into tasks of >= kTask elements and
// threads get equal task counts, so they get about equal element counts although rows range
// from 9 (depthwise) to thousands of elements.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <type_traits>
#include <vector>

#include "common/cpu_simd.h"
#include "optim/prepare.h"

namespace tricks {
namespace optim {
namespace {

constexpr int64_t kChunk = 1 << 15;  // 32K elements (128 KiB of fp32 params) per item
constexpr int64_t kTask = 1 << 16;   // elements per parallel task

struct Item {
  int64_t tensor, begin, len;
  bool gc_row;
};

template <typename T, typename S>
TRICKS_CPU_INLINE void run_item(const Item& it, const Params& q, const Scalars<acc_t<T>>& scalars) {
  using A = acc_t<T>;
  // Local copies: with a reference into the heap, the compiler must assume the stores through
  // m/v may change it and reloads it every iteration, which also blocks vectorization (2x).
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
  A mean = 0;
  if (it.gc_row) {
    A part[8] = {};
    int64_t k = 0;
    for (; k + 8 <= it.len; k += 8)
      for (int j = 0; j < 8; ++j) part[j] += static_cast<A>(g[k + j]);
    for (; k < it.len; ++k) part[0] += static_cast<A>(g[k]);
    A sum = 0;
    for (int j = 0; j < 8; ++j) sum += part[j];
    mean = sum * gmul / static_cast<A>(it.len);
  }
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
  for (int64_t j = begin; j < end; ++j) run_item<T, S>(items[j], q, scalars[items[j].tensor]);
}

void optim_step_cpu(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                    at::TensorList slows, at::TensorList steps, const c10::optional<at::Tensor>& work,
                    const c10::optional<at::Tensor>& ptrs, const c10::optional<at::Tensor>& found_inf,
                    const c10::optional<at::Tensor>& grad_scale, double lr, double beta1, double beta2, double eps,
                    double weight_decay, bool decoupled, double alpha, int64_t lookahead_k, bool rectify,
                    int64_t gc_min_dim, bool maximize) {
  (void)work;  // the CPU kernel builds its own work list (cheap on the host)
  (void)ptrs;
  const int64_t n = static_cast<int64_t>(params.size());
  if (n == 0) return;
  const c10::Device cpu(c10::kCPU);
  const auto grads_ok = check_lists(params, grads, exp_avgs, exp_avg_sqs, slows, steps, cpu);
  if (const float* inf = scalar_ptr(found_inf, "found_inf", cpu); inf && *inf != 0.0f) return;
  Params q = make_params(params, slows, lr, beta1, beta2, eps, weight_decay, decoupled, alpha, lookahead_k, rectify, maximize);
  q.grad_scale = scalar_ptr(grad_scale, "grad_scale", cpu);
  std::vector<void*> p_ptr(n), m_ptr(n), v_ptr(n), s_ptr(slows.empty() ? 0 : n);
  std::vector<const void*> g_ptr(n);
  std::vector<const float*> step_ptr(n);
  std::vector<Item> items;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    p_ptr[i] = p.data_ptr();
    g_ptr[i] = grads_ok[i].data_ptr();
    m_ptr[i] = exp_avgs[i].data_ptr();
    v_ptr[i] = exp_avg_sqs[i].data_ptr();
    if (!slows.empty()) s_ptr[i] = slows[i].data_ptr();
    step_ptr[i] = steps[i].data_ptr<float>();
    const int64_t numel = p.numel();
    if (gc_min_dim > 0 && p.dim() > 1 && p.dim() >= gc_min_dim && p.size(0) > 0) {
      const int64_t K = numel / p.size(0);
      for (int64_t r = 0; r < p.size(0); ++r) items.push_back({i, r * K, K, true});
    } else {
      for (int64_t b = 0; b < numel; b += kChunk) items.push_back({i, b, std::min(kChunk, numel - b), false});
    }
  }
  q.p = p_ptr.data();
  q.g = g_ptr.data();
  q.m = m_ptr.data();
  q.v = v_ptr.data();
  q.s = slows.empty() ? nullptr : s_ptr.data();
  q.step = step_ptr.data();
  std::vector<int64_t> tasks{0};  // item index where each task starts
  int64_t acc_len = 0;
  for (int64_t j = 0; j < static_cast<int64_t>(items.size()); ++j) {
    acc_len += items[j].len;
    if (acc_len >= kTask) {
      tasks.push_back(j + 1);
      acc_len = 0;
    }
  }
  if (tasks.back() != static_cast<int64_t>(items.size())) tasks.push_back(static_cast<int64_t>(items.size()));
  const bool slow_in_param_dtype = !slows.empty() && q.slow_dtype == q.dtype && q.dtype != DType::Float32 &&
                                   q.dtype != DType::Float64;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, params[0].scalar_type(), "optim_step_cpu", [&] {
    using A = acc_t<scalar_t>;
    std::vector<Scalars<A>> scalars(n);  // once per tensor, not per GC row
    for (int64_t i = 0; i < n; ++i) scalars[i] = step_scalars<A>(static_cast<double>(*q.step[i]), q);
    at::parallel_for(0, static_cast<int64_t>(tasks.size()) - 1, 1, [&](int64_t b, int64_t e) {
      if (slow_in_param_dtype)
        run_items<scalar_t, scalar_t>(items.data(), tasks[b], tasks[e], q, scalars.data());
      else
        run_items<scalar_t, A>(items.data(), tasks[b], tasks[e], q, scalars.data());
    });
  });
}

}  // namespace
}  // namespace optim
}  // namespace tricks

TORCH_LIBRARY_IMPL(tricks_ext, CPU, m) { m.impl("optim_step_", &tricks::optim::optim_step_cpu); }

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

#include "checks.h"
#include "cpu/simd.h"
#include "tricks/optim.h"

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
inline void run_item(const Item& it, const std::vector<void*>& p_ptr, const std::vector<const void*>& g_ptr,
              const std::vector<void*>& m_ptr, const std::vector<void*>& v_ptr, const std::vector<void*>& s_ptr,
              const double* scal, const Hyper<acc_t<T>>& h, acc_t<T> inv_scale) {
  using A = acc_t<T>;
  T* p = static_cast<T*>(p_ptr[it.tensor]) + it.begin;
  const T* g = static_cast<const T*>(g_ptr[it.tensor]) + it.begin;
  A* m = static_cast<A*>(m_ptr[it.tensor]) + it.begin;
  A* v = static_cast<A*>(v_ptr[it.tensor]) + it.begin;
  S* slow = s_ptr.empty() ? nullptr : static_cast<S*>(s_ptr[it.tensor]) + it.begin;
  const double* sc = scal + it.tensor * 5;
  const TensorScalars<A> s{static_cast<A>(sc[0]), static_cast<A>(sc[1]), static_cast<A>(sc[2]), sc[3] != 0.0,
                           sc[4] != 0.0 && slow != nullptr};
  const A gmul = h.maximize ? -inv_scale : inv_scale;
  const Decay<A> d = decay_of(h, s.lr);
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
      A pk = update<kDenom>(static_cast<A>(pp[k]), static_cast<A>(gp[k]) * gmul - mean, mk, vk, h.beta1, h.beta2,
                            h.eps, d, s.step_size, s.inv_denom_scale);
      mp[k] = mk;
      vp[k] = vk;
      if constexpr (kSync) {
        pk = lookahead(pk, static_cast<A>(sp[k]), h.alpha);
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

struct Pointers {
  std::vector<void*> p, m, v, s;
  std::vector<const void*> g;
};

template <typename T, typename S>
TRICKS_CPU_CLONES void run_items(const Item* items, int64_t begin, int64_t end, const Pointers& ptr,
                                 const double* scal, const Hyper<acc_t<T>>& h, acc_t<T> inv_scale) {
  for (int64_t j = begin; j < end; ++j) run_item<T, S>(items[j], ptr.p, ptr.g, ptr.m, ptr.v, ptr.s, scal, h, inv_scale);
}

void optim_step_cpu(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                    at::TensorList slows, const at::Tensor& scalars, double beta1, double beta2, double eps,
                    double weight_decay, bool decoupled, double alpha, int64_t gc_min_dim, bool maximize,
                    double grad_inv_scale) {
  const int64_t n = static_cast<int64_t>(params.size());
  TORCH_CHECK(static_cast<int64_t>(grads.size()) == n && static_cast<int64_t>(exp_avgs.size()) == n &&
                  static_cast<int64_t>(exp_avg_sqs.size()) == n,
              "optim_step_: params, grads, exp_avgs, exp_avg_sqs must have the same length");
  TORCH_CHECK(slows.empty() || static_cast<int64_t>(slows.size()) == n, "optim_step_: slows must be empty or one per param");
  TORCH_CHECK(scalars.scalar_type() == at::kDouble && scalars.is_contiguous() && scalars.dim() == 2 &&
                  scalars.size(0) == n && scalars.size(1) == 5,
              "optim_step_: scalars must be a contiguous float64 tensor of shape (", n, ", 5)");
  if (n == 0) return;
  const auto dtype = params[0].scalar_type();
  const auto sdt = stats_dtype(params[0]);
  const bool slow_in_param_dtype = !slows.empty() && slows[0].scalar_type() == dtype && dtype != sdt;
  Pointers ptr{std::vector<void*>(n), std::vector<void*>(n), std::vector<void*>(n),
               std::vector<void*>(slows.empty() ? 0 : n), std::vector<const void*>(n)};
  std::vector<at::Tensor> grad_keep;  // restrided grads, alive until the step ends
  std::vector<Item> items;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    TORCH_CHECK(p.device().is_cpu() && p.scalar_type() == dtype, "optim_step_: params must be CPU tensors of one dtype");
    TORCH_CHECK(is_row_dense(p), "optim_step_: param ", i, " must be contiguous or channels_last, got strides ", p.strides());
    for (const at::Tensor* t : {&exp_avgs[i], &exp_avg_sqs[i]}) {
      TORCH_CHECK(t->scalar_type() == sdt && t->strides() == p.strides() && t->sizes() == p.sizes(),
                  "optim_step_: state of param ", i, " must be ", sdt, " with the param's shape and strides");
    }
    if (!slows.empty()) {
      TORCH_CHECK(slows[i].scalar_type() == (slow_in_param_dtype ? dtype : sdt) && slows[i].strides() == p.strides() &&
                      slows[i].sizes() == p.sizes(),
                  "optim_step_: slow weights of param ", i, " must match the param's shape and strides");
      ptr.s[i] = slows[i].data_ptr();
    }
    TORCH_CHECK(grads[i].sizes() == p.sizes() && grads[i].scalar_type() == dtype && !grads[i].is_sparse(),
                "optim_step_: grad ", i, " must be dense with the param's shape and dtype");
    const at::Tensor g = grads[i].strides() == p.strides() ? grads[i] : at::empty_like(p).copy_(grads[i]);
    grad_keep.push_back(g);
    ptr.p[i] = p.data_ptr();
    ptr.g[i] = g.data_ptr();
    ptr.m[i] = exp_avgs[i].data_ptr();
    ptr.v[i] = exp_avg_sqs[i].data_ptr();
    const int64_t numel = p.numel();
    if (gc_min_dim > 0 && p.dim() > 1 && p.dim() >= gc_min_dim && p.size(0) > 0) {
      const int64_t K = numel / p.size(0);
      for (int64_t r = 0; r < p.size(0); ++r) items.push_back({i, r * K, K, true});
    } else {
      for (int64_t b = 0; b < numel; b += kChunk) items.push_back({i, b, std::min(kChunk, numel - b), false});
    }
  }
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
  const double* scal = scalars.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "optim_step_cpu", [&] {
    using A = acc_t<scalar_t>;
    const Hyper<A> h{static_cast<A>(beta1), static_cast<A>(beta2), static_cast<A>(eps), static_cast<A>(weight_decay),
                     static_cast<A>(alpha), decoupled, maximize};
    const A inv = static_cast<A>(grad_inv_scale);
    at::parallel_for(0, static_cast<int64_t>(tasks.size()) - 1, 1, [&](int64_t b, int64_t e) {
      if (slow_in_param_dtype)
        run_items<scalar_t, scalar_t>(items.data(), tasks[b], tasks[e], ptr, scal, h, inv);
      else
        run_items<scalar_t, A>(items.data(), tasks[b], tasks[e], ptr, scal, h, inv);
    });
  });
}

}  // namespace
}  // namespace optim
}  // namespace tricks

TORCH_LIBRARY_IMPL(tricks_ext, CPU, m) { m.impl("optim_step_", &tricks::optim::optim_step_cpu); }

// SASA+'s fused step, CPU: one at::parallel_for over the work list, each item swept once (the
// update and its two sums in the same loop). Consecutive items are grouped into tasks of >= kTask
// elements, and each item's sums land in its own row: the result does not depend on the threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "common/cpu_simd.h"
#include "common/cpu_tasks.h"
#include "common/register.h"
#include "sasa/prepare.h"

namespace tricks {
namespace sasa {
namespace {

constexpr int64_t kTask = 1 << 16;  // elements per parallel task, as optim_step_'s
// Partial sums per item: 16 fp32 lanes are one AVX-512 vector per sum, so the loop-carried adds
// are vector adds; at 20 B/element the memory stream, not the add latency, bounds the loop.
constexpr int kLanes = 16;

struct Item {
  int64_t tensor, begin, len;
};
static_assert(sizeof(Item) == 3 * sizeof(int64_t), "Item must match a work-list row");

// The pointers as restrict parameters and the coefficients as locals, for the reasons given at
// optim/cpu.cpp's Sweep (GCC otherwise versions the loop for aliasing or leaves it scalar).
template <int K, typename T>
TRICKS_CPU_INLINE void sweep(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ h, int64_t n,
                             const Coefs<acc_t<T>> c, double* out) {
  using A = acc_t<T>;
  A xd[kLanes] = {}, dd[kLanes] = {};
  auto element = [&](int64_t k, A& sxd, A& sdd) __attribute__((always_inline)) {
    A hk = A(0);
    if constexpr (K != kGrad) hk = load_as<A>(h, k);
    const A x = load_as<A>(p, k);
    const A d = direction<K>(x, load_as<A>(g, k), hk, c);
    if constexpr (K != kGrad) store_rounded(h, k, hk);
    const A stored = store_rounded(p, k, descend(x, d, c.lr));
    sxd += stored * d;
    sdd += d * d;
  };
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes)
    for (int j = 0; j < kLanes; ++j) element(k + j, xd[j], dd[j]);
  for (; k < n; ++k) element(k, xd[0], dd[0]);
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) {
      xd[j] += xd[j + w];
      dd[j] += dd[j + w];
    }
  out[0] = static_cast<double>(xd[0]);
  out[1] = static_cast<double>(dd[0]);
}

template <int K, typename T>
TRICKS_CPU_CLONES void run_items(const Item* items, int64_t begin, int64_t end, const Params& q) {
  const Coefs<acc_t<T>> c = coefs_of<acc_t<T>>(q);
  for (int64_t j = begin; j < end; ++j) {
    const Item& it = items[j];
    T* h = K != kGrad ? static_cast<T*>(q.h[it.tensor]) + it.begin : nullptr;
    sweep<K, T>(static_cast<T*>(q.p[it.tensor]) + it.begin, static_cast<const T*>(q.g[it.tensor]) + it.begin, h,
                it.len, c, q.sums + 2 * j);
  }
}

at::Tensor sasa_step_cpu(TRICKS_SASA_ARGS) {
  const c10::Device cpu(c10::kCPU);
  Params q{};
  at::Tensor sums = prepare(q, params, grads, bufs, lr, work, ptrs, momentum, qhm_nu, weight_decay, cpu);
  TORCH_CHECK(!ptrs.has_value(), "sasa_step_: on CPU ptrs must be None (the kernel takes the lists' addresses)");
  q.work = work.data_ptr<int64_t>();
  check_work(q.work, q.n_items, params);
  if (q.n_items == 0) return sums;
  const size_t n = params.size();
  std::vector<void*> p_ptr(n), h_ptr(n);
  std::vector<const void*> g_ptr(n);
  for (size_t i = 0; i < n; ++i) {
    p_ptr[i] = params[i].data_ptr();
    g_ptr[i] = grads[i].data_ptr();
    h_ptr[i] = bufs.empty() ? nullptr : bufs[i].data_ptr();
  }
  q.p = p_ptr.data();
  q.g = g_ptr.data();
  q.h = bufs.empty() ? nullptr : h_ptr.data();
  const Item* items = reinterpret_cast<const Item*>(q.work);
  const std::vector<int64_t> tasks = task_starts(items, q.n_items, kTask);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, params[0].scalar_type(), "sasa_step_cpu", [&] {
    at::parallel_for(0, static_cast<int64_t>(tasks.size()) - 1, 1, [&](int64_t b, int64_t e) {
      switch (q.kind) {
        case kGrad: run_items<kGrad, scalar_t>(items, tasks[b], tasks[e], q); break;
        case kMomentum: run_items<kMomentum, scalar_t>(items, tasks[b], tasks[e], q); break;
        default: run_items<kQhm, scalar_t>(items, tasks[b], tasks[e], q); break;
      }
    });
  });
  return sums;
}

}  // namespace
}  // namespace sasa
}  // namespace tricks

TRICKS_REGISTER(CPU, "sasa_step_", &tricks::sasa::sasa_step_cpu)

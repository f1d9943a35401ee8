// Dropout with a regenerated mask, CPU: one Philox block per 4 consecutive elements, drawn in
// batches of element-order keep masks (dropout/philox_cpu.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/register.h"

#include "dropout/philox_cpu.h"
#include "common/cpu_simd.h"
#include "dropout/prepare.h"

namespace tricks {
namespace dropout {
namespace {

// Forward over Philox blocks [g0, g1): a batch of keep masks in element order, then a plain
// element loop over it that GCC vectorizes (a loop over (block, word) of the words' SoA
// layout does not).
template <typename T>
TRICKS_CPU_CLONES void apply_blocks(const Params& q, int64_t g0, int64_t g1) {
  using A = acc_t<T>;
  const T* x = static_cast<const T*>(q.x);
  T* y = static_cast<T*>(q.y);
  const T* res = static_cast<const T*>(q.residual);
  const A gate = q.gate ? *static_cast<const A*>(q.gate) : A(1);
  const uint64_t seed = static_cast<uint64_t>(q.seed_offset[0]), offset = static_cast<uint64_t>(q.seed_offset[1]);
  alignas(64) uint32_t kept[4 * kKeepBatch];
  for (int64_t gb = g0; gb < g1; gb += kKeepBatch) {
    keep_mask_batch(seed, offset + static_cast<uint64_t>(gb), q.p, kept);
    const int64_t base = 4 * gb, ne = std::min<int64_t>(4 * kKeepBatch, q.n - base);
    const T* xb = x + base;
    T* yb = y + base;
    if (res) {
      const T* rb = res + base;
      for (int64_t e = 0; e < ne; ++e)
        yb[e] = static_cast<T>(apply(static_cast<A>(xb[e]), kept[e] != 0, q.scale, gate, static_cast<A>(rb[e])));
    } else {
      for (int64_t e = 0; e < ne; ++e)
        yb[e] = static_cast<T>(apply(static_cast<A>(xb[e]), kept[e] != 0, q.scale, gate, A(0)));
    }
  }
}

// group > 1 (drop path): one draw per run of `group` elements, then a plain scaled loop.
template <typename T>
TRICKS_CPU_CLONES void apply_runs(const Params& q, int64_t begin, int64_t end) {
  using A = acc_t<T>;
  const T* x = static_cast<const T*>(q.x);
  T* y = static_cast<T*>(q.y);
  const T* res = static_cast<const T*>(q.residual);
  const A gate = q.gate ? *static_cast<const A*>(q.gate) : A(1);
  const uint64_t seed = static_cast<uint64_t>(q.seed_offset[0]), offset = static_cast<uint64_t>(q.seed_offset[1]);
  for (int64_t i = begin; i < end;) {
    const int64_t r = i / q.group, stop = std::min(end, (r + 1) * q.group);
    const bool kept = keep(philox::uniform_at(seed, offset, static_cast<uint64_t>(r)), q.p);
    for (; i < stop; ++i)
      y[i] = static_cast<T>(apply(static_cast<A>(x[i]), kept, q.scale, gate, res ? static_cast<A>(res[i]) : A(0)));
  }
}

template <typename T>
void apply_kernel(const Params& q) {
  if (q.group > 1) {
    at::parallel_for(0, q.n, 1 << 14, [&](int64_t b, int64_t e) { apply_runs<T>(q, b, e); });
    return;
  }
  // Tasks start at multiples of kKeepBatch blocks: whole mask batches.
  const int64_t batches = (q.n + 4 * kKeepBatch - 1) / (4 * kKeepBatch);
  at::parallel_for(0, batches, 32, [&](int64_t b, int64_t e) {
    apply_blocks<T>(q, b * kKeepBatch, e * kKeepBatch);
  });
}

// Partial sums per backward chunk: 16 (two AVX2 vectors of fp32) independent chains.
constexpr int kLanes = 16;

// Backward over one fixed chunk of elements: dx = gate * keep * scale * grad and, with x
// (kWithX), the chunk's sum of x * keep * scale * grad (the gate gradient's partial). Chunks
// start at multiples of kCpuPartialElements, so at whole mask batches as in the forward.
template <typename T, bool kWithX>
TRICKS_CPU_CLONES void bwd_chunk(const BwdParams& q, int64_t chunk) {
  using A = acc_t<T>;
  const T* g = static_cast<const T*>(q.grad);
  const T* x = static_cast<const T*>(q.x);
  T* dx = static_cast<T*>(q.dx);
  const A gate = q.gate ? *static_cast<const A*>(q.gate) : A(1);
  const uint64_t seed = static_cast<uint64_t>(q.seed_offset[0]), offset = static_cast<uint64_t>(q.seed_offset[1]);
  const int64_t begin = chunk * kCpuPartialElements, end = std::min(q.n, begin + kCpuPartialElements);
  A part = 0;
  if (q.group > 1) {
    for (int64_t i = begin; i < end;) {
      const int64_t r = i / q.group, stop = std::min(end, (r + 1) * q.group);
      const bool kept = keep(philox::uniform_at(seed, offset, static_cast<uint64_t>(r)), q.p);
      for (; i < stop; ++i) {
        const A d = apply(static_cast<A>(g[i]), kept, q.scale, A(1), A(0));
        dx[i] = static_cast<T>(gate * d);
        if constexpr (kWithX) part += gate_term(static_cast<A>(x[i]), d, kept);
      }
    }
  } else {
    // kLanes partial sums of the gate gradient, so the loop vectorizes (a single sum is a
    // serial chain); their order is fixed, so the result does not depend on the thread count.
    alignas(64) uint32_t kept[4 * kKeepBatch];
    A lanes[kLanes] = {};
    for (int64_t base = begin; base < end; base += 4 * kKeepBatch) {
      keep_mask_batch(seed, offset + static_cast<uint64_t>(base / 4), q.p, kept);
      const int64_t ne = std::min<int64_t>(4 * kKeepBatch, end - base);
      const T* gb = g + base;
      T* db = dx + base;
      if (ne == 4 * kKeepBatch) {
        for (int64_t e = 0; e < 4 * kKeepBatch; e += kLanes)
          for (int l = 0; l < kLanes; ++l) {
            const A d = apply(static_cast<A>(gb[e + l]), kept[e + l] != 0, q.scale, A(1), A(0));
            db[e + l] = static_cast<T>(gate * d);
            if constexpr (kWithX) lanes[l] += gate_term(static_cast<A>(x[base + e + l]), d, kept[e + l] != 0);
          }
      } else {
        for (int64_t e = 0; e < ne; ++e) {
          const A d = apply(static_cast<A>(gb[e]), kept[e] != 0, q.scale, A(1), A(0));
          db[e] = static_cast<T>(gate * d);
          if constexpr (kWithX) lanes[e % kLanes] += gate_term(static_cast<A>(x[base + e]), d, kept[e] != 0);
        }
      }
    }
    for (int l = 0; l < kLanes; ++l) part += lanes[l];
  }
  if (q.partials) static_cast<A*>(q.partials)[chunk] = part;
}

std::tuple<at::Tensor, at::Tensor> dropout_apply_bwd_cpu(const at::Tensor& grad, const c10::optional<at::Tensor>& x,
                                                         const c10::optional<at::Tensor>& gate,
                                                         const at::Tensor& seed_offset, double p, double scale,
                                                         int64_t group) {
  auto b = prepare_bwd(grad, x, gate, seed_offset, p, scale, group, kCpuPartialElements);
  const int64_t chunks = (grad.numel() + kCpuPartialElements - 1) / kCpuPartialElements;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "dropout_apply_bwd_cpu", [&] {
    at::parallel_for(0, chunks, 1, [&](int64_t s, int64_t e) {
      for (int64_t c = s; c < e; ++c) {
        if (b.params.x) bwd_chunk<scalar_t, true>(b.params, c);
        else bwd_chunk<scalar_t, false>(b.params, c);
      }
    });
  });
  return {b.dx, b.partials};
}

at::Tensor dropout_apply_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& residual,
                             const c10::optional<at::Tensor>& gate, const at::Tensor& seed_offset, double p, double scale,
                             int64_t group) {
  auto r = prepare(x, residual, gate, seed_offset, p, scale, group);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dropout_apply_cpu",
                                  [&] { apply_kernel<scalar_t>(r.params); });
  return r.y;
}

}  // namespace
}  // namespace dropout
}  // namespace tricks

TRICKS_REGISTER(CPU, "dropout_apply", &tricks::dropout::dropout_apply_cpu,
                     "dropout_apply_bwd", &tricks::dropout::dropout_apply_bwd_cpu)

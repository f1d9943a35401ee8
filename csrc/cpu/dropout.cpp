// Dropout with a regenerated mask, CPU: one Philox call per 4 consecutive elements.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu/simd.h"
#include "dropout.h"

namespace tricks {
namespace dropout {
namespace {

constexpr int64_t kBatch = 64;  // Philox blocks drawn per batch: 256 elements

// Philox for ng <= kBatch consecutive counters from `first` into structure-of-arrays words, a
// loop GCC vectorizes (independent counters, rounds unrolled, 32x32->64 multiplies as vpmuludq).
TRICKS_CPU_INLINE void philox_batch(uint32_t k0, uint32_t k1, uint64_t first, int64_t ng,
                                    uint32_t (&words)[4][kBatch]) {
  for (int64_t t = 0; t < ng; ++t) {
    const uint64_t ctr = first + static_cast<uint64_t>(t);
    uint32_t c0 = static_cast<uint32_t>(ctr), c1 = static_cast<uint32_t>(ctr >> 32), c2 = 0, c3 = 0;
    uint32_t a = k0, b = k1;
#pragma GCC unroll 10
    for (int r = 0; r < 10; ++r) philox::round(c0, c1, c2, c3, a, b);
    words[0][t] = c0;
    words[1][t] = c1;
    words[2][t] = c2;
    words[3][t] = c3;
  }
}

// Forward over Philox blocks [g0, g1): a batch of words, then the elements.
template <typename T>
TRICKS_CPU_CLONES void apply_blocks(const Params& q, int64_t g0, int64_t g1) {
  using A = acc_t<T>;
  const T* x = static_cast<const T*>(q.x);
  T* y = static_cast<T*>(q.y);
  const T* res = static_cast<const T*>(q.residual);
  const A gate = q.gate ? *static_cast<const A*>(q.gate) : A(1);
  const uint64_t seed = static_cast<uint64_t>(q.seed_offset[0]), offset = static_cast<uint64_t>(q.seed_offset[1]);
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  alignas(64) uint32_t words[4][kBatch];
  for (int64_t gb = g0; gb < g1; gb += kBatch) {
    const int64_t ng = std::min<int64_t>(kBatch, g1 - gb);
    philox_batch(k0, k1, offset + static_cast<uint64_t>(gb), ng, words);
    const int64_t base = 4 * gb;
    if (base + 4 * ng <= q.n) {  // whole blocks: word j of block t is element 4t + j
      for (int64_t t = 0; t < ng; ++t)
        for (int j = 0; j < 4; ++j) {
          const bool kept = keep(philox::to_uniform(words[j][t]), q.p);
          const int64_t i = base + 4 * t + j;
          y[i] = static_cast<T>(apply(static_cast<A>(x[i]), kept, q.scale, gate, res ? static_cast<A>(res[i]) : A(0)));
        }
    } else {
      for (int64_t e = 0; e < q.n - base; ++e) {
        const bool kept = keep(philox::to_uniform(words[e % 4][e / 4]), q.p);
        const int64_t i = base + e;
        y[i] = static_cast<T>(apply(static_cast<A>(x[i]), kept, q.scale, gate, res ? static_cast<A>(res[i]) : A(0)));
      }
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
  const int64_t groups = (q.n + 3) / 4;
  at::parallel_for(0, groups, 2048, [&](int64_t b, int64_t e) { apply_blocks<T>(q, b, e); });
}

// Backward over one fixed chunk of elements: dx = gate * keep * scale * grad and, with x
// (kWithX), the chunk's sum of x * keep * scale * grad (the gate gradient's partial). Chunks
// start at multiples of kPartialChunk, so at whole Philox blocks; words come in batches as in
// the forward, and the element loop has no per-element branch.
template <typename T, bool kWithX>
TRICKS_CPU_CLONES void bwd_chunk(const Params& q, int64_t chunk) {
  using A = acc_t<T>;
  const T* g = static_cast<const T*>(q.x);
  const T* x = static_cast<const T*>(q.residual);
  T* dx = static_cast<T*>(q.y);
  const A gate = q.gate ? *static_cast<const A*>(q.gate) : A(1);
  const uint64_t seed = static_cast<uint64_t>(q.seed_offset[0]), offset = static_cast<uint64_t>(q.seed_offset[1]);
  const int64_t begin = chunk * kPartialChunk, end = std::min(q.n, begin + kPartialChunk);
  A part[4] = {};
  if (q.group > 1) {
    for (int64_t i = begin; i < end;) {
      const int64_t r = i / q.group, stop = std::min(end, (r + 1) * q.group);
      const bool kept = keep(philox::uniform_at(seed, offset, static_cast<uint64_t>(r)), q.p);
      for (; i < stop; ++i) {
        const A d = apply(static_cast<A>(g[i]), kept, q.scale, A(1), A(0));
        dx[i] = static_cast<T>(gate * d);
        if constexpr (kWithX) part[0] += static_cast<A>(x[i]) * d;
      }
    }
  } else {
    const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    alignas(64) uint32_t words[4][kBatch];
    for (int64_t base = begin; base < end; base += 4 * kBatch) {
      const int64_t ne = std::min<int64_t>(4 * kBatch, end - base);
      philox_batch(k0, k1, offset + static_cast<uint64_t>(base / 4), (ne + 3) / 4, words);
      if (ne == 4 * kBatch) {
        for (int64_t t = 0; t < kBatch; ++t)
          for (int j = 0; j < 4; ++j) {
            const int64_t i = base + 4 * t + j;
            const A d = apply(static_cast<A>(g[i]), keep(philox::to_uniform(words[j][t]), q.p), q.scale, A(1), A(0));
            dx[i] = static_cast<T>(gate * d);
            if constexpr (kWithX) part[j] += static_cast<A>(x[i]) * d;
          }
      } else {
        for (int64_t e = 0; e < ne; ++e) {
          const int64_t i = base + e;
          const A d = apply(static_cast<A>(g[i]), keep(philox::to_uniform(words[e % 4][e / 4]), q.p), q.scale, A(1),
                            A(0));
          dx[i] = static_cast<T>(gate * d);
          if constexpr (kWithX) part[e % 4] += static_cast<A>(x[i]) * d;
        }
      }
    }
  }
  if (q.partials) static_cast<A*>(q.partials)[chunk] = (part[0] + part[1]) + (part[2] + part[3]);
}

std::tuple<at::Tensor, at::Tensor> dropout_apply_bwd_cpu(const at::Tensor& grad, const c10::optional<at::Tensor>& x,
                                                         const c10::optional<at::Tensor>& gate,
                                                         const at::Tensor& seed_offset, double p, double scale,
                                                         int64_t group) {
  auto b = prepare_bwd(grad, x, gate, seed_offset, p, scale, group, kPartialChunk);
  const int64_t chunks = (grad.numel() + kPartialChunk - 1) / kPartialChunk;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "dropout_apply_bwd_cpu", [&] {
    at::parallel_for(0, chunks, 1, [&](int64_t s, int64_t e) {
      for (int64_t c = s; c < e; ++c) {
        if (b.p.residual) bwd_chunk<scalar_t, true>(b.p, c);
        else bwd_chunk<scalar_t, false>(b.p, c);
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
                                  [&] { apply_kernel<scalar_t>(r.p); });
  return r.y;
}

}  // namespace
}  // namespace dropout
}  // namespace tricks

TORCH_LIBRARY_IMPL(tricks_ext, CPU, m) {
  m.impl("dropout_apply", &tricks::dropout::dropout_apply_cpu);
  m.impl("dropout_apply_bwd", &tricks::dropout::dropout_apply_bwd_cpu);
}

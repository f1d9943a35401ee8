// Dropout with a regenerated mask, CPU: one Philox call per 4 consecutive elements.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "dropout.h"

namespace tricks {
namespace dropout {
namespace {

template <typename T>
void apply_kernel(const Params& q) {
  using A = acc_t<T>;
  const T* x = static_cast<const T*>(q.x);
  T* y = static_cast<T*>(q.y);
  const uint64_t seed = static_cast<uint64_t>(q.seed_offset[0]), offset = static_cast<uint64_t>(q.seed_offset[1]);
  const int64_t groups = (q.n + 3) / 4;
  at::parallel_for(0, groups, 2048, [&](int64_t b, int64_t e) {
    for (int64_t g = b; g < e; ++g) {
      const philox::Words w = philox::philox4x32_10(seed, offset + static_cast<uint64_t>(g));
      for (int j = 0; j < 4 && 4 * g + j < q.n; ++j) {
        const int64_t i = 4 * g + j;
        y[i] = static_cast<T>(apply(static_cast<A>(x[i]), keep(philox::to_uniform(w.w[j]), q.p), q.scale));
      }
    }
  });
}

at::Tensor dropout_apply_cpu(const at::Tensor& x, const at::Tensor& seed_offset, double p, double scale) {
  auto r = prepare(x, seed_offset, p, scale);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dropout_apply_cpu",
                                  [&] { apply_kernel<scalar_t>(r.p); });
  return r.y;
}

}  // namespace
}  // namespace dropout
}  // namespace tricks

TORCH_LIBRARY_IMPL(tricks_ext, CPU, m) { m.impl("dropout_apply", &tricks::dropout::dropout_apply_cpu); }

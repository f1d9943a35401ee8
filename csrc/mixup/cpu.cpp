// Mixup / CutMix mixing, CPU: one task per (pair, image row); a row of W * inner contiguous
// elements is cut at both samples' box edges, so each piece is a branch-free vector loop.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/register.h"

#include <algorithm>

#include "common/cpu_simd.h"
#include "mixup/prepare.h"

namespace tricks {
namespace mixup {
namespace {

template <typename T>
TRICKS_CPU_CLONES void mix_rows(const Params& q, int64_t t0, int64_t t1) {
  using A = acc_t<T>;
  const int64_t rows = q.sample / (q.width * q.inner), row_len = q.width * q.inner;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t i = t / rows, r = t % rows, j = q.batch - 1 - i, h = r % q.height;
    const T* xi = static_cast<const T*>(q.x) + i * q.sample + r * row_len;
    const T* xj = static_cast<const T*>(q.x) + j * q.sample + r * row_len;
    T* oi = static_cast<T*>(q.out) + i * q.sample + r * row_len;
    T* oj = static_cast<T*>(q.out) + j * q.sample + r * row_len;
    const int32_t* bi = q.box + 4 * i;
    const int32_t* bj = q.box + 4 * j;
    const bool row_i = h >= bi[0] && h < bi[1], row_j = h >= bj[0] && h < bj[1];
    // Column edges clipped to the row: the cuts index memory, so a box past the image (any
    // int32 the caller passes) must not move them outside [0, row_len].
    const int64_t ci0 = std::clamp<int64_t>(bi[2], 0, q.width) * q.inner, ci1 = std::clamp<int64_t>(bi[3], 0, q.width) * q.inner;
    const int64_t cj0 = std::clamp<int64_t>(bj[2], 0, q.width) * q.inner, cj1 = std::clamp<int64_t>(bj[3], 0, q.width) * q.inner;
    int64_t cuts[6] = {0, row_len, 0, 0, 0, 0};
    int n = 2;
    if (row_i) { cuts[n++] = ci0; cuts[n++] = ci1; }
    if (row_j) { cuts[n++] = cj0; cuts[n++] = cj1; }
    std::sort(cuts, cuts + n);
    const float ai = q.coef[2 * i], bi_ = q.coef[2 * i + 1], aj = q.coef[2 * j], bj_ = q.coef[2 * j + 1];
    for (int c = 0; c + 1 < n; ++c) {
      const int64_t s = cuts[c], e = cuts[c + 1];
      if (s >= e) continue;
      const bool in_i = row_i && s >= ci0 && s < ci1;
      const bool in_j = row_j && s >= cj0 && s < cj1;
      for (int64_t k = s; k < e; ++k) {  // read both before writing: out may alias x
        const A vi = static_cast<A>(xi[k]), vj = static_cast<A>(xj[k]);
        const A ri = in_i ? vj : mix(vi, vj, ai, bi_);
        const A rj = in_j ? vi : mix(vj, vi, aj, bj_);
        oi[k] = static_cast<T>(ri);
        oj[k] = static_cast<T>(rj);
      }
    }
  }
}

void run(const Params& q) {
  if (q.batch == 0 || q.sample == 0) return;
  const int64_t pairs = (q.batch + 1) / 2, rows = q.sample / (q.width * q.inner);
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / (q.width * q.inner));  // >= 16K elements per task
  switch (q.dtype) {
    case DType::Float32: at::parallel_for(0, pairs * rows, grain, [&](int64_t b, int64_t e) { mix_rows<float>(q, b, e); }); break;
    case DType::Float64: at::parallel_for(0, pairs * rows, grain, [&](int64_t b, int64_t e) { mix_rows<double>(q, b, e); }); break;
    case DType::Float16: at::parallel_for(0, pairs * rows, grain, [&](int64_t b, int64_t e) { mix_rows<at::Half>(q, b, e); }); break;
    case DType::BFloat16: at::parallel_for(0, pairs * rows, grain, [&](int64_t b, int64_t e) { mix_rows<at::BFloat16>(q, b, e); }); break;
  }
}

at::Tensor mixup_apply_cpu(const at::Tensor& x, const at::Tensor& coef, const at::Tensor& box, int64_t height,
                           int64_t width, int64_t inner) {
  at::Tensor out = at::empty_like(x);
  run(prepare(x, out, coef, box, height, width, inner));
  return out;
}

void mixup_apply_inplace_cpu(const at::Tensor& x, const at::Tensor& coef, const at::Tensor& box, int64_t height,
                             int64_t width, int64_t inner) {
  run(prepare(x, x, coef, box, height, width, inner));
}

}  // namespace
}  // namespace mixup
}  // namespace tricks

TRICKS_REGISTER(CPU, "mixup_apply", &tricks::mixup::mixup_apply_cpu,
                     "mixup_apply_", &tricks::mixup::mixup_apply_inplace_cpu)

// Box masking, CPU: one task per (sample, image row); the row's W * inner elements are cut at
// the edges of the boxes that cover this row, and each piece is a plain copy or fill loop.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "common/register.h"

#include <algorithm>
#include <vector>

#include "common/cpu_simd.h"
#include "mask_boxes/prepare.h"

namespace tricks {
namespace mask_boxes {
namespace {

template <typename T>
TRICKS_CPU_CLONES void mask_rows(const Params& q, int64_t t0, int64_t t1) {
  const int64_t row_len = q.width * q.inner, rows = q.sample / row_len;
  const T fill = static_cast<T>(q.value);
  std::vector<int64_t> cuts;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t n = t / rows, r = t % rows, h = r % q.height;
    const T* x = static_cast<const T*>(q.x) + n * q.sample + r * row_len;
    T* out = static_cast<T*>(q.out) + n * q.sample + r * row_len;
    const int32_t* box = q.box + 4 * q.boxes * n;
    cuts.assign({0, row_len});
    for (int64_t k = 0; k < q.boxes; ++k)
      if (h >= box[4 * k] && h < box[4 * k + 1] && box[4 * k + 2] < box[4 * k + 3]) {
        cuts.push_back(std::clamp<int64_t>(box[4 * k + 2], 0, q.width) * q.inner);
        cuts.push_back(std::clamp<int64_t>(box[4 * k + 3], 0, q.width) * q.inner);
      }
    std::sort(cuts.begin(), cuts.end());
    for (size_t c = 0; c + 1 < cuts.size(); ++c) {
      const int64_t s = cuts[c], e = cuts[c + 1];
      if (s >= e) continue;
      if (masked(box, q.boxes, h, s / q.inner)) {
        for (int64_t i = s; i < e; ++i) out[i] = fill;
      } else if (out != x) {
        for (int64_t i = s; i < e; ++i) out[i] = x[i];
      }
    }
  }
}

void run(const Params& q) {
  if (q.batch == 0 || q.sample == 0) return;
  const int64_t tasks = q.batch * (q.sample / (q.width * q.inner));
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / (q.width * q.inner));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16,
                                  q.dtype == DType::Float32   ? at::kFloat
                                  : q.dtype == DType::Float64 ? at::kDouble
                                  : q.dtype == DType::Float16 ? at::kHalf
                                                              : at::kBFloat16,
                                  "mask_boxes_cpu", [&] {
    at::parallel_for(0, tasks, grain, [&](int64_t b, int64_t e) { mask_rows<scalar_t>(q, b, e); });
  });
}

at::Tensor mask_boxes_cpu(const at::Tensor& x, const at::Tensor& box, double value, int64_t height, int64_t width,
                          int64_t inner) {
  at::Tensor out = at::empty_like(x);
  run(prepare(x, out, box, value, height, width, inner));
  return out;
}

void mask_boxes_inplace_cpu(const at::Tensor& x, const at::Tensor& box, double value, int64_t height, int64_t width,
                            int64_t inner) {
  run(prepare(x, x, box, value, height, width, inner));
}

}  // namespace
}  // namespace mask_boxes
}  // namespace tricks

TRICKS_REGISTER(CPU, "mask_boxes", &tricks::mask_boxes::mask_boxes_cpu,
                     "mask_boxes_", &tricks::mask_boxes::mask_boxes_inplace_cpu)

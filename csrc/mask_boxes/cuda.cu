// Box masking, CUDA: grid (sample chunks, samples), one element per thread; in-sample indices
// are 32-bit (samples < 2^31 elements, checked by the binding).
#include <cuda_runtime.h>

#include "common/cuda_dtype.cuh"
#include "common/cuda_launch.cuh"
#include "mask_boxes/math.h"

namespace tricks {
namespace mask_boxes {
namespace {

constexpr int kBlock = 256;

template <typename T>
__global__ void __launch_bounds__(kBlock) mask_kernel(const Params q) {
  using A = acc_t<T>;
  const uint32_t e = blockIdx.x * kBlock + threadIdx.x;
  if (e >= static_cast<uint64_t>(q.sample)) return;
  const int64_t n = blockIdx.y;
  const HW hw = sample_hw(e, q.height, q.width, q.inner);
  const int64_t i = n * q.sample + e;
  // out of place, the element is read before the boxes are tested, so its load and theirs are in
  // flight together (a masked element's read is wasted; the boxes cover a small part of a sample)
  const bool copy = q.out != q.x;
  const T v = copy ? static_cast<const T*>(q.x)[i] : T();
  if (masked(q.box + 4 * q.boxes * n, q.boxes, hw.h, hw.w))
    static_cast<T*>(q.out)[i] = from_acc<T>(static_cast<A>(q.value));
  else if (copy)
    static_cast<T*>(q.out)[i] = v;
}

}  // namespace

const char* launch_cuda(const Params& q, void* stream) {
  if (q.batch == 0 || q.sample == 0) return nullptr;
  if (q.batch > 65535) return "at most 65535 samples per batch (grid.y holds the samples)";
  const dim3 grid(static_cast<unsigned>((q.sample + kBlock - 1) / kBlock), static_cast<unsigned>(q.batch));
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  dispatch_dtype(q.dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    launch_kernel(mask_kernel<T>, grid, kBlock, 0, s, q);
  });
  return last_error();
}

}  // namespace mask_boxes
}  // namespace tricks

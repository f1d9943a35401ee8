// The dropout family's uniform stream, CUDA bindings.
#include <torch/library.h>

#include "cuda/philox_kernel.h"
#include "cuda/stream.h"

namespace tricks {
namespace philox {
namespace {

void philox_uniform_cuda(at::Tensor& out, int64_t seed, int64_t offset) {
  TORCH_CHECK(out.scalar_type() == at::kFloat && out.is_contiguous(), "philox_uniform_: out must be a contiguous float32 tensor");
  TORCH_CHECK(seed >= 0 && offset >= 0, "philox_uniform_: seed and offset must be >= 0");
  c10::DeviceGuard guard(out.device());
  check_launch(launch_uniform_cuda(out.data_ptr<float>(), out.numel(), static_cast<uint64_t>(seed),
                                   static_cast<uint64_t>(offset), current_cuda_stream(out)),
               "philox_uniform_");
}

}  // namespace
}  // namespace philox
}  // namespace tricks

TORCH_LIBRARY_IMPL(tricks_ext, CUDA, m) { m.impl("philox_uniform_", &tricks::philox::philox_uniform_cuda); }

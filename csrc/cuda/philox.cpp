// The dropout family's uniform stream, CUDA bindings.
#include <torch/library.h>

#include "cuda/philox_kernel.h"
#include "cuda/stream.h"
#include "philox.h"

namespace tricks {
namespace philox {
namespace {

void philox_uniform_cuda(at::Tensor& out, int64_t seed, int64_t offset) {
  check_uniform_args(out, seed, offset);
  c10::DeviceGuard guard(out.device());
  check_launch(launch_uniform_cuda(out.data_ptr<float>(), out.numel(), static_cast<uint64_t>(seed),
                                   static_cast<uint64_t>(offset), current_cuda_stream(out)),
               "philox_uniform_");
}

}  // namespace
}  // namespace philox
}  // namespace tricks

TORCH_LIBRARY_IMPL(tricks_ext, CUDA, m) { m.impl("philox_uniform_", &tricks::philox::philox_uniform_cuda); }

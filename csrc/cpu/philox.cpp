// The dropout family's uniform stream on CPU: out[i] = u of element i of (seed, offset).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "tricks/philox.h"
#include "philox.h"

namespace tricks {
namespace philox {
namespace {

void philox_uniform_cpu(at::Tensor& out, int64_t seed, int64_t offset) {
  check_uniform_args(out, seed, offset);
  float* o = out.data_ptr<float>();
  const uint64_t s = static_cast<uint64_t>(seed), off = static_cast<uint64_t>(offset);
  at::parallel_for(0, out.numel(), 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) o[i] = uniform(s, off, static_cast<uint64_t>(i));
  });
}

}  // namespace
}  // namespace philox
}  // namespace tricks

TORCH_LIBRARY_IMPL(tricks_ext, CPU, m) { m.impl("philox_uniform_", &tricks::philox::philox_uniform_cpu); }

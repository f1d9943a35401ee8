// Argument checks of philox_uniform_, shared by the CPU and CUDA bindings.
#pragma once

#include <ATen/ATen.h>

namespace tricks {
namespace philox {

inline void check_uniform_args(const at::Tensor& out, int64_t seed, int64_t offset) {
  TORCH_CHECK(out.scalar_type() == at::kFloat && out.is_contiguous(), "philox_uniform_: out must be a contiguous float32 tensor");
  TORCH_CHECK(seed >= 0 && offset >= 0, "philox_uniform_: seed and offset must be >= 0");
}

}  // namespace philox
}  // namespace tricks

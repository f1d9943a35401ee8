// Torch-free launcher of the dropout family's uniform stream (CUDA).
#pragma once

#include <cstdint>

namespace tricks {
namespace philox {

// out[i] = u of element i of (seed, offset), i < n. Returns nullptr or the CUDA error.
const char* launch_uniform_cuda(float* out, int64_t n, uint64_t seed, uint64_t offset, void* stream);

}  // namespace philox
}  // namespace tricks

// Torch-free launcher of dropout with a regenerated mask (CUDA). Returns nullptr or the error.
#pragma once

#include "dropout/math.h"

namespace tricks {
namespace dropout {

const char* launch_apply_cuda(const Params& q, void* stream);

// Elements per block of the backward kernel, hence per partial sum of the gate gradient.
constexpr int64_t kCudaPartialElements = 1024;

// Backward: one partial of the gate gradient per block of kCudaPartialElements.
const char* launch_bwd_cuda(const BwdParams& q, void* stream);

}  // namespace dropout
}  // namespace tricks

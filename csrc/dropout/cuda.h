// Torch-free launcher of dropout with a regenerated mask (CUDA). Returns nullptr or the error.
#pragma once

#include "dropout/math.h"

namespace tricks {
namespace dropout {

const char* launch_apply_cuda(const Params& q, void* stream);

// Elements per block of the backward kernel, hence per partial sum of the gate gradient.
constexpr int64_t kBwdBlockElements = 1024;

// Backward: q.x = grad, q.residual = saved x (or nullptr), q.y = dx, q.partials per block.
const char* launch_bwd_cuda(const Params& q, void* stream);

}  // namespace dropout
}  // namespace tricks

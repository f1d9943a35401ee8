// Torch-free launcher of the fused optimizer step (CUDA). Returns nullptr or the CUDA error.
#pragma once

#include "optim/math.h"

namespace tricks {
namespace optim {

const char* launch_step_cuda(const Params& q, void* stream);

}  // namespace optim
}  // namespace tricks

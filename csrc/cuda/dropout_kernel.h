// Torch-free launcher of dropout with a regenerated mask (CUDA). Returns nullptr or the error.
#pragma once

#include "tricks/dropout.h"

namespace tricks {
namespace dropout {

const char* launch_apply_cuda(const Params& q, void* stream);

}  // namespace dropout
}  // namespace tricks

// Torch-free launcher of Mixup / CutMix mixing (CUDA). Returns nullptr or the error.
#pragma once

#include "mixup/math.h"

namespace tricks {
namespace mixup {

const char* launch_cuda(const Params& q, void* stream);

}  // namespace mixup
}  // namespace tricks

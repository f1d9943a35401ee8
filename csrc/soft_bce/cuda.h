// Torch-free launchers of the soft-target binary cross-entropy (CUDA). Return nullptr or the error.
#pragma once

#include "soft_bce/math.h"

namespace tricks {
namespace soft_bce {

const char* launch_fwd_cuda(const Params& q, void* stream);
const char* launch_bwd_cuda(const Params& q, void* stream);

}  // namespace soft_bce
}  // namespace tricks

// Torch-free launchers of the soft-target cross-entropy (CUDA). Return nullptr or the error.
#pragma once

#include "soft_ce/math.h"

namespace tricks {
namespace soft_ce {

const char* launch_fwd_cuda(const Params& q, void* stream);
const char* launch_bwd_cuda(const Params& q, void* stream);

}  // namespace soft_ce
}  // namespace tricks

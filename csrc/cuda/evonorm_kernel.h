// Torch-free launchers of EvoNorm-S0 (CUDA). Return nullptr or the error.
#pragma once

#include "tricks/evonorm.h"

namespace tricks {
namespace evonorm {

const char* launch_fwd_cuda(const Params& q, void* stream);
const char* launch_bwd_cuda(const Params& q, void* stream);

}  // namespace evonorm
}  // namespace tricks

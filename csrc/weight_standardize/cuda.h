// Torch-free launchers for the weight standardization CUDA kernels.
// Each returns nullptr on success or the CUDA error string.
#pragma once

#include "weight_standardize/math.h"

namespace tricks {
namespace ws {

const char* launch_fwd_cuda(const Params& p, void* stream);
const char* launch_bwd_cuda(const BwdParams& p, void* stream);

}  // namespace ws
}  // namespace tricks

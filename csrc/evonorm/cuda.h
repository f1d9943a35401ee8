// Torch-free launchers of EvoNorm-S0 (CUDA). Return nullptr or the error.
#pragma once

#include "evonorm/math.h"

namespace tricks {
namespace evonorm {

// Forward; q.split > 1 runs the split reduction (q.partials: [N * G, split, 3] workspace).
const char* launch_fwd_cuda(const Params& q, void* stream);
// Chunks per group for the split forward on the current device (1: no split).
int64_t choose_split_cuda(int64_t groups_total, int64_t group_numel);
const char* launch_bwd_cuda(const Params& q, void* stream);

}  // namespace evonorm
}  // namespace tricks

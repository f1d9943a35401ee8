// Torch-free launcher of box masking (CUDA). Returns nullptr or the error.
#pragma once

#include "mask_boxes/math.h"

namespace tricks {
namespace mask_boxes {

const char* launch_cuda(const Params& q, void* stream);

}  // namespace mask_boxes
}  // namespace tricks

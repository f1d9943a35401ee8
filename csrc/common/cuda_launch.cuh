// Launch-side helpers of the torch-free CUDA launchers.
#pragma once

#include <cuda_runtime.h>

namespace tricks {

// nullptr when the last launch succeeded, else the CUDA error string (the error is cleared).
inline const char* last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace tricks

// Device guard and current-stream lookup for the CUDA bindings, through headers that every torch
// wheel ships (the CPU wheel has no c10/cuda or ATen/cuda): the extension then compiles, links
// (against cudart only) and loads on CPU-only machines too.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

namespace tricks {

inline void* current_cuda_stream(const at::Tensor& t) {
  TORCH_CHECK(t.is_cuda(), "expected a CUDA tensor, got one on ", t.device());
  return c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(t.device()).native_handle();
}

inline void check_launch(const char* err, const char* op) {
  TORCH_CHECK(err == nullptr, op, ": CUDA kernel launch failed: ", err);
}

}  // namespace tricks

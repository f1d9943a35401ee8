// Device guard, current-stream lookup and kernel registration for the CUDA bindings, through
// headers that every torch wheel ships (the CPU wheel has no c10/cuda or ATen/cuda): the
// extension then compiles, links (against cudart only) and loads on CPU-only machines too.
// The same bindings built with TRICKS_SIMT (csrc/simt/kernels.cpp) run the emulated kernels on
// CPU tensors and register as tricks_simt::<op> (the simt backend).
#pragma once

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/library.h>

#include "common/register.h"

// TRICKS_REGISTER_CUDA("op", &kernel, ...): the CUDA kernels of tricks_ext::<op>; built with
// TRICKS_SIMT, the same bindings defined as tricks_simt::<op>, CPU kernels whose schema torch
// infers from their signature.
#if defined(TRICKS_SIMT)
#define TRICKS_REGISTER_CUDA(...) \
  TORCH_LIBRARY_FRAGMENT(tricks_simt, m) { ::tricks::register_kernels<true>(m, c10::DispatchKey::CPU, __VA_ARGS__); }
#else
#define TRICKS_REGISTER_CUDA(...) TRICKS_REGISTER(CUDA, __VA_ARGS__)
#endif

namespace tricks {

inline void* current_cuda_stream(const at::Tensor& t) {
#if defined(TRICKS_SIMT)
  TORCH_CHECK(t.is_cpu(), "the simt backend runs CPU tensors, got one on ", t.device());
  return nullptr;
#else
  TORCH_CHECK(t.is_cuda(), "expected a CUDA tensor, got one on ", t.device());
  return c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(t.device()).native_handle();
#endif
}

inline void check_launch(const char* err, const char* op) {
  TORCH_CHECK(err == nullptr, op, ": CUDA kernel launch failed: ", err);
}

}  // namespace tricks

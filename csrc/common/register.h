// Registration of an op's kernels, one line per backend: TRICKS_REGISTER(CPU, "op", &kernel,
// "op_bwd", &kernel_bwd) pairs each schema name with its kernel (the CUDA bindings use
// TRICKS_REGISTER_CUDA, common/cuda_stream.h).
#pragma once

#include <torch/library.h>

namespace tricks {

// define: m.def(name, kernel) for a library that owns the names (simt), else m.impl(name, kernel).
template <bool define>
void register_kernels(torch::Library&, c10::DispatchKey) {}

template <bool define, typename Kernel, typename... Rest>
void register_kernels(torch::Library& m, c10::DispatchKey key, const char* name, Kernel kernel, Rest... rest) {
  if constexpr (define) {
    m.def(name, torch::dispatch(key, kernel));
  } else {
    m.impl(name, kernel);
  }
  register_kernels<define>(m, key, rest...);
}

}  // namespace tricks

#define TRICKS_REGISTER(dispatch_key, ...)                                                    \
  TORCH_LIBRARY_IMPL(tricks_ext, dispatch_key, m) {                                            \
    ::tricks::register_kernels<false>(m, c10::DispatchKey::dispatch_key, __VA_ARGS__);           \
  }

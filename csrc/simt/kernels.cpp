// The simt backend: every op's CUDA kernels (csrc/<op>/cuda.cu) and CUDA bindings
// (csrc/<op>/cuda_binding.cpp), unchanged, compiled by the host compiler against the SIMT
// emulator (simt/simt.h) and registered as tricks_simt::<op>, CPU kernels of the same signature
// (tricks_ext/ops/_simt.py wraps them). One translation unit: torch's headers are parsed once.
// Everything here lives in namespace tricks_simt, so the CUDA build's tricks::<op>::launch_*
// symbols, linked into the same library, stay distinct.
#define TRICKS_SIMT 1

#include <ATen/ATen.h>
#include <torch/library.h>

#include "simt/simt.h"

#define tricks tricks_simt

#include "dropout/cuda.cu"
#include "dropout/cuda_binding.cpp"
#include "evonorm/cuda.cu"
#include "evonorm/cuda_binding.cpp"
#include "mask_boxes/cuda.cu"
#include "mask_boxes/cuda_binding.cpp"
#include "mixup/cuda.cu"
#include "mixup/cuda_binding.cpp"
#include "optim/cuda.cu"
#include "optim/cuda_binding.cpp"
#include "sasa/cuda.cu"
#include "sasa/cuda_binding.cpp"
#include "soft_bce/cuda.cu"
#include "soft_bce/cuda_binding.cpp"
#include "soft_ce/cuda.cu"
#include "soft_ce/cuda_binding.cpp"
#include "soft_f1/cuda.cu"
#include "soft_f1/cuda_binding.cpp"
#include "weight_standardize/cuda.cu"
#include "weight_standardize/cuda_binding.cpp"

TORCH_LIBRARY_FRAGMENT(tricks_simt, m) {
  // order: 0 forward, 1 reverse, 2 seeded shuffle (simt::Schedule); applies to later launches
  m.def("set_schedule(int order, int seed) -> ()", [](int64_t order, int64_t seed) {
    TORCH_CHECK(order >= 0 && order <= 2, "set_schedule: order must be 0 (forward), 1 (reverse) or 2 (shuffle)");
    ::simt::set_schedule(static_cast<::simt::Schedule>(order), static_cast<uint64_t>(seed));
  });
  // (kernel address, launches) pairs flattened; tests/test_simt.py names them from the symbol table
  m.def("launch_counts() -> int[]", []() {
    std::vector<int64_t> flat;
    for (const auto& [kernel, n] : ::simt::launch_counts()) {
      flat.push_back(static_cast<int64_t>(reinterpret_cast<uintptr_t>(kernel)));
      flat.push_back(static_cast<int64_t>(n));
    }
    return flat;
  });
}

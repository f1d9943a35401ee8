// Kernels that test the SIMT emulator itself (tests/test_simt.py), registered as
// tricks_simt::selftest_<name>: warp exchanges against CUDA's mask and width rules, dynamic
// shared memory, the launch limits, barrier misuse, a race and a read of unwritten shared memory.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

#include "simt/simt.h"

namespace {

constexpr int kThreads = 64;  // two warps

// Lane l of each warp writes op(mask, value = 100 * warp + lane, arg, width) to out[thread], or
// -1 when it is not in `mask` (it does not call the op); fp64, exact for a ballot's 32 bits.
__global__ void shuffle_kernel(int op, unsigned mask, int arg, int width, double* out) {
  const int lane = threadIdx.x % 32;
  if (!(mask & (1u << lane))) {
    out[threadIdx.x] = -1;
    return;
  }
  const double v = 100 * (threadIdx.x / 32) + lane;
  double r = 0;
  switch (op) {
    case 0: r = __shfl_sync(mask, v, arg, width); break;
    case 1: r = __shfl_up_sync(mask, v, arg, width); break;
    case 2: r = __shfl_down_sync(mask, v, arg, width); break;
    case 3: r = __shfl_xor_sync(mask, v, arg, width); break;
    case 4: r = static_cast<double>(__ballot_sync(mask, lane % 3 == 0)); break;
    case 5: r = static_cast<double>(__any_sync(mask, lane == arg)); break;
    case 6: r = static_cast<double>(__all_sync(mask, lane != arg)); break;
    default: __syncwarp(mask); r = v; break;
  }
  out[threadIdx.x] = r;
}

// Block sum through dynamic shared memory (n = blockDim.x floats); every thread writes the sum.
__global__ void dynamic_sum_kernel(const float* x, float* out) {
  TRICKS_DYNAMIC_SHARED(float, buf);
  buf[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
  __syncthreads();
  float s = 0;
  for (unsigned i = 0; i < blockDim.x; ++i) s += buf[i];
  out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

__global__ void empty_kernel(int*) {}

// mode 0: half the block exits before a barrier; 1: two barrier sites; 2: a shuffle whose mask
// names an exited lane; 3: a shuffle with width 12; 4: a mask without the calling lane.
__global__ void misuse_kernel(int mode, float* out) {
  const int t = threadIdx.x;
  if (mode == 0) {
    if (t >= kThreads / 2) return;
    __syncthreads();
  } else if (mode == 1) {
    if (t % 2) __syncthreads();
    else __syncthreads();
  } else if (mode == 2) {
    if (t % 32 == 5) return;
    out[t] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
  } else if (mode == 3) {
    out[t] = __shfl_xor_sync(0xffffffffu, 1.0f, 1, 12);
  } else {
    out[t] = __shfl_xor_sync(0xfffffffeu, 1.0f, 1);
  }
}

// out[t] = what thread t + 1 wrote to shared memory, read with (race 1) or without (race 0) a
// barrier in between; with unwritten 1 the last thread reads an element nobody writes.
__global__ void race_kernel(int race, int unwritten, float* out) {
  __shared__ float buf[kThreads + 1];
  const int t = threadIdx.x;
  buf[t] = static_cast<float>(t);
  if (!race) __syncthreads();
  out[t] = buf[t + 1 < kThreads || unwritten ? t + 1 : 0];
}

std::string error_of() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? "" : cudaGetErrorString(e);
}

at::Tensor selftest_shuffle(int64_t op, int64_t mask, int64_t arg, int64_t width) {
  at::Tensor out = at::empty({kThreads}, at::kDouble);
  simt::launch(shuffle_kernel, dim3(1), dim3(kThreads), 0, nullptr, static_cast<int>(op),
               static_cast<unsigned>(mask), static_cast<int>(arg), static_cast<int>(width), out.data_ptr<double>());
  const std::string err = error_of();
  TORCH_CHECK(err.empty(), err);
  return out;
}

at::Tensor selftest_dynamic_sum(const at::Tensor& x, int64_t block) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.is_contiguous() && x.numel() % block == 0);
  at::Tensor out = at::empty_like(x);
  simt::launch(dynamic_sum_kernel, dim3(static_cast<unsigned>(x.numel() / block)), dim3(static_cast<unsigned>(block)),
               block * sizeof(float), nullptr, x.data_ptr<float>(), out.data_ptr<float>());
  const std::string err = error_of();
  TORCH_CHECK(err.empty(), err);
  return out;
}

// The error of launching an empty kernel with this configuration ("" when it runs).
std::string selftest_launch(at::IntArrayRef grid, at::IntArrayRef block, int64_t smem, int64_t optin) {
  TORCH_CHECK(grid.size() == 3 && block.size() == 3);
  if (optin > 0) {
    const cudaError_t e = cudaFuncSetAttribute(empty_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(optin));
    if (e != cudaSuccess) return error_of();
  }
  simt::launch(empty_kernel, dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]),
               static_cast<size_t>(smem), nullptr, nullptr);
  return error_of();
}

std::string selftest_misuse(int64_t mode) {
  at::Tensor out = at::zeros({kThreads}, at::kFloat);
  simt::launch(misuse_kernel, dim3(1), dim3(kThreads), 0, nullptr, static_cast<int>(mode), out.data_ptr<float>());
  return error_of();
}

at::Tensor selftest_race(int64_t race, int64_t unwritten) {
  at::Tensor out = at::empty({kThreads}, at::kFloat);
  simt::launch(race_kernel, dim3(1), dim3(kThreads), 0, nullptr, static_cast<int>(race), static_cast<int>(unwritten),
               out.data_ptr<float>());
  const std::string err = error_of();
  TORCH_CHECK(err.empty(), err);
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(tricks_simt, m) {
  m.def("selftest_shuffle", torch::dispatch(c10::DispatchKey::CompositeExplicitAutograd, &selftest_shuffle));
  m.def("selftest_dynamic_sum", torch::dispatch(c10::DispatchKey::CPU, &selftest_dynamic_sum));
  m.def("selftest_launch", &selftest_launch);
  m.def("selftest_misuse", &selftest_misuse);
  m.def("selftest_race", torch::dispatch(c10::DispatchKey::CompositeExplicitAutograd, &selftest_race));
}

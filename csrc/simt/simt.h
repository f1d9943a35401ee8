// SIMT host emulator: the unchanged CUDA kernel sources (csrc/<op>/cuda.cu) compiled by the host
// C++ compiler and run on CPU, for the `simt` backend (csrc/simt/kernels.cpp). The threads of a
// block run as cooperative fibers (ucontext: one stack each, no OS thread per CUDA thread),
// blocks one after another, one launch at a time in the process.
//
// What a kernel sees:
//   threadIdx / blockIdx / blockDim / gridDim / warpSize; __syncthreads() (a block barrier);
//   __syncwarp, __shfl_sync, __shfl_up_sync, __shfl_down_sync, __shfl_xor_sync, __ballot_sync,
//   __any_sync, __all_sync, exchanged at a warp barrier among the lanes of `mask`, with CUDA's
//   `width` rules (a lane reading a lane outside `mask` gets poison bytes, as the value is
//   undefined on a GPU); static __shared__ (one copy shared by the block's fibers, filled with
//   0xff bytes, a NaN in every float type, at every block start) and dynamic shared memory
//   (TRICKS_DYNAMIC_SHARED, sized by the launch, heap-allocated per block so AddressSanitizer
//   sees overruns); __half / __nv_bfloat16 through the CUDA headers' host code, so conversions
//   round as on the device; the intrinsics below.
// What it rejects, as a GPU would (the launch returns an error, never runs part of a grid):
//   a block over 1024 threads (or x, y over 1024, z over 64), grid.y or grid.z over 65535,
//   dynamic shared memory over 48 KiB without cudaFuncSetAttribute's opt-in or over 227 KiB
//   with it (sm_90); a __syncthreads that not every live thread of the block reaches (or that
//   threads reach at different call sites), a warp op whose mask names a lane that exited, is
//   missing from the block, or waits elsewhere, or lanes of one mask calling different ops.
// Race detection: each launch runs its blocks with the threads resumed between barriers in the
// order set by set_schedule: forward, reverse, or a seeded shuffle; a warp whose exchange
// completes runs on at once, ahead of the warps after it, up to its next block barrier (warps
// are not in lockstep on a GPU either). tricks_ext/ops/_simt.py runs every op under all three
// orders and requires bit-identical results.
#pragma once

// nvcc's `#pragma unroll` means nothing to the host compiler
#pragma GCC diagnostic ignored "-Wunknown-pragmas"

#if defined(__CUDACC__)
#error "simt/simt.h is the host emulator of the CUDA kernels; nvcc compiles them for the GPU"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <math.h>  // the float overloads of exp, log, sqrt, ... in the global namespace, as CUDA has them
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace simt {

struct ThreadState {
  uint3 idx;
};
struct BlockState {
  uint3 idx;
  dim3 dim, grid;
};

// The running fiber's thread and block (valid only inside an emulated kernel).
const ThreadState& this_thread();
const BlockState& this_block();

enum class Schedule : int { Forward = 0, Reverse = 1, Shuffle = 2 };
void set_schedule(Schedule order, uint64_t seed);

// A block barrier; `file`/`line` name the call site (threads must meet at the same one).
void syncthreads(const char* file, int line);

enum class WarpOp : int { Sync, Idx, Up, Down, Xor, Ballot, Any, All };
// One warp-level exchange: the calling lane publishes `value` (bytes) or `pred`, waits for every
// lane of `mask`, and gets its result (bytes into `out`, or a predicate word).
uint32_t warp_exchange(WarpOp op, uint32_t mask, const void* value, size_t size, int arg, int width, int pred,
                       void* out, const char* file, int line);

// Launches so far per kernel (its host address), for the coverage check of the simt tests.
std::vector<std::pair<const void*, uint64_t>> launch_counts();

// Dynamic shared memory of the running block (TRICKS_DYNAMIC_SHARED).
void* dynamic_shared();

// Runs body(ctx) on every thread of every block of the launch; returns cudaSuccess or an error
// whose message get_error_string gives.
cudaError_t run(const void* kernel, dim3 grid, dim3 block, size_t dynamic_smem, void (*body)(void*), void* ctx);

// The emulated runtime: errors, the device and the per-kernel shared-memory opt-in.
cudaError_t get_last_error();
cudaError_t peek_at_last_error();
const char* get_error_string(cudaError_t e);
cudaError_t get_device(int* device);
cudaError_t device_get_attribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t func_set_attribute(const void* kernel, cudaFuncAttribute attr, int value);
template <typename K>
cudaError_t func_set_attribute(K* kernel, cudaFuncAttribute attr, int value) {
  return func_set_attribute(reinterpret_cast<const void*>(kernel), attr, value);
}

// kernel<<<grid, block, smem, stream>>>(args...) of the emulator: the arguments are converted
// to the kernel's parameter types once (the GPU's parameter space) and every thread calls the
// kernel with them.
template <typename... P, typename... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t, A&&... args) {
  struct Call {
    void (*kernel)(P...);
    std::tuple<std::decay_t<P>...> params;
  } call{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
  run(reinterpret_cast<const void*>(kernel), grid, block, smem,
      [](void* c) { std::apply(static_cast<Call*>(c)->kernel, static_cast<Call*>(c)->params); }, &call);
}

template <typename T>
T shuffle(WarpOp op, const char* file, int line, uint32_t mask, T v, int arg, int width = 32) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "warp shuffles move values of at most 8 bytes");
  T out;
  warp_exchange(op, mask, &v, sizeof(T), arg, width, 0, &out, file, line);
  return out;
}

inline void syncwarp(const char* file, int line, uint32_t mask = 0xffffffffu) {
  warp_exchange(WarpOp::Sync, mask, nullptr, 0, 0, 32, 0, nullptr, file, line);
}

inline uint32_t vote(WarpOp op, const char* file, int line, uint32_t mask, bool pred) {
  return warp_exchange(op, mask, nullptr, 0, 0, 32, pred ? 1 : 0, nullptr, file, line);
}

}  // namespace simt

#define threadIdx (::simt::this_thread().idx)
#define blockIdx (::simt::this_block().idx)
#define blockDim (::simt::this_block().dim)
#define gridDim (::simt::this_block().grid)
#define warpSize 32

// One copy per kernel variable, in a section of its own that the emulator poisons at block start.
#undef __shared__
#define __shared__ static __attribute__((section("simt_shared"), aligned(16)))
#define TRICKS_DYNAMIC_SHARED(T, name) T* const name = static_cast<T*>(::simt::dynamic_shared())
#define __launch_bounds__(...)

#define __syncthreads() ::simt::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::simt::syncwarp(__FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_sync(...) ::simt::shuffle(::simt::WarpOp::Idx, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::simt::shuffle(::simt::WarpOp::Up, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::simt::shuffle(::simt::WarpOp::Down, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::simt::shuffle(::simt::WarpOp::Xor, __FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, pred) ::simt::vote(::simt::WarpOp::Ballot, __FILE__, __LINE__, mask, pred)
#define __any_sync(mask, pred) static_cast<int>(::simt::vote(::simt::WarpOp::Any, __FILE__, __LINE__, mask, pred))
#define __all_sync(mask, pred) static_cast<int>(::simt::vote(::simt::WarpOp::All, __FILE__, __LINE__, mask, pred))

// The runtime API the launchers call.
#define cudaGetLastError ::simt::get_last_error
#define cudaPeekAtLastError ::simt::peek_at_last_error
#define cudaGetErrorString ::simt::get_error_string
#define cudaGetDevice ::simt::get_device
#define cudaDeviceGetAttribute ::simt::device_get_attribute
#define cudaFuncSetAttribute ::simt::func_set_attribute

// Device intrinsics, with the host results of their device definitions (IEEE round-to-nearest
// for the _rn forms; the approximate ones, __fdividef, __expf, rsqrtf, exactly rounded here).
template <typename T>
inline T __ldg(const T* p) { return *p; }
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
  return static_cast<unsigned int>((static_cast<uint64_t>(a) * b) >> 32);
}
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<int64_t>(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned int>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned int __brev(unsigned int x) {
  unsigned int r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }

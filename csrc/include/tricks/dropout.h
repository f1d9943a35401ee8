// Dropout math shared by the CPU and CUDA kernels: element i of x is kept iff
// u_i >= p and p < 1 (u from the Philox stream, tricks/philox.h), and scaled by
// scale = fp32(1 / (1 - p)), computed once on the host so every backend multiplies by the
// same fp32 number and outputs agree bit for bit. p == 1 drops everything (no inf * 0).
// The fused residual form (dropout_add, ReZero): y = residual + gate * dropout(x), with
// residual = 0 and gate = 1 when absent (then y = dropout(x) exactly).
#pragma once

#include "tricks/common.h"
#include "tricks/philox.h"

namespace tricks {
namespace dropout {

// Elements per partial sum of the gate gradient (CPU task chunk; a CUDA block and a Triton
// program cover 1024): fixed, so the result does not depend on the thread count.
constexpr int64_t kPartialChunk = 1 << 16;

struct Params {
  const void* x;
  const void* residual;        // like x, or nullptr
  const void* gate;            // one acc_t scalar (fp32; fp64 for fp64 x), or nullptr
  void* y;
  void* partials;              // backward only: acc_t per chunk, or nullptr
  const int64_t* seed_offset;  // [2]: seed, offset (device memory for CUDA, host for CPU)
  int64_t n;
  float p;
  float scale;
  DType dtype;
};

TRICKS_HD bool keep(float u, float p) {
  return p < 1.0f && u >= p;
}

template <typename A>
TRICKS_HD A apply(A x, bool kept, float scale, A gate, A residual) {
  const A d = kept ? x * static_cast<A>(scale) : A(0);
  return residual + gate * d;
}

}  // namespace dropout
}  // namespace tricks

// Dropout math shared by the CPU and CUDA kernels: element i of x is kept iff
// u_{i / group} >= p and p < 1 (u from the Philox stream below), and scaled by
// scale = fp32(1 / (1 - p)), computed once on the host so every backend multiplies by the
// same fp32 number and outputs agree bit for bit. p == 1 drops everything (no inf * 0).
// group = 1 is dropout; group = elements per sample is drop path (one draw per sample).
// The fused residual form (dropout_add, ReZero): y = residual + gate * dropout(x), with
// residual = 0 and gate = 1 when absent (then y = dropout(x) exactly).
#pragma once

#include <cstdint>

#include "common/math.h"

namespace tricks {

// Counter-based RNG of the dropout family: Philox4x32-10 exactly as Triton's
// tl.randint4x(seed, counter) computes it, so every backend (torch reference, C++ CPU, CUDA,
// Triton) draws bit-identical masks for the same (seed, offset).
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (c & 0xffffffff, c >> 32, 0, 0) with c = offset + i / 4
//   element i takes output word i % 4
//   u       = float(int32 bitcast of the word, x < 0 -> ~x) * 4.6566127342e-10f
// (Triton's uint_to_uniform_float); an element is kept iff u >= p.
namespace philox {

struct Words {
  uint32_t w[4];
};

TRICKS_HD uint32_t mulhi(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

// One Philox4x32 round and key bump, in place.
TRICKS_HD void round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t& k0, uint32_t& k1) {
  const uint32_t a0 = c0, a2 = c2;
  c0 = mulhi(0xCD9E8D57u, a2) ^ c1 ^ k0;
  c2 = mulhi(0xD2511F53u, a0) ^ c3 ^ k1;
  c1 = 0xCD9E8D57u * a2;
  c3 = 0xD2511F53u * a0;
  k0 += 0x9E3779B9u;
  k1 += 0xBB67AE85u;
}

TRICKS_HD Words philox4x32_10(uint64_t seed, uint64_t counter) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < 10; ++r) round(c0, c1, c2, c3, k0, k1);
  return Words{{c0, c1, c2, c3}};
}

TRICKS_HD float to_uniform(uint32_t word) {
  int32_t x = static_cast<int32_t>(word);
  x = x < 0 ? ~x : x;
  return static_cast<float>(x) * 4.6566127342e-10f;
}

// u of element `index` of the stream (seed, offset).
TRICKS_HD float uniform_at(uint64_t seed, uint64_t offset, uint64_t index) {
  return to_uniform(philox4x32_10(seed, offset + index / 4).w[index % 4]);
}

}  // namespace philox

namespace dropout {

// Elements per partial sum of the gate gradient on CPU (a parallel task; CUDA:
// kCudaPartialElements in dropout/cuda.h): fixed, so the result does not depend on the thread
// count.
constexpr int64_t kCpuPartialElements = 1 << 16;

// Forward: y = residual + gate * dropout(x).
struct Params {
  const void* x;
  const void* residual;        // like x, or nullptr
  const void* gate;            // one acc_t scalar (fp32; fp64 for fp64 x), or nullptr
  void* y;
  const int64_t* seed_offset;  // [2]: seed, offset (device memory for CUDA, host for CPU)
  int64_t n;
  int64_t group;               // consecutive elements sharing one draw (>= 1)
  float p;                     // drop probability
  float scale;
  DType dtype;
};

// Backward: dx = gate * dropout(grad) and, with x, per-chunk partial sums of x * dropout(grad)
// (the gate gradient). The mask fields mean what they mean in Params.
struct BwdParams {
  const void* grad;
  const void* x;               // the forward's input (saved when the gate needs a gradient), or nullptr
  const void* gate;
  void* dx;
  void* partials;              // acc_t per chunk (with x), or nullptr
  const int64_t* seed_offset;
  int64_t n;
  int64_t group;
  float p;
  float scale;
  DType dtype;
};

TRICKS_HD bool keep(float u, float p) {
  return p < 1.0f && u >= p;
}

// residual + gate * d, rounded as the CPU rounds it (mul_rn, add_rn: no FMA contraction).
template <typename A>
TRICKS_HD A apply(A x, bool kept, float scale, A gate, A residual) {
  const A d = kept ? x * static_cast<A>(scale) : A(0);
  return add_rn(residual, mul_rn(gate, d));
}

// One element's share of the gate gradient, x * d with d = dropout(grad): 0 for a dropped
// element whatever x is (x = inf must not make 0 * inf = NaN), as the reference's
// sum(grad * dropout(x)) has it.
template <typename A>
TRICKS_HD A gate_term(A x, A d, bool kept) {
  return kept ? x * d : A(0);
}

// Torch-free CUDA launchers (cuda.cu): each returns nullptr or the CUDA error.
const char* launch_apply_cuda(const Params& q, void* stream);

// Elements per block of the backward kernel, hence per partial sum of the gate gradient.
constexpr int64_t kCudaPartialElements = 1024;

// Backward: one partial of the gate gradient per block of kCudaPartialElements.
const char* launch_bwd_cuda(const BwdParams& q, void* stream);

}  // namespace dropout
}  // namespace tricks

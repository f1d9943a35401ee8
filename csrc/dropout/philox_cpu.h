// Keep masks of the dropout family on CPU, a batch of Philox blocks at a time, in element order.
// Two implementations of the one Philox4x32-10 of dropout/math.h: AVX2 intrinsics (8 blocks
// per step; GCC's auto-vectorizer turns the 32x32->64 multiplies into shift-and-add chains
// that run at scalar speed) and the portable scalar loop. Chosen once at load:
// AVX2 when the CPU has it, unless TRICKS_EXT_NO_AVX2=1 (tests run both and compare masks).
#pragma once

#include <cstdint>

namespace tricks {
namespace dropout {

constexpr int64_t kKeepBatch = 64;  // Philox blocks per call: 256 elements, a 1 KB mask

// keep[4t + j] = all ones iff word j of Philox block (key seed, counter first + t) keeps its
// element (u >= p and p < 1), else 0; t < kKeepBatch, j < 4. Element i of a dropout stream
// (seed, offset) is word i % 4 of block offset + i / 4.
void keep_mask_batch(uint64_t seed, uint64_t first, float p, uint32_t* keep);

// Whether keep_mask_batch runs the AVX2 path.
bool keep_mask_uses_avx2();

}  // namespace dropout
}  // namespace tricks

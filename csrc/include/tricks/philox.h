// Counter-based RNG of the dropout family: Philox4x32-10 exactly as Triton's
// tl.randint4x(seed, counter) computes it, so every backend (torch reference, C++ CPU, CUDA,
// Triton) draws bit-identical masks for the same (seed, offset).
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (c & 0xffffffff, c >> 32, 0, 0) with c = offset + i / 4
//   element i takes output word i % 4
//   u       = float(int32 bitcast of the word, x < 0 -> ~x) * 4.6566127342e-10f
// (Triton's uint_to_uniform_float); an element is kept iff u >= p.
#pragma once

#include <cstdint>

#include "tricks/common.h"

namespace tricks {
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

// Uniform of element `index` of the stream (seed, offset).
TRICKS_HD float uniform(uint64_t seed, uint64_t offset, uint64_t index) {
  return to_uniform(philox4x32_10(seed, offset + index / 4).w[index % 4]);
}

}  // namespace philox
}  // namespace tricks

// CPU keep masks from Philox4x32-10 (the rounds: dropout/math.h, namespace philox).
#include "dropout/philox_cpu.h"

#include <cstdlib>
#include <cstring>

#include "dropout/math.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TRICKS_HAVE_AVX2_PATH 1
#endif

namespace tricks {
namespace dropout {
namespace {

void keep_mask_generic(uint64_t seed, uint64_t first, float p, uint32_t* keep) {
  for (int64_t t = 0; t < kKeepBatch; ++t) {
    const philox::Words w = philox::philox4x32_10(seed, first + static_cast<uint64_t>(t));
    for (int j = 0; j < 4; ++j) keep[4 * t + j] = dropout::keep(philox::to_uniform(w.w[j]), p) ? ~0u : 0u;
  }
}

#ifdef TRICKS_HAVE_AVX2_PATH
// Lanes l < 8 hold blocks first + t + l. A round's products c2 * M0 and c0 * M1 are 64 bits
// wide: vpmuludq multiplies the even 32-bit lanes, so the odd lanes go through a 32-bit shift,
// and the high / low halves are blended back into lane order (4 multiplies per round for 8
// blocks, 20 vector ops). u >= p is the scalar path's compare on the same float: to_uniform's
// ~x for negative x is x ^ (x >> 31), and int -> float conversion rounds to nearest as
// static_cast does.
__attribute__((target("avx2"))) void keep_mask_avx2(uint64_t seed, uint64_t first, float p, uint32_t* keep) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i sign = _mm256_set1_epi32(INT32_MIN);
  const __m256 pv = _mm256_set1_ps(p), to_unit = _mm256_set1_ps(4.6566127342e-10f);
  for (int64_t t = 0; t < kKeepBatch; t += 8) {
    const uint64_t c = first + static_cast<uint64_t>(t);
    const __m256i base = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(c)));
    __m256i c0 = _mm256_add_epi32(base, lane);
    // the low word wrapped iff c0 < base (unsigned): carry into the high word (all ones = -1)
    const __m256i carry = _mm256_cmpgt_epi32(_mm256_xor_si256(base, sign), _mm256_xor_si256(c0, sign));
    __m256i c1 = _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(c >> 32))), carry);
    __m256i c2 = _mm256_setzero_si256(), c3 = _mm256_setzero_si256();
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      const __m256i e0 = _mm256_mul_epu32(c2, m0), o0 = _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), m0);
      const __m256i e1 = _mm256_mul_epu32(c0, m1), o1 = _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), m1);
      const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(e0, 32), o0, 0xAA);
      const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(e1, 32), o1, 0xAA);
      const __m256i lo0 = _mm256_blend_epi32(e0, _mm256_slli_epi64(o0, 32), 0xAA);
      const __m256i lo1 = _mm256_blend_epi32(e1, _mm256_slli_epi64(o1, 32), 0xAA);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi0, c1), _mm256_set1_epi32(static_cast<int>(k0)));
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi1, c3), _mm256_set1_epi32(static_cast<int>(k1)));
      c1 = lo0;
      c3 = lo1;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    __m256i w[4] = {c0, c1, c2, c3};
    for (__m256i& v : w) {
      const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_xor_si256(v, _mm256_srai_epi32(v, 31))), to_unit);
      v = _mm256_castps_si256(_mm256_cmp_ps(u, pv, _CMP_GE_OQ));
    }
    // 4 words x 8 blocks -> element order (block l's four words contiguous)
    const __m256i w01l = _mm256_unpacklo_epi32(w[0], w[1]), w01h = _mm256_unpackhi_epi32(w[0], w[1]);
    const __m256i w23l = _mm256_unpacklo_epi32(w[2], w[3]), w23h = _mm256_unpackhi_epi32(w[2], w[3]);
    const __m256i b04 = _mm256_unpacklo_epi64(w01l, w23l), b15 = _mm256_unpackhi_epi64(w01l, w23l);
    const __m256i b26 = _mm256_unpacklo_epi64(w01h, w23h), b37 = _mm256_unpackhi_epi64(w01h, w23h);
    uint32_t* out = keep + 4 * t;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_permute2x128_si256(b04, b15, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8), _mm256_permute2x128_si256(b26, b37, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 16), _mm256_permute2x128_si256(b04, b15, 0x31));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 24), _mm256_permute2x128_si256(b26, b37, 0x31));
  }
}
#endif

bool pick_avx2() {
#ifdef TRICKS_HAVE_AVX2_PATH
  __builtin_cpu_init();  // this runs as a static initializer, maybe before libgcc's
  const char* off = std::getenv("TRICKS_EXT_NO_AVX2");
  return __builtin_cpu_supports("avx2") && !(off && std::strcmp(off, "1") == 0);
#else
  return false;
#endif
}

const bool kUseAvx2 = pick_avx2();

}  // namespace

void keep_mask_batch(uint64_t seed, uint64_t first, float p, uint32_t* keep) {
  if (!(p < 1.0f)) {  // p = 1 drops all (keep()'s rule), whatever u
    std::memset(keep, 0, sizeof(uint32_t) * 4 * kKeepBatch);
    return;
  }
#ifdef TRICKS_HAVE_AVX2_PATH
  if (kUseAvx2) return keep_mask_avx2(seed, first, p, keep);
#endif
  keep_mask_generic(seed, first, p, keep);
}

bool keep_mask_uses_avx2() { return kUseAvx2; }

}  // namespace dropout
}  // namespace tricks

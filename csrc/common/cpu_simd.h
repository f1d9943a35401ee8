// CPU kernels are built for baseline x86-64 (SSE2, 16-byte vectors) so the wheel runs anywhere.
// TRICKS_CPU_CLONES gives a hot function AVX-512 and AVX2+FMA clones as well, picked once at
// load time by the dynamic linker (GCC target_clones / ifunc): the same loop runs with 64- or
// 32-byte vectors where the CPU has them. Only code inlined into a clone is compiled for its
// ISA, so the clone's callees carry TRICKS_CPU_INLINE: left to the inliner, a callee such as
// the optimizer's per-row function stays an SSE2 call.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define TRICKS_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TRICKS_CPU_CLONES
#endif

#if defined(__GNUC__)
#define TRICKS_CPU_INLINE __attribute__((always_inline)) inline
#else
#define TRICKS_CPU_INLINE inline
#endif

#include <cstdint>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <type_traits>

namespace tricks {

// exp for vectorized CPU loops: Cephes' expf (range reduction by ln 2 in two parts, degree-6
// polynomial, exponent built in the bits), written so that GCC vectorizes it (the libm call
// does not vectorize without -ffast-math). The range reduction and the Horner steps are
// explicit fused multiply-adds: one rounding each, so every CPU computes the same bits whatever
// -ffp-contract says (it is off), and the AVX2 / AVX-512 clones run them as vfmadd (faster
// than separate multiplies and adds). The baseline clone (CPUs without FMA) calls
// the software fmaf: same bits, not vectorized. Max relative error 1.4 ulp on [-87, 88]
// (measured against double exp); below -87.3, where exp is under the smallest normal float
// (1.2e-38), it returns 0: a logit masked with -inf gets probability and gradient exactly 0,
// as in torch (the clamped polynomial alone gave 1.2e-38 there).
TRICKS_CPU_INLINE float exp_cpu(float x) {
  const bool underflow = x < -87.3f;
  x = underflow ? -87.3f : x;  // NaN passes through both compares
  x = x > 88.3f ? 88.3f : x;  // keeps n <= 127: a finite exponent
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = __builtin_fmaf(x, 1.44269504088896341f, magic) - magic;
  float r = __builtin_fmaf(n, -0.693359375f, x);
  r = __builtin_fmaf(n, 2.12194440e-4f, r);
  float y = 1.9875691500e-4f;
  y = __builtin_fmaf(y, r, 1.3981999507e-3f);
  y = __builtin_fmaf(y, r, 8.3334519073e-3f);
  y = __builtin_fmaf(y, r, 4.1665795894e-2f);
  y = __builtin_fmaf(y, r, 1.6666665459e-1f);
  y = __builtin_fmaf(y, r, 5.0000001201e-1f);
  y = __builtin_fmaf(y, r * r, r) + 1.0f;
  const int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &e, sizeof(scale));
  return underflow ? 0.0f : y * scale;
}

// log(1 + x) for x in [0, 1] (the softplus(-|z|) = log1p(exp(-|z|)) of the BCE), vectorizable
// like exp_cpu: log1p(x) = 2 atanh(s) with s = x / (2 + x) in [0, 1/3], the series
// 2 s (1 + s^2/3 + ... + s^14/15) in Horner form (the next term is 9^-8 / 17 = 1.4e-9 relative at
// x = 1). One division and 7 FMAs: 0.26 ns per element against 0.56 for Cephes' logf with
// Goldberg's correction (one AVX-512 thread); at most 2.0 ulp from double log1p over every float
// in [2^-30, 1] (that one: 2.5); small x stays exact (2 s = x).
TRICKS_CPU_INLINE float log1p_cpu(float x) {
  const float s = x / (2.0f + x), s2 = s * s;
  float y = 1.0f / 15.0f;
  y = __builtin_fmaf(y, s2, 1.0f / 13.0f);
  y = __builtin_fmaf(y, s2, 1.0f / 11.0f);
  y = __builtin_fmaf(y, s2, 1.0f / 9.0f);
  y = __builtin_fmaf(y, s2, 1.0f / 7.0f);
  y = __builtin_fmaf(y, s2, 1.0f / 5.0f);
  y = __builtin_fmaf(y, s2, 1.0f / 3.0f);
  const float t = s + s;
  return __builtin_fmaf(t * s2, y, t);
}

// Loads and stores of a vectorized loop's elements in the accumulation type A. 16-bit floats go
// through their bits and c10's own conversions (so the same bits as c10::Half / c10::BFloat16):
// with the struct types, GCC kept the rounded value in a stack slot of the struct (to store it
// and convert it back) and left the whole loop scalar (`-fopt-info-vec`: "not consecutive
// access MEM[(struct BFloat16 *)&stored].x").
template <typename A, typename T>
TRICKS_CPU_INLINE A load_as(const T* p, int64_t k) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    return static_cast<A>(c10::detail::f32_from_bits(reinterpret_cast<const uint16_t*>(p)[k]));
  } else if constexpr (std::is_same_v<T, c10::Half>) {
    return static_cast<A>(c10::detail::fp16_ieee_to_fp32_value(reinterpret_cast<const uint16_t*>(p)[k]));
  } else {
    return static_cast<A>(p[k]);
  }
}

// p[k] = v rounded to T (round to nearest even); returns the stored value in A.
template <typename T, typename A>
TRICKS_CPU_INLINE A store_rounded(T* p, int64_t k, A v) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    const uint16_t bits = c10::detail::round_to_nearest_even(static_cast<float>(v));
    reinterpret_cast<uint16_t*>(p)[k] = bits;
    return static_cast<A>(c10::detail::f32_from_bits(bits));
  } else if constexpr (std::is_same_v<T, c10::Half>) {
    const uint16_t bits = c10::detail::fp16_ieee_from_fp32_value(static_cast<float>(v));
    reinterpret_cast<uint16_t*>(p)[k] = bits;
    return static_cast<A>(c10::detail::fp16_ieee_to_fp32_value(bits));
  } else {
    const T stored = static_cast<T>(v);
    p[k] = stored;
    return static_cast<A>(stored);
  }
}

}  // namespace tricks

// Strided loops that keep several loads per thread in flight. A loop that loads an element and
// uses it before the next load (a sum into one accumulator, or a store the compiler must assume
// may alias the next load) keeps one load per thread outstanding: one memory round trip per
// element, far from the bandwidth (scripts/gpu_model.py counts these round trips in the SASS).
#pragma once

#include "common/cuda_dtype.cuh"

namespace tricks {

// Elements per thread and iteration for a stream of T: 4, or 8 of a 2-byte type, so that one
// stream keeps at least 16 bytes per thread in flight.
template <typename T>
constexpr int kUnrollOf = sizeof(T) < 4 ? 8 : 4;

// use(i, load(i)) for i = first, first + stride, ... < end, in that order, with the loads of
// kUnroll consecutive i issued before the first of them is used. Same order of use as the plain
// loop, so sums come out bit for bit the same. kUnroll is the whole unrolling: left to itself,
// nvcc unrolls the outer loop too, and the copies of an fp64 exp polynomial then spill (soft CE's
// backward: 4 B on sm_90, compile-check).
template <int kUnroll, typename I, typename Load, typename Use>
__device__ __forceinline__ void for_each_unrolled(I first, I end, I stride, Load load, Use use) {
#pragma unroll 1
  for (I i = first; i < end; i += kUnroll * stride) {
    decltype(load(i)) v[kUnroll] = {};
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (i + u * stride < end) v[u] = load(i + u * stride);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (i + u * stride < end) use(i + u * stride, v[u]);
  }
}

}  // namespace tricks

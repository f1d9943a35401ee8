// CPU kernels are built for baseline x86-64 (SSE2, 16-byte vectors) so the wheel runs anywhere.
// TRICKS_CPU_CLONES gives a hot function AVX-512 and AVX2+FMA clones as well, picked once at
// load time by the dynamic linker (GCC target_clones / ifunc): the same loop runs with 64- or
// 32-byte vectors where the CPU has them. Only code inlined into a clone is compiled for its
// ISA, so the clone's callees carry TRICKS_CPU_INLINE: left to the inliner, the optimizer's
// per-row function stayed an SSE2 call and the ResNet-50 GC step took 2x as long.
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

// Torch-free helpers shared by the CPU (g++) and CUDA (nvcc) kernels.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define TRICKS_HD __host__ __device__ __forceinline__
#else
#define TRICKS_HD inline
#endif

namespace tricks {

// Accumulation type: fp32 for fp32/fp16/bf16 storage, fp64 for fp64 (gradcheck).
template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };
template <typename T> using acc_t = typename AccType<T>::type;

// Element types as the kernels see them; the bindings map torch dtypes onto this enum so the
// kernel translation units need no torch headers.
enum class DType : int32_t { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

// Products and sums rounded on their own: nvcc contracts a * b + c into an FMA unless told, and
// the CPU build (-ffp-contract=off) never does, so the ops whose backends must agree bit for
// bit (dropout_add, mixup) write their products and sums with these.
#if defined(__CUDA_ARCH__)
TRICKS_HD float mul_rn(float a, float b) { return __fmul_rn(a, b); }
TRICKS_HD double mul_rn(double a, double b) { return __dmul_rn(a, b); }
TRICKS_HD float add_rn(float a, float b) { return __fadd_rn(a, b); }
TRICKS_HD double add_rn(double a, double b) { return __dadd_rn(a, b); }
#else
template <typename A> TRICKS_HD A mul_rn(A a, A b) { return a * b; }
template <typename A> TRICKS_HD A add_rn(A a, A b) { return a + b; }
#endif

// a * b + c rounded once, on every backend: torch's CPU kernels compute `add(x, y, alpha)` as
// vec::fmadd(y, alpha, x), so a kernel that must reproduce a chain of torch ops bit for bit
// (SASA+'s step against statopt) fuses exactly where they do.
#if defined(__CUDA_ARCH__)
TRICKS_HD float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
TRICKS_HD double fma_rn(double a, double b, double c) { return __fma_rn(a, b, c); }
#else
TRICKS_HD float fma_rn(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
TRICKS_HD double fma_rn(double a, double b, double c) { return __builtin_fma(a, b, c); }
#endif

TRICKS_HD float rsqrt_acc(float x) {
#if defined(__CUDA_ARCH__)
  return ::rsqrtf(x);
#else
  return 1.0f / __builtin_sqrtf(x);
#endif
}
TRICKS_HD double rsqrt_acc(double x) {
#if defined(__CUDA_ARCH__)
  return ::rsqrt(x);
#else
  return 1.0 / __builtin_sqrt(x);
#endif
}

// (h, w) of element e of a sample viewed as [outer][height][width][inner] (mixup/math.h), in
// 32-bit arithmetic (the bindings keep samples under 2^31 elements): the GPU's integer division
// is 32-bit in hardware.
struct HW {
  int64_t h, w;
};
TRICKS_HD HW sample_hw(uint32_t e, int64_t height, int64_t width, int64_t inner) {
  const uint32_t pos = e / static_cast<uint32_t>(inner);
  return HW{(pos / static_cast<uint32_t>(width)) % static_cast<uint32_t>(height), pos % static_cast<uint32_t>(width)};
}

// A loss's CUDA row kernels cut each row into pieces when there are too few rows to fill the GPU
// (triton_kernels/_common.py's row_pieces is the same rule over its own sweep): pieces of at least
// kMinPieceSweeps sweeps of `sweep` classes, up to about kRowPrograms blocks in all (two waves of
// 256-thread blocks on an H100's 132 SMs). One block per row left 32 rows of 131072 classes on 32
// SMs. From the shape alone, so a row sums in the same order on every GPU. Host code only.
constexpr int64_t kRowPrograms = 2112;
constexpr int64_t kMinPieceSweeps = 2;

struct RowPieces {
  int64_t pieces;   // per row: blockIdx.y of a launch
  int64_t classes;  // per piece: piece y holds the classes [y * classes, (y + 1) * classes)
};

inline RowPieces row_pieces(int64_t rows, int64_t classes, int64_t sweep) {
  const auto cdiv = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  const int64_t sweeps = classes > sweep ? cdiv(classes, sweep) : 1;
  int64_t pieces = cdiv(sweeps, kMinPieceSweeps);
  const int64_t fill = cdiv(kRowPrograms, rows > 1 ? rows : 1);
  if (pieces > fill) pieces = fill;
  const int64_t per_piece = cdiv(sweeps, pieces);
  return {cdiv(sweeps, per_piece), per_piece * sweep};
}

// Sets a loss's Params q (rows, classes; pieces, piece_classes) to rows cut in pieces of
// `sweep`-class sweeps; sweep 0 leaves the whole rows (the CPU kernels).
template <typename P>
inline void split_rows(P& q, int64_t sweep) {
  if (sweep == 0) return;
  const RowPieces p = row_pieces(q.rows, q.classes, sweep);
  q.pieces = p.pieces;
  q.piece_classes = p.classes;
}

}  // namespace tricks

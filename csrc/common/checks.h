// Argument checks shared by the CPU and CUDA bindings (torch side; kernels stay torch-free).
#pragma once

#include <ATen/ATen.h>

#include "common/math.h"

namespace tricks {

inline DType to_dtype(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default:
      TORCH_CHECK_TYPE(false, name, " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
  }
}

inline at::ScalarType stats_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// Each slice t[i] occupies one contiguous block of t[0].numel() elements, in any order inside.
inline bool is_row_dense(const at::Tensor& t) {
  if (t.dim() == 0 || t.numel() == 0) return true;
  if (!t.is_non_overlapping_and_dense()) return false;
  const int64_t K = t.numel() / std::max<int64_t>(t.size(0), 1);
  return t.size(0) <= 1 || t.stride(0) == K;
}

inline void check_same_device(const at::Tensor& a, const char* na, const at::Tensor& b, const char* nb) {
  TORCH_CHECK(a.device() == b.device(), nb, " is on ", b.device(), " but ", na, " is on ", a.device());
}

inline void check_vector(const at::Tensor& v, const char* name, int64_t n, at::ScalarType dtype, const at::Tensor& like) {
  check_same_device(like, "w", v, name);
  TORCH_CHECK(v.dim() == 1 && v.size(0) == n, name, " must have shape (", n, ",), got ", v.sizes());
  TORCH_CHECK_TYPE(v.scalar_type() == dtype, name, " must be ", dtype, ", got ", v.scalar_type());
  TORCH_CHECK(v.is_contiguous(), name, " must be contiguous");
}

// The elements per sample of a batch x whose samples are each one dense block, viewed as
// [outer][height][width][inner] (mixup/math.h), checked for the kernels' 32-bit in-sample index.
inline int64_t sample_size(const char* op, const at::Tensor& x, int64_t height, int64_t width, int64_t inner) {
  TORCH_CHECK(x.dim() >= 1, op, ": x must have a batch dim");
  const bool empty = x.numel() == 0;  // nothing is read or written: the layout does not matter
  TORCH_CHECK(empty || (is_row_dense(x) && (x.size(0) <= 1 || x.stride(0) == x.numel() / x.size(0))), op,
              ": each sample of x must be one dense block (contiguous or channels_last)");
  const int64_t sample = x.size(0) > 0 ? x.numel() / x.size(0) : 0;
  TORCH_CHECK(empty || (height >= 1 && width >= 1 && inner >= 1 && sample % (height * width * inner) == 0), op,
              ": height * width * inner = ", height * width * inner, " must divide the sample size ", sample);
  TORCH_CHECK(sample < (int64_t(1) << 31), op, ": samples of 2^31 elements or more are not supported");
  return sample;
}

}  // namespace tricks

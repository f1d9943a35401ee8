// Validation and allocation for the EvoNorm-S0 ops, shared by the CPU and CUDA bindings.
#pragma once

#include "common/checks.h"
#include "evonorm/math.h"

namespace tricks {
namespace evonorm {

// x is (N, C, P) after the caller flattens the spatial dims: any strides whose spatial part is
// one stride (NCHW contiguous, channels_last).
inline Params prepare(const at::Tensor& x, const at::Tensor& v, const at::Tensor& weight, int64_t groups, double eps) {
  const DType dtype = to_dtype(x, "x");
  TORCH_CHECK(x.dim() == 3, "evonorm_s0: x must be (N, C, P), got ", x.sizes());
  const int64_t C = x.size(1);
  TORCH_CHECK(groups >= 1 && C % groups == 0, "evonorm_s0: C = ", C, " is not divisible by groups = ", groups);
  const auto acc = stats_dtype(x);
  check_vector(v, "v", C, acc, x);
  check_vector(weight, "weight", C, acc, x);
  Params q{};
  q.x = x.data_ptr();
  q.v = v.data_ptr();
  q.weight = weight.data_ptr();
  q.batch = x.size(0);
  q.channels = C;
  q.groups = groups;
  q.spatial = x.size(2);
  q.stride_n = x.stride(0);
  q.stride_c = x.stride(1);
  q.stride_p = x.stride(2);
  q.eps = eps;
  q.dtype = dtype;
  return q;
}

struct Fwd {
  Params params;
  at::Tensor y, mean, rstd, work;
};

// split: chunks per group for the split-reduction forward (1: off); CUDA only.
inline Fwd prepare_fwd(const at::Tensor& x, const at::Tensor& v, const at::Tensor& weight, const at::Tensor& bias,
                       int64_t groups, double eps, int64_t split = 1) {
  Fwd f{prepare(x, v, weight, groups, eps), at::empty_like(x), {}, {}, {}};
  check_vector(bias, "bias", x.size(1), stats_dtype(x), x);
  const auto opts = x.options().dtype(stats_dtype(x));
  f.mean = at::empty({x.size(0), groups}, opts);
  f.rstd = at::empty({x.size(0), groups}, opts);
  f.params.bias = bias.data_ptr();
  f.params.y = f.y.data_ptr();
  f.params.mean = f.mean.data_ptr();
  f.params.rstd = f.rstd.data_ptr();
  f.params.split = std::max<int64_t>(split, 1);
  if (f.params.split > 1) {
    f.work = at::empty({x.size(0) * groups, f.params.split, 3}, opts);
    f.params.partials = f.work.data_ptr();
  }
  TORCH_CHECK(f.y.strides() == x.strides(), "evonorm_s0: x must be contiguous or channels_last");
  return f;
}

struct Bwd {
  Params params;
  at::Tensor dx, partials, dy;
};

inline Bwd prepare_bwd(const at::Tensor& dy, const at::Tensor& x, const at::Tensor& v, const at::Tensor& weight,
                       const at::Tensor& mean, const at::Tensor& rstd, int64_t groups, double eps) {
  Bwd b{prepare(x, v, weight, groups, eps), at::empty_like(x), {}, {}};
  TORCH_CHECK(dy.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type(), "evonorm_s0_bwd: dy must match x");
  check_same_device(x, "x", dy, "dy");
  b.dy = dy.strides() == x.strides() ? dy : at::empty_like(x).copy_(dy);
  const auto acc = stats_dtype(x);
  for (const at::Tensor* t : {&mean, &rstd}) {
    check_same_device(x, "x", *t, "stats");
    TORCH_CHECK(t->scalar_type() == acc && t->is_contiguous() && t->numel() == x.size(0) * groups,
                "evonorm_s0_bwd: mean/rstd must be contiguous (N, groups) ", acc);
  }
  b.partials = at::empty({x.size(0), x.size(1), 3}, x.options().dtype(acc));
  b.params.dy = b.dy.data_ptr();
  b.params.dx = b.dx.data_ptr();
  b.params.mean = const_cast<void*>(mean.data_ptr());
  b.params.rstd = const_cast<void*>(rstd.data_ptr());
  b.params.partials = b.partials.data_ptr();
  TORCH_CHECK(b.dx.strides() == x.strides(), "evonorm_s0_bwd: x must be contiguous or channels_last");
  return b;
}

}  // namespace evonorm
}  // namespace tricks

// CPU forward of mamba_ssm's gated RMSNorm (norm_before_gate=False), one pass per row:
//   g = x * silu(z);  out = g / sqrt(mean(g^2 over each group of `group` channels) + eps) * weight
// x: (rows, D) with contiguous channels, any row stride; z: the same shape, any row stride; weight: (D,).
// Returns a contiguous (rows, D) float32 tensor. Replaces six elementwise passes of PyTorch ops.
#include <ATen/core/Tensor.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <cmath>

#include "simd_math.h"

at::Tensor gated_rmsnorm_fwd(at::Tensor x, at::Tensor z, at::Tensor weight, double eps, int64_t group) {
  TORCH_CHECK(x.dim() == 2 && z.dim() == 2 && x.stride(1) == 1 && z.stride(1) == 1 && weight.is_contiguous(),
              "gated_rmsnorm: x, z must be (rows, D) with contiguous channels");
  const int64_t rows = x.size(0), D = x.size(1), sx = x.stride(0), sz = z.stride(0);
  TORCH_CHECK(D % group == 0, "gated_rmsnorm: D must be divisible by the group size");
  auto out = at::empty({rows, D}, x.options());
  const float *xp = x.data_ptr<float>(), *zp = z.data_ptr<float>(), *w = weight.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const float feps = static_cast<float>(eps);
  at::parallel_for(0, rows, 64, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r)
      mambabench::gated_rmsnorm_row(xp + r * sx, zp + r * sz, w, op + r * D, D, group, feps);
  });
  return out;
}

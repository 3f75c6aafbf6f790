// CPU forward and backward of mamba_ssm's gated RMSNorm (norm_before_gate=False), one pass per row:
//   g = x * silu(z);  out = g / sqrt(mean(g^2 over each group of `group` channels) + eps) * weight
// x: (rows, D) with contiguous channels, any row stride; z: the same shape, any row stride; weight: (D,).
// Returns a contiguous (rows, D) float32 tensor. Replaces six elementwise passes of PyTorch ops.
// gated_rmsnorm_bwd: its gradients in two passes per row (replaces autograd through those PyTorch ops).
#include <ATen/core/Tensor.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/sum.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

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

// Backward of gated_rmsnorm_fwd (formulas at gated_rmsnorm_row_bwd in simd_math.h): dout, x, z (rows, D) with
// contiguous channels and any row stride, weight (D,). Returns [dx, dz, dweight]: dx, dz contiguous (rows, D),
// dweight (D,), all float32; with dz_out ((rows, D), contiguous channels, any row stride: a slice of a larger
// gradient) dz is written there instead, and an empty tensor returned in its place (outputs do not alias
// inputs). Rows are split into at most one block per thread, each summing its dweight into its own row of
// partials (no shared accumulator, and the sum does not depend on the scheduling).
std::vector<at::Tensor> gated_rmsnorm_bwd(at::Tensor dout, at::Tensor x, at::Tensor z, at::Tensor weight, double eps,
                                          int64_t group, std::optional<at::Tensor> dz_out) {
  TORCH_CHECK(dout.dim() == 2 && x.dim() == 2 && z.dim() == 2 && dout.stride(1) == 1 && x.stride(1) == 1 &&
                  z.stride(1) == 1 && weight.is_contiguous(),
              "gated_rmsnorm_bwd: dout, x, z must be (rows, D) with contiguous channels");
  const int64_t rows = x.size(0), D = x.size(1), sg = dout.stride(0), sx = x.stride(0), sz = z.stride(0);
  TORCH_CHECK(dout.sizes() == x.sizes() && z.sizes() == x.sizes() && weight.numel() == D && D % group == 0,
              "gated_rmsnorm_bwd: shapes do not fit");
  auto dx = at::empty({rows, D}, x.options());
  auto dz = dz_out ? *dz_out : at::empty({rows, D}, x.options());
  TORCH_CHECK(dz.sizes() == x.sizes() && dz.stride(1) == 1, "gated_rmsnorm_bwd: dz_out must be (rows, D), "
              "channels contiguous");
  const int64_t sdz = dz.stride(0);
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (rows + 63) / 64));
  auto partials = at::zeros({blocks, D}, x.options());
  const float *gp = dout.data_ptr<float>(), *xp = x.data_ptr<float>(), *zp = z.data_ptr<float>();
  const float* w = weight.data_ptr<float>();
  float *dxp = dx.data_ptr<float>(), *dzp = dz.data_ptr<float>(), *dwp = partials.data_ptr<float>();
  const float feps = static_cast<float>(eps);
  at::parallel_for(0, blocks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t blk = lo; blk < hi; ++blk)
      for (int64_t r = blk * rows / blocks; r < (blk + 1) * rows / blocks; ++r)
        mambabench::gated_rmsnorm_row_bwd(gp + r * sg, xp + r * sx, zp + r * sz, w, dxp + r * D, dzp + r * sdz,
                                          dwp + blk * D, D, group, feps);
  });
  return {dx, dz_out ? at::empty({0}, x.options()) : dz, blocks == 1 ? partials[0] : partials.sum(0)};
}

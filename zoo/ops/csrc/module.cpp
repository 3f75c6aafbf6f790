// Python bindings of the CPU kernels (one extension, built at first use by zoo/ops/_extension.py).
#include <torch/extension.h>

#include <vector>

torch::Tensor selective_scan_fwd(torch::Tensor u, torch::Tensor delta, torch::Tensor A, torch::Tensor B,
                                 torch::Tensor C, torch::Tensor D, torch::Tensor z, torch::Tensor delta_bias,
                                 bool delta_softplus, bool portable);
std::vector<torch::Tensor> selective_scan_bwd(torch::Tensor dout, torch::Tensor u, torch::Tensor delta,
                                              torch::Tensor A, torch::Tensor B, torch::Tensor C,
                                              torch::Tensor D, torch::Tensor z, torch::Tensor delta_bias,
                                              bool delta_softplus);
torch::Tensor ssd_fwd(torch::Tensor x, torch::Tensor dt, torch::Tensor A, torch::Tensor B, torch::Tensor C,
                      torch::Tensor D, torch::Tensor z, torch::Tensor dt_bias, bool dt_softplus, bool reverse);
torch::Tensor causal_conv1d_fwd(torch::Tensor x, torch::Tensor weight, torch::Tensor bias, bool silu, bool reverse);
std::vector<torch::Tensor> causal_conv1d_bwd(torch::Tensor dout, torch::Tensor x, torch::Tensor weight,
                                             torch::Tensor bias, bool silu);
at::Tensor ssd_conv_norm_fwd(at::Tensor zxbcdt, at::Tensor conv_weight, at::Tensor conv_bias, at::Tensor dt_bias,
                             at::Tensor A, at::Tensor D, int64_t headdim, int64_t ngroups, at::Tensor norm_weight,
                             double eps, int64_t norm_group, bool reverse);
at::Tensor gated_rmsnorm_fwd(at::Tensor x, at::Tensor z, at::Tensor weight, double eps, int64_t group);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("selective_scan_fwd", &selective_scan_fwd,
        "Mamba-1 selective scan forward (fp32); portable=True skips the AVX-512 kernel");
  m.def("selective_scan_bwd", &selective_scan_bwd, "Mamba-1 selective scan backward (fp32, contiguous inputs)");
  m.def("ssd_fwd", &ssd_fwd, "Mamba-2 SSD scan forward (fp32, token-major)");
  m.def("ssd_conv_norm_fwd", &ssd_conv_norm_fwd, "fused Mamba-2 conv + SiLU + SSD + gated RMSNorm (fp32)");
  m.def("causal_conv1d_fwd", &causal_conv1d_fwd, "causal depthwise conv1d (+SiLU) forward, token-major");
  m.def("gated_rmsnorm_fwd", &gated_rmsnorm_fwd, "gated RMSNorm rmsnorm(x * silu(z)) * weight (fp32 rows)");
  m.def("causal_conv1d_bwd", &causal_conv1d_bwd, "causal depthwise conv1d (+SiLU) backward, token-major");
}

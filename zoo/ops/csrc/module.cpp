// The CPU kernels as PyTorch operators, torch.ops.mambabench_cpu.* (one library, built at first use by
// zoo/ops/_extension.py). Registered with TORCH_LIBRARY rather than as a pybind11 module: <torch/library.h>
// compiles in ~9 s where <torch/extension.h> took ~37 s, the longest step of a first build.
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <string>
#include <vector>

std::vector<at::Tensor> selective_scan_fwd(at::Tensor u, at::Tensor delta, at::Tensor A, at::Tensor B, at::Tensor C,
                                           at::Tensor D, at::Tensor z, at::Tensor delta_bias, bool delta_softplus,
                                           bool portable, bool save_states);
std::vector<at::Tensor> selective_scan_bwd(at::Tensor dout, at::Tensor u, at::Tensor delta, at::Tensor A,
                                           at::Tensor B, at::Tensor C, at::Tensor D, at::Tensor z,
                                           at::Tensor delta_bias, bool delta_softplus, at::Tensor dz_out,
                                           at::Tensor states);
at::Tensor ssd_fwd(at::Tensor x, at::Tensor dt, at::Tensor A, at::Tensor B, at::Tensor C, at::Tensor D, at::Tensor z,
                   at::Tensor dt_bias, bool dt_softplus, bool reverse);
std::vector<at::Tensor> ssd_bwd(at::Tensor dout, at::Tensor x, at::Tensor dt, at::Tensor A, at::Tensor B,
                                at::Tensor C, at::Tensor D, at::Tensor z, at::Tensor dt_bias, bool dt_softplus,
                                bool reverse);
at::Tensor causal_conv1d_fwd(at::Tensor x, at::Tensor weight, at::Tensor bias, bool silu, bool reverse);
std::vector<at::Tensor> causal_conv1d_bwd(at::Tensor dout, at::Tensor x, at::Tensor weight, at::Tensor bias,
                                          bool silu, at::Tensor dx_out, bool reverse);
at::Tensor ssd_conv_norm_fwd(at::Tensor zxbcdt, at::Tensor conv_weight, at::Tensor conv_bias, at::Tensor dt_bias,
                             at::Tensor A, at::Tensor D, int64_t headdim, int64_t ngroups, at::Tensor norm_weight,
                             double eps, int64_t norm_group, bool reverse);
at::Tensor gated_rmsnorm_fwd(at::Tensor x, at::Tensor z, at::Tensor weight, double eps, int64_t group);
std::vector<at::Tensor> gated_rmsnorm_bwd(at::Tensor dout, at::Tensor x, at::Tensor z, at::Tensor weight, double eps,
                                          int64_t group, std::optional<at::Tensor> dz_out);
std::vector<at::Tensor> ssd_conv_fwd(at::Tensor zxbcdt, at::Tensor conv_weight, at::Tensor conv_bias,
                                     at::Tensor dt_bias, at::Tensor A, at::Tensor D, int64_t headdim, int64_t ngroups,
                                     bool reverse);
std::vector<at::Tensor> ssd_bwd_xbc(at::Tensor dout, at::Tensor xbc, at::Tensor dt, at::Tensor A, at::Tensor D,
                                    at::Tensor dt_bias, int64_t headdim, int64_t ngroups, bool reverse, at::Tensor dxbc,
                                    at::Tensor ddt, at::Tensor states);
at::Tensor vector_math(at::Tensor x, std::string function);

// Schemas are inferred from the signatures (Tensor, bool, int, float; a vector of tensors returns Tensor[]).
TORCH_LIBRARY(mambabench_cpu, m) {
  m.def("selective_scan_fwd", &selective_scan_fwd);  // Mamba-1 scan forward (fp32) -> [out, kept states]
  m.def("selective_scan_bwd", &selective_scan_bwd);  // Mamba-1 scan backward (fp32), from the kept states if given
  m.def("ssd_fwd", &ssd_fwd);                        // Mamba-2 SSD scan forward (fp32, token-major)
  m.def("ssd_bwd", &ssd_bwd);                        // Mamba-2 SSD scan backward (fp32, token-major)
  m.def("ssd_conv_norm_fwd", &ssd_conv_norm_fwd);    // fused Mamba-2 conv + SiLU + SSD + gated RMSNorm (fp32)
  m.def("causal_conv1d_fwd", &causal_conv1d_fwd);    // causal depthwise conv1d (+SiLU) forward, token-major
  m.def("causal_conv1d_bwd", &causal_conv1d_bwd);    // causal depthwise conv1d (+SiLU) backward, token-major
  m.def("gated_rmsnorm_fwd", &gated_rmsnorm_fwd);    // gated RMSNorm rmsnorm(x * silu(z)) * weight (fp32 rows)
  m.def("gated_rmsnorm_bwd(Tensor dout, Tensor x, Tensor z, Tensor weight, float eps, int group, "
        "Tensor(a!)? dz_out=None) -> Tensor[]",
        &gated_rmsnorm_bwd);                         // its backward: [dx, dz, dweight] (fp32 rows; dz into dz_out)
  m.def("ssd_conv_fwd", &ssd_conv_fwd);              // conv + SiLU, un-normed SSD and chunk states (fused backward)
  m.def("ssd_bwd_xbc(Tensor dout, Tensor xbc, Tensor dt, Tensor A, Tensor D, Tensor dt_bias, int headdim, "
        "int ngroups, bool reverse, Tensor(a!) dxbc, Tensor(b!) ddt, Tensor states) -> Tensor[]",
        &ssd_bwd_xbc);                               // SSD backward into the fused layout's dxBC and ddt
  m.def("vector_math", &vector_math);                // the kernels' vector exp2, sigmoid, softplus (accuracy tests)
}

"""The Mamba-1 mixer between its two projections as one autograd function on the CPU, in the shape of
mamba_ssm's ``mamba_inner_fn`` without its out projection.

``mamba_inner(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A, D)``: xz (batch, L,
2 d_inner), token-major, holds x and z side by side (the in_proj output); x = silu(causal_conv1d(x));
dt, B, C = split(x @ x_proj_weight.t()); dt = dt @ dt_proj_weight.t(); y = selective_scan(x, dt, A, B, C, D,
z, dt_proj_bias, softplus). Returns y (batch, L, d_inner), token-major. conv_weight is the layer's
(d_inner, 1, width) Conv1d weight.

Why one function: composed from the separate ops, autograd ends the backward with two copies the arithmetic
does not need (measured at the ``cpu-learn`` DiM-Teng shape, b32 L126 d_inner 192, ~7% of a Mamba layer's
training step): a ``torch.cat`` of dx and dz into the in_proj output's gradient, and the sum of the conv
output's two gradients (through x_proj and through the scan). Here the scan's backward writes dz straight into
the z half of one (batch, L, 2 d_inner) buffer, the x_proj input gradient is accumulated into the scan's du by
the GEMM itself (``addmm_``), and the conv's backward writes dx into the x half.

The forward calls the ``zoo.ops`` custom ops, so FLOP counters see the same ops (and MACs) as on the composed
path; the backward calls our C++ kernels directly. CPU float32 with the C++ kernels' vector path only
(``usable``); every other case takes the composed ops, which compute the same values.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import kernel_choice
from ._extension import load_cpu_kernels
from .conv import _cpp_conv_backward, causal_conv1d
from .dispatch import device_type
from .mamba1_scan import scan_keeping_states


def usable(xz: Tensor, conv_weight: Tensor, A: Tensor, *params: Tensor | None) -> bool:
    """Whether ``mamba_inner`` runs for these tensors: CPU float32 (the layer's activations and parameters), the
    C++ kernels built, and the vector path's shapes (d_state 16, d_inner a multiple of 16, conv width <= 8)."""
    tensors = [xz, conv_weight, A, *(p for p in params if p is not None)]
    return (
        all(device_type(t) == "cpu" and t.dtype == torch.float32 for t in tensors)
        and A.shape[1] == 16
        and A.shape[0] % 16 == 0
        and conv_weight.shape[-1] <= 8
        and not kernel_choice.using_reference_kernels()
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()  # tracers (fvcore) count the composed ops, not a Python function
        and load_cpu_kernels() is not None
    )


class _MambaInner(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A, D):
        batch, length, width = xz.shape
        d_inner, dt_rank, d_state = width // 2, dt_proj_weight.shape[1], A.shape[1]
        x, z = xz[..., :d_inner], xz[..., d_inner:]
        conv_w = conv_weight.squeeze(1)
        xc = causal_conv1d(x.transpose(1, 2), conv_w, conv_bias, "silu").transpose(1, 2)  # (b, L, d), dense
        flat = xc.reshape(-1, d_inner)
        xdbl = flat @ x_proj_weight.t()  # (b L, dt_rank + 2 N)
        dt = xdbl[:, :dt_rank] @ dt_proj_weight.t()  # (b L, d_inner), token-major
        # B, C in the kernel's (b, G, L, N) layout, copied once for the forward and the backward
        B = xdbl[:, dt_rank : dt_rank + d_state].reshape(batch, 1, length, d_state).contiguous()
        C = xdbl[:, dt_rank + d_state :].reshape(batch, 1, length, d_state).contiguous()
        dt_t = dt.view(batch, length, d_inner).transpose(1, 2)
        u = xc.transpose(1, 2)
        # the scan keeps its block states, so its backward skips their recomputation
        y, states = scan_keeping_states(
            u, dt_t, A, B.transpose(-1, -2), C.transpose(-1, -2), D, z.transpose(1, 2), dt_proj_bias, True
        )
        ctx.save_for_backward(
            xz, conv_w, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A, D, xc, xdbl, dt, B, C, states
        )
        ctx.conv_shape = conv_weight.shape
        return y.transpose(1, 2)  # (b, L, d_inner): the scan writes u's (token-major) layout

    @staticmethod
    def backward(ctx, dy):
        xz, conv_w, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A, D, xc, xdbl, dt, B, C, states = (
            ctx.saved_tensors
        )
        batch, length, width = xz.shape
        d_inner, dt_rank, d_state = width // 2, dt_proj_weight.shape[1], A.shape[1]
        x, z = xz[..., :d_inner], xz[..., d_inner:]
        dxz = torch.empty_like(xz)
        empty = xz.new_empty(0)
        du, ddt, dA, dB, dC, dD, _, d_bias = load_cpu_kernels().selective_scan_bwd(
            dy.float().transpose(1, 2),
            xc.transpose(1, 2),
            dt.view(batch, length, d_inner).transpose(1, 2),
            A.contiguous(),
            B,
            C,
            empty if D is None else D.contiguous(),
            z.transpose(1, 2),
            dt_proj_bias.contiguous(),
            True,
            dxz[..., d_inner:].transpose(1, 2),  # dz straight into the z half
            states,
        )
        ddt = ddt.transpose(1, 2).reshape(-1, d_inner)  # (b L, d_inner), a view: the kernel wrote u's layout
        dxdbl = torch.empty_like(xdbl)
        # dt = dt_low @ W_dt^T: the thin (rank 6) GEMMs in the orientations that are fast on the CPU (_DtProjection)
        dxdbl[:, :dt_rank] = (dt_proj_weight.t() @ ddt.t()).t()
        d_dt_proj = (xdbl[:, :dt_rank].t() @ ddt).t()
        dxdbl[:, dt_rank : dt_rank + d_state] = dB.view(-1, d_state)
        dxdbl[:, dt_rank + d_state :] = dC.view(-1, d_state)
        d_x_proj = dxdbl.t() @ xc.reshape(-1, d_inner)
        du = du.transpose(1, 2)  # (b, L, d_inner), dense
        du.view(-1, d_inner).addmm_(dxdbl, x_proj_weight)  # + the x_proj path's gradient, summed by the GEMM
        _, d_conv_w, d_conv_b = _cpp_conv_backward(
            du.transpose(1, 2), x.transpose(1, 2), conv_w, conv_bias, True, dx_out=dxz[..., :d_inner]
        )  # dx straight into the x half
        return (
            dxz,
            d_conv_w.view(ctx.conv_shape),
            d_conv_b if conv_bias is not None else None,
            d_x_proj,
            d_dt_proj,
            d_bias,
            dA,
            dD if D is not None else None,
        )


def mamba_inner(
    xz: Tensor,
    conv_weight: Tensor,
    conv_bias: Tensor | None,
    x_proj_weight: Tensor,
    dt_proj_weight: Tensor,
    dt_proj_bias: Tensor,
    A: Tensor,
    D: Tensor | None,
) -> Tensor:
    """The Mamba-1 mixer core as one autograd node on the CPU (see module doc); check ``usable`` first."""
    kernel_choice.record("mamba1_mixer", "cpu-fused")
    xz = xz if xz.stride(-1) == 1 else xz.contiguous()
    return _MambaInner.apply(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_proj_bias, A, D)

"""FLOP formulas of the custom ops, registered with ``torch.utils.flop_counter``.

Convention: FLOPs = 2 x multiply-accumulates for matmul-like work (FlopCounterMode's convention; DiT's
"GFLOPs" are MACs, i.e. half of these). The formulas take shapes only, so counting works on the meta
device. Each returns the cost of the forward pass.

- attention: QK^T and AV, 2 * (2 * B * H * Lq * Lk * Dh), the same as torch's SDPA formula.
- selective_scan: 9 * B * D * L * N, A. Gu's estimate for the Mamba-1 scan (state-spaces/mamba issue
  #110: discretisation, state update and output contraction), plus the D skip and z gate terms.
- ssd_scan: the matmuls of the chunked SSD algorithm with chunk length T (the op's ``chunk_size``, mamba_ssm's
  default 256, what its Triton kernel runs): per token 2 * (T * G * N [C.B] + T * H * P [intra-chunk] +
  2 * H * P * N [chunk states and state read-out]). Our CPU kernel runs chunks of 64 (fewer intra-chunk
  MACs); counts follow the op's chunk_size whatever the backend, so they compare architectures.
- causal_conv1d: 2 * B * D * L * W.
- conv_scan_norm (the fused Mamba-2 core): causal_conv1d + ssd_scan of its parts.
- linear_attention: the key state relu(k)^T [v | 1] and its read-out relu(q) [state | key sum],
  2 * B * H * (Lk + Lq) * Dh * (Dv + 1): the two matmuls diffusers' SANA processor runs (v padded with a
  row of ones for the denominator), so our count of SANA equals FlopCounterMode's of diffusers' model.
- gated_linear_attention: the matmuls of the chunked algorithm with chunk length T (64, the op's and fla's
  chunk_gla's), per token 2 * (T * Dk [intra-chunk scores] + T * Dv [scores x values] + 2 * Dk * Dv [state
  read-out and update]), times B * H; the gates' cumulative sums and exponentials are elementwise, not counted.
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import register_flop_formula

from . import conv, gated_linear_attention, linear_attention, mamba1_scan, mamba2_fused, softmax_attention, ssd  # noqa: F401  (define torch.ops.zoo.*)

SSD_FLOP_CHUNK = 256
GLA_FLOP_CHUNK = gated_linear_attention.CHUNK


def attention_flops(q_shape, k_shape, v_shape) -> int:
    b, h, lq, dh = q_shape
    lk, dv = k_shape[2], v_shape[3]
    return 2 * b * h * lq * lk * dh + 2 * b * h * lq * lk * dv


def linear_attention_flops(q_shape, k_shape, v_shape) -> int:
    b, h, lq, dh = q_shape
    lk, dv = k_shape[2], v_shape[3]
    return 2 * b * h * (lk + lq) * dh * (dv + 1)


def gated_linear_attention_flops(q_shape, v_shape, chunk: int = GLA_FLOP_CHUNK) -> int:
    b, h, length, dk = q_shape
    dv = v_shape[3]
    t = min(chunk, length)
    return 2 * b * h * length * (t * dk + t * dv + 2 * dk * dv)


def selective_scan_flops(u_shape, A_shape, has_D: bool, has_z: bool) -> int:
    b, d, length = u_shape
    n = A_shape[1]
    extra = (2 if has_D else 0) + (5 if has_z else 0)  # D*u + y; z*sigmoid(z)*y counted as 5
    return 9 * b * d * length * n + extra * b * d * length


def ssd_scan_flops(x_shape, B_shape, has_D: bool, has_z: bool, chunk: int = SSD_FLOP_CHUNK) -> int:
    b, length, h, p = x_shape
    g, n = B_shape[2], B_shape[3]
    t = min(chunk, length)
    per_token = 2 * (t * g * n + t * h * p + 2 * h * p * n)
    extra = (2 if has_D else 0) * h * p + (5 if has_z else 0) * h * p
    return b * length * (per_token + extra)


def causal_conv1d_flops(x_shape, w_shape) -> int:
    return 2 * math.prod(x_shape) * w_shape[1]


@register_flop_formula(torch.ops.zoo.attention)
def _attention(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return attention_flops(q_shape, k_shape, v_shape)


@register_flop_formula(torch.ops.zoo.linear_attention)
def _linear_attention(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return linear_attention_flops(q_shape, k_shape, v_shape)


@register_flop_formula(torch.ops.zoo.gated_linear_attention)
def _gated_linear_attention(q_shape, k_shape, v_shape, g_shape, *args, out_shape=None, **kwargs) -> int:
    return gated_linear_attention_flops(q_shape, v_shape)


@register_flop_formula(torch.ops.zoo.selective_scan)
def _selective_scan(
    u_shape, delta_shape, A_shape, B_shape, C_shape, D_shape, z_shape, *args, out_shape=None, **kwargs
) -> int:
    return selective_scan_flops(u_shape, A_shape, D_shape is not None, z_shape is not None)


@register_flop_formula(torch.ops.zoo.ssd_scan)
def _ssd_scan(
    x_shape,
    dt_shape,
    A_shape,
    B_shape,
    C_shape,
    D_shape,
    z_shape,
    dt_bias_shape=None,
    dt_softplus=False,
    reverse=False,
    chunk_size=SSD_FLOP_CHUNK,
    *args,
    out_shape=None,
    **kwargs,
) -> int:
    return ssd_scan_flops(x_shape, B_shape, D_shape is not None, z_shape is not None, chunk_size)


@register_flop_formula(torch.ops.zoo.conv_scan_norm)
def _conv_scan_norm(
    zxbcdt_shape,
    conv_weight_shape,
    conv_bias_shape,
    dt_bias_shape,
    A_shape,
    D_shape,
    headdim,
    ngroups,
    norm_weight_shape=None,
    eps=None,
    norm_group=None,
    reverse=False,
    chunk_size=SSD_FLOP_CHUNK,
    *args,
    out_shape=None,
    **kwargs,
) -> int:
    """The conv's and the SSD scan's FLOPs, as if run unfused (the gated norm counts none, as every norm)."""
    b, length, _ = zxbcdt_shape
    nheads, conv_dim = A_shape[0], conv_weight_shape[0]
    d_state = (conv_dim - nheads * headdim) // (2 * ngroups)
    conv_flops = causal_conv1d_flops((b, conv_dim, length), conv_weight_shape)
    scan_flops = ssd_scan_flops(
        (b, length, nheads, headdim), (b, length, ngroups, d_state), D_shape is not None, False, chunk_size
    )
    return conv_flops + scan_flops


@register_flop_formula(torch.ops.zoo.causal_conv1d)
def _causal_conv1d(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    return causal_conv1d_flops(x_shape, w_shape)

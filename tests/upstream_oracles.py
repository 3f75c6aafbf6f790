"""Stand-ins for the CUDA packages' entry points, with their exact signatures, computed by the step-by-step
references in references.py. The CUDA glue in zoo.ops is called with these on CPU tensors, so every
argument it passes (order, keywords, layouts, dt bias and softplus, D, z, chunk size, norm options) is
checked without a GPU. Each oracle rejects what the real function would not accept in our use."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from references import causal_conv1d_reference, selective_scan_reference, ssd_reference


def selective_scan_fn(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, return_last_state=False
):
    """mamba_ssm.ops.selective_scan_interface.selective_scan_fn."""
    assert not return_last_state and u.dim() == 3 and delta.shape == u.shape and A.shape[0] == u.shape[1]
    B = B.unsqueeze(1) if B.dim() == 3 else B
    C = C.unsqueeze(1) if C.dim() == 3 else C
    return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def mamba_chunk_scan_combined(
    x,
    dt,
    A,
    B,
    C,
    chunk_size,
    D=None,
    z=None,
    dt_bias=None,
    initial_states=None,
    seq_idx=None,
    cu_seqlens=None,
    dt_softplus=False,
    dt_limit=(0.0, float("inf")),
    return_final_states=False,
    return_varlen_states=False,
):
    """mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined."""
    assert isinstance(chunk_size, int) and chunk_size > 0 and initial_states is None and seq_idx is None
    assert x.dim() == 4 and dt.shape == x.shape[:3] and A.shape == (x.shape[2],) and B.shape == C.shape
    return ssd_reference(x, dt, A, B, C, D, z, dt_bias, dt_softplus)


def causal_conv1d_fn(
    x,
    weight,
    bias=None,
    seq_idx=None,
    initial_states=None,
    return_final_states=False,
    final_states_out=None,
    activation=None,
):
    """causal_conv1d.causal_conv1d_fn."""
    assert activation in (None, "silu", "swish") and seq_idx is None and initial_states is None
    assert x.dim() == 3 and weight.shape == (x.shape[1], weight.shape[1])
    return causal_conv1d_reference(x, weight, bias, activation is not None)


def flash_attn_func(
    q,
    k,
    v,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
):
    """flash_attn.flash_attn_func: q, k, v (batch, L, heads, head_dim)."""
    assert dropout_p == 0.0 and not causal and q.dim() == 4 and q.shape[-1] == k.shape[-1]
    scale = softmax_scale or 1 / math.sqrt(q.shape[-1])
    scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) * scale
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v.float()).to(q.dtype)


def mamba_split_conv1d_scan_combined(
    zxbcdt,
    conv1d_weight,
    conv1d_bias,
    dt_bias,
    A,
    D,
    chunk_size,
    initial_states=None,
    seq_idx=None,
    dt_limit=(0.0, float("inf")),
    return_final_states=False,
    activation="silu",
    rmsnorm_weight=None,
    rmsnorm_eps=1e-6,
    outproj_weight=None,
    outproj_bias=None,
    headdim=None,
    ngroups=1,
    norm_before_gate=True,
):
    """mamba_ssm.ops.triton.ssd_combined.mamba_split_conv1d_scan_combined (its own reference's recipe)."""
    nheads = A.shape[0]
    headdim = headdim if D is None or D.dim() == 1 else D.shape[1]
    assert headdim is not None and dt_bias.shape == (nheads,) and initial_states is None
    dim = nheads * headdim
    dstate = (zxbcdt.shape[-1] - 2 * dim - nheads) // ngroups // 2
    assert zxbcdt.shape[-1] == 2 * dim + 2 * ngroups * dstate + nheads
    assert conv1d_weight.shape == (dim + 2 * ngroups * dstate, conv1d_weight.shape[1])
    z, xBC, dt = torch.split(zxbcdt, [dim, dim + 2 * ngroups * dstate, nheads], dim=-1)
    xBC = causal_conv1d_reference(xBC.transpose(1, 2), conv1d_weight, conv1d_bias, True).transpose(1, 2)
    x, B, C = torch.split(xBC, [dim, ngroups * dstate, ngroups * dstate], dim=-1)
    b, L, _ = zxbcdt.shape
    y = ssd_reference(
        x.reshape(b, L, nheads, headdim),
        dt,
        A,
        B.reshape(b, L, ngroups, dstate),
        C.reshape(b, L, ngroups, dstate),
        D,
        None,
        dt_bias,
        True,
    ).reshape(b, L, dim)
    if rmsnorm_weight is not None:
        g = y if norm_before_gate else y * F.silu(z)
        groups = g.unflatten(-1, (ngroups, dim // ngroups))
        g = (groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + rmsnorm_eps)).flatten(-2) * rmsnorm_weight
        y = g * F.silu(z) if norm_before_gate else g
    if outproj_weight is not None:
        y = F.linear(y, outproj_weight, outproj_bias)
    return y


def mamba_inner_fn_no_out_proj(
    xz,
    conv1d_weight,
    conv1d_bias,
    x_proj_weight,
    delta_proj_weight,
    A,
    B=None,
    C=None,
    D=None,
    delta_bias=None,
    B_proj_bias=None,
    C_proj_bias=None,
    delta_softplus=True,
):
    """mamba_ssm (Vim's fork) selective_scan_interface.mamba_inner_fn_no_out_proj: the Mamba-1 mixer from the
    joint projection xz (batch, 2 d_inner, L) to the gated scan output (batch, d_inner, L)."""
    assert xz.dim() == 3 and xz.stride(-1) == 1, "xz must be (batch, 2 d_inner, L) with L contiguous"
    assert conv1d_weight.dim() == 3 and conv1d_weight.shape[1] == 1, "conv1d_weight is the Conv1d weight (d, 1, w)"
    assert B is None and C is None and B_proj_bias is None and C_proj_bias is None  # input-dependent B and C
    assert A.dtype == torch.float32 and A.dim() == 2 and (A < 0).all()
    rank, d_state = delta_proj_weight.shape[1], A.shape[-1]
    x, z = xz.chunk(2, dim=1)
    x = causal_conv1d_fn(x, conv1d_weight[:, 0], conv1d_bias, activation="silu")
    x_dbl = F.linear(x.transpose(1, 2), x_proj_weight)  # (batch, L, rank + 2 d_state)
    delta = (x_dbl[..., :rank] @ delta_proj_weight.t()).transpose(1, 2)  # (batch, d_inner, L), bias not added
    B = x_dbl[..., rank : rank + d_state].transpose(1, 2)
    C = x_dbl[..., rank + d_state :].transpose(1, 2)
    return selective_scan_fn(x, delta, A, B, C, D, z, delta_bias, delta_softplus).to(xz.dtype)  # as upstream's


def mamba_inner_fn(
    xz,
    conv1d_weight,
    conv1d_bias,
    x_proj_weight,
    delta_proj_weight,
    out_proj_weight,
    out_proj_bias,
    A,
    B=None,
    C=None,
    D=None,
    delta_bias=None,
    B_proj_bias=None,
    C_proj_bias=None,
    delta_softplus=True,
    cu_seqlens=None,
    seq_idx=None,
):
    """mamba_ssm.ops.selective_scan_interface.mamba_inner_fn: the same, then out_proj -> (batch, L, d_model)."""
    assert cu_seqlens is None and seq_idx is None
    y = mamba_inner_fn_no_out_proj(
        xz,
        conv1d_weight,
        conv1d_bias,
        x_proj_weight,
        delta_proj_weight,
        A,
        B,
        C,
        D,
        delta_bias,
        B_proj_bias,
        C_proj_bias,
        delta_softplus,
    )
    return F.linear(y.transpose(1, 2), out_proj_weight, out_proj_bias)

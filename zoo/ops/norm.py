"""Gated RMSNorm as a custom op, with mamba_ssm's ``RMSNormGated`` semantics (``norm_before_gate=False``).

``gated_rmsnorm(x, z, weight, eps, group_size)``: g = x * silu(z), normalised by the root mean square of
each group of ``group_size`` channels, times ``weight``; x, z (..., D). Computed in float32, returned in
x's dtype. The CPU forward is one fused C++ pass per row (``csrc/gated_rmsnorm_cpu.cpp``) that reads z as
a strided view of the projection it comes from, and so is its backward (``gated_rmsnorm_bwd``: every gradient
in two passes per row, formulas in ``csrc/simd_math.h``); other devices use the PyTorch expression below and
differentiate it by autograd. Elementwise work: no FLOPs are counted for it (as for every norm here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import kernel_choice
from ._extension import load_cpu_kernels
from .dispatch import Backend, define_op


def gated_rmsnorm_torch(x: Tensor, z: Tensor, weight: Tensor, eps: float, group_size: int) -> Tensor:
    """Differentiable PyTorch version (the reference, the backward and the non-CPU path)."""
    dtype = x.dtype
    g = x.float() * F.silu(z.float())
    groups = g.unflatten(-1, (-1, group_size))
    groups = groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + eps)
    return (groups.flatten(-2) * weight.float()).to(dtype)


def _rows(t: Tensor) -> Tensor:
    """(..., D) float32 as (rows, D) with contiguous channels, a view where the layout allows."""
    t = t.float()
    if t.stride(-1) != 1:
        t = t.contiguous()
    try:
        return t.view(-1, t.shape[-1])
    except RuntimeError:
        return t.reshape(-1, t.shape[-1])


def _cpp_norm(x: Tensor, z: Tensor, weight: Tensor, eps: float, group_size: int) -> Tensor:
    out = load_cpu_kernels().gated_rmsnorm_fwd(_rows(x), _rows(z), weight.float().contiguous(), eps, group_size)
    return out.view(x.shape).to(x.dtype)


def _cpp_norm_grads(
    grad: Tensor, x: Tensor, z: Tensor, weight: Tensor, eps: float, group_size: int, dz_out: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dz, dweight) in float32 from the C++ backward (``gated_rmsnorm_bwd``): dx (..., D) contiguous,
    dweight (D,); dz (..., D) contiguous, or written into ``dz_out`` (float32 like x, contiguous channels, any
    row stride: a slice of a larger gradient) and returned as it. x, z and grad may be strided views with
    contiguous channels (read without copies)."""
    rows = None if dz_out is None else dz_out.view(-1, dz_out.shape[-1])
    dx, dz, dw = load_cpu_kernels().gated_rmsnorm_bwd(
        _rows(grad), _rows(x), _rows(z), weight.float().contiguous(), eps, group_size, rows
    )
    return dx.view(x.shape), dz.view(z.shape) if dz_out is None else dz_out, dw


def _cpp_backward(grad: Tensor, args, needs) -> list[Tensor | None]:
    """The "cpu-cpp" row's backward: the op's arguments are (x, z, weight, eps, group_size); every gradient from
    one C++ call, each in its input's dtype and shape (the unneeded ones are dropped by ``needs``)."""
    x, z, weight, eps, group_size = args
    dx, dz, dw = _cpp_norm_grads(grad, x, z, weight, eps, group_size)
    return [dx.to(x.dtype), dz.to(z.dtype), dw.to(weight.dtype), None, None]


def _cpp_usable(*args: object) -> bool:
    return not kernel_choice.using_reference_kernels() and load_cpu_kernels() is not None


def _torch_norm(*args) -> Tensor:
    return gated_rmsnorm_torch(*args).contiguous()


_OP = define_op(
    "gated_rmsnorm",
    "(Tensor x, Tensor z, Tensor weight, float eps, int group_size) -> Tensor",
    [
        Backend("torch", "cuda", _torch_norm, differentiable=gated_rmsnorm_torch),
        Backend("cpu-cpp", "cpu", _cpp_norm, usable=_cpp_usable, backward=_cpp_backward),
        Backend("torch", "cpu", _torch_norm, differentiable=gated_rmsnorm_torch),
    ],
    lambda x, z, weight, eps, group_size: torch.empty(x.shape, dtype=x.dtype, device=x.device),
)


def gated_rmsnorm(x: Tensor, z: Tensor, weight: Tensor, eps: float = 1e-5, group_size: int | None = None) -> Tensor:
    """rmsnorm(x * silu(z)) * weight over groups of ``group_size`` channels (default: all of them)."""
    group_size = group_size or x.shape[-1]
    if x.shape != z.shape or x.shape[-1] % group_size or weight.shape != (x.shape[-1],):
        raise ValueError(
            f"gated_rmsnorm: x {tuple(x.shape)}, z {tuple(z.shape)}, weight {tuple(weight.shape)} and "
            f"group size {group_size} do not fit"
        )
    return _OP(x, z, weight, eps, group_size)

"""The Mamba-2 mixer between its two projections as one op: causal conv + SiLU, SSD scan and gated RMSNorm,
in the layout of mamba_ssm's ``mamba_split_conv1d_scan_combined`` (without its optional out projection).

``conv_scan_norm(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, headdim, ngroups, rmsnorm_weight,
rmsnorm_eps, norm_group, reverse=False)``: zxbcdt (batch, L, d_inner + conv_dim + nheads) holds z, xBC and
dt side by side (the in_proj output); x, B, C = split(silu(causal_conv1d(xBC))); y = ssd(x, dt, A, B, C, D)
with dt = softplus(dt + dt_bias); out = rmsnorm(y * silu(z)) * rmsnorm_weight over groups of
``norm_group`` channels; ``reverse`` scans from the end, output in token order. Returns (batch, L, d_inner).

On the CPU one C++ pass per chunk of 64 tokens does all of it (``ssd_conv_norm_fwd`` in ``csrc/ssd_cpu.cpp``):
the conv output and the un-normed y never reach memory, which on a memory-bound CPU is a fifth of the
layer's non-GEMM time. Elsewhere, and for the backward (by recomputation), it is ``conv_scan_norm_reference``:
the composition of ``causal_conv1d``, ``ssd_scan`` and ``gated_rmsnorm``; on the CPU that recomputation runs
the C++ kernels of its parts and differentiates them with their own C++ backwards (``ssd_bwd`` for the scan,
``causal_conv1d_bwd`` for the conv), not PyTorch autograd. FLOPs: the conv's plus the scan's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _cuda, kernel_choice
from ._extension import load_cpu_kernels
from .conv import causal_conv1d
from .dispatch import Backend, define_op
from .norm import gated_rmsnorm
from .ssd import ssd_scan


def _sizes(zxbcdt: Tensor, conv_weight: Tensor, A: Tensor, headdim: int, ngroups: int) -> tuple[int, int, int, int]:
    nheads = A.shape[0]
    d_inner, conv_dim = nheads * headdim, conv_weight.shape[0]
    d_state = (conv_dim - d_inner) // (2 * ngroups)
    if zxbcdt.shape[-1] != d_inner + conv_dim + nheads or d_inner + 2 * ngroups * d_state != conv_dim:
        raise ValueError(
            f"conv_scan_norm: zxbcdt width {zxbcdt.shape[-1]} does not split into z ({d_inner}), "
            f"xBC ({conv_dim}) and dt ({nheads}) with {ngroups} group(s)"
        )
    return nheads, d_inner, conv_dim, d_state


def conv_scan_norm_reference(
    zxbcdt,
    conv_weight,
    conv_bias,
    dt_bias,
    A,
    D,
    headdim: int,
    ngroups: int,
    norm_weight,
    eps: float,
    norm_group: int,
    reverse: bool = False,
    chunk_size: int = 256,
) -> Tensor:
    """The unfused composition of our ops (differentiable; the non-CPU path and the backward)."""
    nheads, d_inner, conv_dim, d_state = _sizes(zxbcdt, conv_weight, A, headdim, ngroups)
    b, L, _ = zxbcdt.shape
    z, xBC, dt = torch.split(zxbcdt, [d_inner, conv_dim, nheads], dim=-1)
    xBC = causal_conv1d(xBC.transpose(1, 2), conv_weight, conv_bias, "silu", reverse=reverse).transpose(1, 2)
    x, B, C = torch.split(xBC, [d_inner, ngroups * d_state, ngroups * d_state], dim=-1)
    y = ssd_scan(
        x.unflatten(-1, (nheads, headdim)),
        dt,
        A,
        B.unflatten(-1, (ngroups, d_state)),
        C.unflatten(-1, (ngroups, d_state)),
        chunk_size,
        D=D,
        dt_bias=dt_bias,
        dt_softplus=True,
        reverse=reverse,
    )
    return gated_rmsnorm(y.reshape(b, L, d_inner), z, norm_weight, eps, norm_group)


def _cuda_conv_scan_norm(
    zxbcdt,
    conv_weight,
    conv_bias,
    dt_bias,
    A,
    D,
    headdim: int,
    ngroups: int,
    norm_weight,
    eps: float,
    reverse: bool = False,
    chunk_size: int = 256,
    fn=None,
) -> Tensor:
    """The call into mamba_ssm's fused kernel (``fn``: ``mamba_split_conv1d_scan_combined`` or a function with
    that signature): conv, scan and gated norm (group = d_inner / ngroups, gate before the norm) in one
    autograd function; no out projection. ``reverse`` flips the sequence around it."""
    fn = fn or _cuda.mamba_split_conv1d_scan_combined()
    x = zxbcdt.flip(1) if reverse else zxbcdt
    out = fn(
        x,
        conv_weight,
        conv_bias,
        dt_bias,
        A,
        D,
        chunk_size,
        rmsnorm_weight=norm_weight,
        rmsnorm_eps=eps,
        outproj_weight=None,
        headdim=headdim,
        ngroups=ngroups,
        norm_before_gate=False,
    )
    return out.flip(1) if reverse else out


def _cpp_conv_scan_norm(
    zxbcdt, conv_weight, conv_bias, dt_bias, A, D, headdim, ngroups, norm_weight, eps, norm_group, reverse, chunk_size
) -> Tensor:
    """One C++ pass per chunk of 64 tokens (its own chunk length: the result does not depend on it)."""
    empty = zxbcdt.new_empty(0)
    Df = empty if D is None else (D.float()[:, None] if D.dim() == 1 else D.float()).expand(A.shape[0], headdim)
    x = zxbcdt if zxbcdt.stride(-1) == 1 else zxbcdt.contiguous()
    return load_cpu_kernels().ssd_conv_norm_fwd(
        x,
        conv_weight.float().contiguous(),
        empty if conv_bias is None else conv_bias.float().contiguous(),
        empty if dt_bias is None else dt_bias.float().contiguous(),
        A.float().contiguous(),
        Df.contiguous(),
        headdim,
        ngroups,
        norm_weight.float().contiguous(),
        eps,
        norm_group,
        reverse,
    )


def _cpp_usable(zxbcdt: Tensor, conv_weight: Tensor, *args: object) -> bool:
    return (
        zxbcdt.dtype == torch.float32
        and conv_weight.shape[1] <= 8  # the kernel's widest conv
        and not kernel_choice.using_reference_kernels()
        and load_cpu_kernels() is not None
    )


def _fused_usable(
    zxbcdt, conv_weight, conv_bias, dt_bias, A, D, headdim, ngroups, norm_weight, eps, norm_group, reverse, chunk_size
) -> bool:
    """mamba_ssm's kernel imports, so does causal-conv1d's (the fused kernel calls it for its convolution: without
    it, it fails at the first call, seen on an H200), and the layer is one it computes: a dt bias, and the norm
    over groups of d_inner / ngroups channels (its RMSNormGated's grouping)."""
    fused = _cuda.mamba_split_conv1d_scan_combined() is not None and _cuda.causal_conv1d_fn() is not None
    return fused and dt_bias is not None and norm_group == A.shape[0] * headdim // ngroups


def _cuda_fused(*args) -> Tensor:
    *first, norm_group, reverse, chunk_size = args
    return _cuda_conv_scan_norm(*first, reverse, chunk_size)


def _composed(*args) -> Tensor:
    return conv_scan_norm_reference(*args).contiguous()


def _fake(
    zxbcdt, conv_weight, conv_bias, dt_bias, A, D, headdim, ngroups, norm_weight, eps, norm_group, reverse, chunk_size
):
    return zxbcdt.new_empty(*zxbcdt.shape[:2], A.shape[0] * headdim)


_OP = define_op(
    "conv_scan_norm",
    "(Tensor zxbcdt, Tensor conv_weight, Tensor? conv_bias, Tensor? dt_bias, Tensor A, Tensor? D, int headdim, "
    "int ngroups, Tensor norm_weight, float eps, int norm_group, bool reverse, int chunk_size) -> Tensor",
    [
        Backend("mamba_ssm-fused", "cuda", _cuda_fused, usable=_fused_usable, native_autograd=True),
        Backend("composed", "cuda", _composed, differentiable=conv_scan_norm_reference),
        Backend("cpu-cpp", "cpu", _cpp_conv_scan_norm, usable=_cpp_usable, differentiable=conv_scan_norm_reference),
        Backend("composed", "cpu", _composed, differentiable=conv_scan_norm_reference),
    ],
    _fake,
)


def conv_scan_norm(
    zxbcdt: Tensor,
    conv1d_weight: Tensor,
    conv1d_bias: Tensor | None,
    dt_bias: Tensor | None,
    A: Tensor,
    D: Tensor | None,
    headdim: int,
    ngroups: int,
    rmsnorm_weight: Tensor,
    rmsnorm_eps: float = 1e-5,
    norm_group: int | None = None,
    reverse: bool = False,
    chunk_size: int = 256,
) -> Tensor:
    """Conv + SiLU, SSD scan and gated RMSNorm of a Mamba-2 layer in one op (see module doc). On CUDA with
    mamba_ssm installed, its fused ``mamba_split_conv1d_scan_combined`` runs (and differentiates) it."""
    _, d_inner, _, _ = _sizes(zxbcdt, conv1d_weight, A, headdim, ngroups)
    return _OP(
        zxbcdt,
        conv1d_weight,
        conv1d_bias,
        dt_bias,
        A,
        D,
        headdim,
        ngroups,
        rmsnorm_weight,
        rmsnorm_eps,
        norm_group or d_inner,
        reverse,
        int(chunk_size),
    )

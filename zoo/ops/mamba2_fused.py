"""The Mamba-2 mixer between its two projections as one op: causal conv + SiLU, SSD scan and gated RMSNorm,
in the layout of mamba_ssm's ``mamba_split_conv1d_scan_combined`` (without its optional out projection).

``conv_scan_norm(zxbcdt, conv1d_weight, conv1d_bias, dt_bias, A, D, headdim, ngroups, rmsnorm_weight,
rmsnorm_eps, norm_group, reverse=False)``: zxbcdt (batch, L, d_inner + conv_dim + nheads) holds z, xBC and
dt side by side (the in_proj output); x, B, C = split(silu(causal_conv1d(xBC))); y = ssd(x, dt, A, B, C, D)
with dt = softplus(dt + dt_bias); out = rmsnorm(y * silu(z)) * rmsnorm_weight over groups of
``norm_group`` channels; ``reverse`` scans from the end, output in token order. Returns (batch, L, d_inner).

On the CPU one C++ pass per chunk of 64 tokens does all of it (``ssd_conv_norm_fwd`` in ``csrc/ssd_cpu.cpp``):
the conv output and the un-normed y never reach memory, which on a memory-bound CPU is a fifth of the
layer's non-GEMM time. Its backward (``_cpp_backward``) runs no autograd: one C++ pass recomputes the conv
output, y and the state entering every chunk (``ssd_conv_fwd``; nothing but the inputs is kept from the
forward, as before), then the C++ backwards of the gated norm (``gated_rmsnorm_bwd``), the scan
(``ssd_bwd_xbc``, from those states: no states-only pass of its own) and the conv
(``causal_conv1d_bwd``, in reverse for a reverse layer) write the gradient of zxbcdt into one buffer. Elsewhere it is
``conv_scan_norm_reference``, the composition of ``causal_conv1d``, ``ssd_scan`` and ``gated_rmsnorm``,
differentiated by recomputation through those ops. FLOPs: the conv's plus the scan's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _cuda, kernel_choice
from ._extension import load_cpu_kernels
from .conv import _cpp_conv_backward, causal_conv1d
from .dispatch import Backend, define_op
from .norm import _cpp_norm_grads, gated_rmsnorm
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


def _per_channel_D(D: Tensor | None, like: Tensor, nheads: int, headdim: int) -> Tensor:
    """D as the C++ kernels take it: (nheads, headdim) float32 contiguous (a per-head D repeated over its
    channels), or an empty tensor without D."""
    if D is None:
        return like.new_empty(0)
    Df = D.float()
    return (Df[:, None] if Df.dim() == 1 else Df).expand(nheads, headdim).contiguous()


def _cpp_conv_scan_norm(
    zxbcdt, conv_weight, conv_bias, dt_bias, A, D, headdim, ngroups, norm_weight, eps, norm_group, reverse, chunk_size
) -> Tensor:
    """One C++ pass per chunk of 64 tokens (its own chunk length: the result does not depend on it)."""
    empty = zxbcdt.new_empty(0)
    x = zxbcdt if zxbcdt.stride(-1) == 1 else zxbcdt.contiguous()
    return load_cpu_kernels().ssd_conv_norm_fwd(
        x,
        conv_weight.float().contiguous(),
        empty if conv_bias is None else conv_bias.float().contiguous(),
        empty if dt_bias is None else dt_bias.float().contiguous(),
        A.float().contiguous(),
        _per_channel_D(D, x, A.shape[0], headdim),
        headdim,
        ngroups,
        norm_weight.float().contiguous(),
        eps,
        norm_group,
        reverse,
    )


def _recompute(
    zx: Tensor, conv_weight, conv_bias, dt_bias, A, Df: Tensor, headdim: int, ngroups: int, reverse: bool
) -> list[Tensor]:
    """(xBC, y, states): the conv + SiLU output (b, L, conv_dim), the un-normed scan output (b, L, d_inner) and
    the state entering each chunk of 64 tokens (b, chunks, ngroups, d_state, heads per group x headdim), what the
    backward needs of the forward, recomputed by one C++ pass over zxbcdt (``ssd_conv_fwd``). The states are
    d_state / 64 x the size of x, held only while the layer's backward runs."""
    empty = zx.new_empty(0)
    return load_cpu_kernels().ssd_conv_fwd(
        zx,
        conv_weight.float().contiguous(),
        empty if conv_bias is None else conv_bias.float().contiguous(),
        empty if dt_bias is None else dt_bias.float().contiguous(),
        A.float().contiguous(),
        Df,
        headdim,
        ngroups,
        reverse,
    )


def _conv_grads(dact: Tensor, xBC: Tensor, conv_weight, conv_bias, reverse: bool, dx_out: Tensor) -> list[Tensor]:
    """[dweight, dbias] of silu(conv(xBC)) given the gradient ``dact`` of its output (both (b, L, conv_dim)),
    by the conv's C++ backward (in reverse for a reverse conv), which writes dxBC into ``dx_out`` (its slice of
    the zxbcdt gradient)."""
    w = conv_weight.float().contiguous()
    b = None if conv_bias is None else conv_bias.float().contiguous()
    _, dw, db = _cpp_conv_backward(dact.transpose(1, 2), xBC.transpose(1, 2), w, b, True, reverse, dx_out)
    return [dw, db]


def _cpp_backward(grad: Tensor, args, needs) -> list[Tensor | None]:
    """The "cpu-cpp" row's backward, without autograd: recompute the conv output, the un-normed y and the chunk
    states (one C++ pass, ``ssd_conv_fwd``), then the gated norm's backward (dy, dz, dnorm_weight), the scan's
    (``ssd_bwd_xbc``: dx, dB, dC side by side, ddt and the parameters') and the conv's (dxBC, its weight and
    bias). dz, dxBC and ddt land in one (b, L, width) buffer, the gradient of zxbcdt, written there by the
    kernels. Gradients of absent inputs are None."""
    zxbcdt, conv_weight, conv_bias, dt_bias, A, D, headdim, ngroups, norm_weight, eps, norm_group, reverse, _ = args
    nheads, d_inner, conv_dim, _ = _sizes(zxbcdt, conv_weight, A, headdim, ngroups)
    b, L, width = zxbcdt.shape
    zx = zxbcdt if zxbcdt.stride(-1) == 1 else zxbcdt.contiguous()
    Df = _per_channel_D(D, zx, nheads, headdim)
    xBC, y, states = _recompute(zx, conv_weight, conv_bias, dt_bias, A, Df, headdim, ngroups, reverse)
    z, xBC_raw, dt = torch.split(zx, [d_inner, conv_dim, nheads], dim=-1)
    dzx = zx.new_empty(b, L, width)  # the gradient of zxbcdt: [dz | dxBC | ddt]
    dz, dxBC, ddt = torch.split(dzx, [d_inner, conv_dim, nheads], dim=-1)
    # gated RMSNorm of y * silu(z): dy, dz (into its slice of dzx), dnorm_weight
    dy, _, dnorm_w = _cpp_norm_grads(grad, y, z, norm_weight, eps, norm_group, dz_out=dz)
    # SSD scan: dx, dB, dC into dact (the gradient of the conv's output), d raw dt into its slice, dA, dD, ddt_bias
    dact = torch.empty_like(xBC)
    dA, dD, ddt_bias = load_cpu_kernels().ssd_bwd_xbc(
        dy.view(b, L, nheads, headdim),
        xBC,
        dt,
        A.float().contiguous(),
        Df,
        zx.new_empty(0) if dt_bias is None else dt_bias.float().contiguous(),
        headdim,
        ngroups,
        reverse,
        dact,
        ddt,
        states,
    )
    kernel_choice.record("ssd_scan_backward", "cpu-cpp")  # the SSD's C++ backward ran (what reports list)
    # causal conv + SiLU: dxBC (into its slice), dconv_weight, dconv_bias
    dconv_w, dconv_b = _conv_grads(dact, xBC_raw, conv_weight, conv_bias, reverse, dxBC)
    if D is not None and D.dim() == 1:
        dD = dD.sum(-1)  # D (nheads,): summed over each head's channels
    return [
        dzx.to(zxbcdt.dtype),
        dconv_w.to(conv_weight.dtype),
        None if conv_bias is None else dconv_b.to(conv_bias.dtype),
        None if dt_bias is None else ddt_bias.to(dt_bias.dtype),
        dA.to(A.dtype),
        None if D is None else dD.to(D.dtype),
        None,
        None,
        dnorm_w.to(norm_weight.dtype),
        None,
        None,
        None,
        None,
    ]


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
        Backend("cpu-cpp", "cpu", _cpp_conv_scan_norm, usable=_cpp_usable, backward=_cpp_backward),
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

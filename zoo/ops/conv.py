"""Causal depthwise conv1d as a custom op, with ``causal_conv1d_fn``'s semantics.

``causal_conv1d(x, weight, bias=None, activation=None)``: x (batch, dim, L), weight (dim, width),
bias (dim,); output[t] = sum_k weight[:, k] * x[t - (width - 1) + k] (zeros before the start), plus bias,
then SiLU when ``activation`` is ``"silu"`` or ``"swish"``. CUDA uses the causal-conv1d package when it
imports. The CPU runs our fused C++ kernel (conv + SiLU, forward and backward, ``csrc/causal_conv1d_cpu.cpp``)
on float32 or, when it cannot be built or for other dtypes, a grouped ``F.conv1d``.

``reverse=True`` (ours, not causal-conv1d's) runs the conv over the sequence from its end, outputs in token
order: ``flip(conv(flip(x)))``, the backward direction of a bidirectional layer. The C++ kernel does it without
the flipped copies, forward and backward; other backends flip.

Like causal-conv1d, x may be a token-major view (``x.stride(1) == 1``: the transpose of a Mamba layer's
(batch, L, dim) activations); the output then has the same layout and no copy is made.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _cuda, kernel_choice
from ._extension import load_cpu_kernels
from .dispatch import Backend, define_op

_ACTIVATIONS = (None, "silu", "swish")


def causal_conv1d_torch(x: Tensor, weight: Tensor, bias: Tensor | None = None, silu: bool = False) -> Tensor:
    """Grouped ``F.conv1d`` with left padding; differentiable; the CPU backend, and CUDA's without causal-conv1d.
    Weight and bias are cast to x's dtype: under autocast a custom op's inputs keep their own dtypes (bfloat16
    activations, float32 parameters), which ``F.conv1d`` refuses (seen on an H200)."""
    width = weight.shape[1]
    weight, bias = weight.to(x.dtype), None if bias is None else bias.to(x.dtype)
    out = F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1, groups=x.shape[1])[..., : x.shape[-1]]
    return F.silu(out) if silu else out


def _cuda_conv(x, weight, bias, silu, fn=None):
    """The call into causal-conv1d (``fn``: its ``causal_conv1d_fn`` or a function with that signature)."""
    fn = fn or _cuda.causal_conv1d_fn()
    return fn(x, weight, bias, activation="silu" if silu else None)


def _token_major(x: Tensor) -> Tensor:
    """(batch, dim, L) -> a (batch, L, dim) tensor with contiguous channels (a view when x is token-major)."""
    t = x.transpose(1, 2)
    return t if t.stride(2) == 1 else t.contiguous()


def _cpp_conv(x, weight, bias, silu, reverse=False):
    ext = load_cpu_kernels()
    empty = x.new_empty(0)
    bias = empty if bias is None else bias.contiguous()
    return ext.causal_conv1d_fwd(_token_major(x), weight.contiguous(), bias, silu, reverse).transpose(1, 2)


def _flipped(fn):
    """``fn`` run on the sequence from its end, by flipping (for backends without a reverse mode)."""

    def run(x, weight, bias, silu, reverse=False):
        if not reverse:
            return fn(x, weight, bias, silu)
        return fn(x.flip(-1), weight, bias, silu).flip(-1)

    return run


def _cpp_usable(x: Tensor, weight: Tensor, *_: object) -> bool:
    return (
        x.dtype == weight.dtype == torch.float32
        and weight.shape[1] <= 8
        and not kernel_choice.using_reference_kernels()
        and load_cpu_kernels() is not None
    )


def _cpp_backward(grad: Tensor, args, needs) -> list[Tensor | None]:
    x, weight, bias, silu, reverse = args
    dx, dw, db = _CONV_BACKWARD(grad, x, weight, bias, silu, reverse)
    return [dx, dw, db if bias is not None else None, None, None]


def _cpp_conv_backward(
    grad: Tensor,
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    silu: bool,
    reverse: bool = False,
    dx_out: Tensor | None = None,
) -> list[Tensor]:
    """[dx, dweight, dbias] from our C++ kernel (dbias empty without a bias); CPU float32 only. ``reverse``: of
    the reverse conv (the kernel walks the sequence from its end; no flipped copies). ``dx_out``, a (batch, L,
    dim) float32 tensor with contiguous channels (any row stride), receives dx (token-major)."""
    empty = x.new_empty(0)
    dx, dw, db = load_cpu_kernels().causal_conv1d_bwd(
        _token_major(grad),
        _token_major(x),
        weight.contiguous(),
        empty if bias is None else bias.contiguous(),
        silu,
        empty if dx_out is None else dx_out,
        reverse,
    )
    # dx in x's layout: a token-major view for a Mamba layer's activations (no transposing copy here, and none
    # in the backward of the split that made x), contiguous otherwise
    dx = dx.transpose(1, 2)
    return [dx if x.stride(1) == 1 else dx.contiguous(), dw, db]


def _fake_conv_backward(grad, x, weight, bias, silu, reverse):
    return [torch.empty_like(x), torch.empty_like(weight), x.new_empty(0) if bias is None else torch.empty_like(bias)]


_CONV_BACKWARD = define_op(
    "causal_conv1d_backward",
    "(Tensor grad, Tensor x, Tensor weight, Tensor? bias, bool silu, bool reverse) -> Tensor[]",
    [Backend("cpu-cpp", "cpu", _cpp_conv_backward)],
    _fake_conv_backward,
)


def _fake_conv(x, weight, bias, silu, reverse):
    return torch.empty_like(x)


def _keep_layout(fn):
    """``fn``'s output in x's layout: token-major when x is a token-major view, else contiguous."""

    def run(x, weight, bias, silu, reverse):
        out = fn(x, weight, bias, silu, reverse)
        return out if out.stride(1) == 1 and x.stride(1) == 1 else out.contiguous()

    return run


_OP = define_op(
    "causal_conv1d",
    "(Tensor x, Tensor weight, Tensor? bias, bool silu, bool reverse) -> Tensor",
    [
        Backend(
            "causal_conv1d",
            "cuda",
            _keep_layout(_flipped(_cuda_conv)),
            usable=lambda *a: _cuda.causal_conv1d_fn() is not None,
        ),
        Backend("torch-conv1d", "cuda", _keep_layout(_flipped(causal_conv1d_torch))),
        Backend("cpu-cpp", "cpu", _keep_layout(_cpp_conv), usable=_cpp_usable, backward=_cpp_backward),
        Backend("torch-conv1d", "cpu", _keep_layout(_flipped(causal_conv1d_torch))),
    ],
    _fake_conv,
)


def causal_conv1d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None, reverse: bool = False
) -> Tensor:
    """Causal depthwise conv1d (see module doc)."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"causal_conv1d: activation must be one of {_ACTIVATIONS}, got {activation!r}")
    return _OP(x, weight, bias, activation is not None, reverse)

"""Causal depthwise conv1d as a custom op, with ``causal_conv1d_fn``'s semantics.

``causal_conv1d(x, weight, bias=None, activation=None)``: x (batch, dim, L), weight (dim, width),
bias (dim,); output[t] = sum_k weight[:, k] * x[t - (width - 1) + k] (zeros before the start), plus bias,
then SiLU when ``activation`` is ``"silu"`` or ``"swish"``. CUDA uses the causal-conv1d package when it
imports. The CPU runs our fused C++ kernel (conv + SiLU, forward and backward, ``csrc/causal_conv1d_cpu.cpp``)
on float32 or, when it cannot be built or for other dtypes, a grouped ``F.conv1d``.

``reverse=True`` (ours, not causal-conv1d's) runs the conv over the sequence from its end, outputs in token
order: ``flip(conv(flip(x)))``, the backward direction of a bidirectional layer. The C++ kernel does it without
the flipped copies; other backends flip.

Like causal-conv1d, x may be a token-major view (``x.stride(1) == 1``: the transpose of a Mamba layer's
(batch, L, dim) activations); the output then has the same layout and no copy is made.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _cuda, backends
from ._extension import load_cpu_kernels
from ._recompute import grads_by_recompute

_ACTIVATIONS = (None, "silu", "swish")


def causal_conv1d_torch(x: Tensor, weight: Tensor, bias: Tensor | None = None, silu: bool = False) -> Tensor:
    """Grouped ``F.conv1d`` with left padding; differentiable; the CPU backend."""
    width = weight.shape[1]
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


def _uses_cpp(x: Tensor, weight: Tensor) -> bool:
    return (
        not x.is_cuda and x.dtype == weight.dtype == torch.float32 and weight.shape[1] <= 8
        and not backends.using_reference_kernels()
        and load_cpu_kernels() is not None
    )  # fmt: skip


def _implementation(x: Tensor, weight: Tensor):
    if x.is_cuda and _cuda.causal_conv1d_fn() is not None:
        return "causal_conv1d", _flipped(_cuda_conv)
    if _uses_cpp(x, weight):
        return "cpu-cpp", _cpp_conv
    return "torch-conv1d", _flipped(causal_conv1d_torch)


@torch.library.custom_op("zoo::causal_conv1d", mutates_args=())
def _causal_conv1d_op(x: Tensor, weight: Tensor, bias: Tensor | None, silu: bool, reverse: bool) -> Tensor:
    name, fn = _implementation(x, weight)
    backends.record("causal_conv1d", name)
    with torch.no_grad():
        out = fn(x, weight, bias, silu, reverse)
    return out if out.stride(1) == 1 and x.stride(1) == 1 else out.contiguous()


@_causal_conv1d_op.register_fake
def _(x, weight, bias, silu, reverse):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:3])
    ctx.silu, ctx.reverse = inputs[3], inputs[4]


@torch.library.custom_op("zoo::causal_conv1d_backward", mutates_args=())
def _causal_conv1d_backward_op(
    grad: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None, silu: bool
) -> list[Tensor]:
    """[dx, dweight, dbias] from our C++ kernel (dbias empty without a bias); CPU float32 only."""
    empty = x.new_empty(0)
    dx, dw, db = load_cpu_kernels().causal_conv1d_bwd(
        grad.transpose(1, 2).contiguous(), _token_major(x), weight.contiguous(),
        empty if bias is None else bias.contiguous(), silu,
    )  # fmt: skip
    return [dx.transpose(1, 2).contiguous(), dw, db]


@_causal_conv1d_backward_op.register_fake
def _(grad, x, weight, bias, silu):
    return [torch.empty_like(x), torch.empty_like(weight), x.new_empty(0) if bias is None else torch.empty_like(bias)]


def _backward(ctx, grad):
    x, weight, bias = ctx.saved_tensors
    needs = ctx.needs_input_grad
    if _uses_cpp(x, weight):
        if ctx.reverse:  # the backward kernel has no reverse mode: differentiate the flipped problem
            dx, dw, db = _causal_conv1d_backward_op(grad.flip(-1), x.flip(-1), weight, bias, ctx.silu)
            dx = dx.flip(-1)
        else:
            dx, dw, db = _causal_conv1d_backward_op(grad, x, weight, bias, ctx.silu)
        return (dx if needs[0] else None, dw if needs[1] else None, db if bias is not None and needs[2] else None,
                None, None)  # fmt: skip
    # other backends: autograd of a recomputation (outside any custom op, where autograd is live)
    _, fn = _implementation(x, weight)
    return (*grads_by_recompute(fn, (x, weight, bias, ctx.silu, ctx.reverse), [*needs[:3], False, False], grad),)


_causal_conv1d_op.register_autograd(_backward, setup_context=_setup_context)


def causal_conv1d(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None, reverse: bool = False
) -> Tensor:
    """Causal depthwise conv1d (see module doc)."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"causal_conv1d: activation must be one of {_ACTIVATIONS}, got {activation!r}")
    return _causal_conv1d_op(x, weight, bias, activation is not None, reverse)

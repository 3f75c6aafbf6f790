"""Causal depthwise conv1d as a custom op, with ``causal_conv1d_fn``'s semantics.

``causal_conv1d(x, weight, bias=None, activation=None)``: x (batch, dim, L), weight (dim, width),
bias (dim,); output[t] = sum_k weight[:, k] * x[t - (width - 1) + k] (zeros before the start), plus bias,
then SiLU when ``activation`` is ``"silu"`` or ``"swish"``. CUDA uses the causal-conv1d package when it
imports; everything else a grouped ``F.conv1d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _cuda, backends
from ._recompute import grads_by_recompute

_ACTIVATIONS = (None, "silu", "swish")


def causal_conv1d_torch(x: Tensor, weight: Tensor, bias: Tensor | None = None, silu: bool = False) -> Tensor:
    """Grouped ``F.conv1d`` with left padding; differentiable; the CPU backend."""
    width = weight.shape[1]
    out = F.conv1d(x, weight.unsqueeze(1), bias, padding=width - 1, groups=x.shape[1])[..., : x.shape[-1]]
    return F.silu(out) if silu else out


def _cuda_conv(x, weight, bias, silu):
    return _cuda.causal_conv1d_fn()(x, weight, bias, activation="silu" if silu else None)


def _implementation(x: Tensor):
    if x.is_cuda and _cuda.causal_conv1d_fn() is not None:
        return "causal_conv1d", _cuda_conv
    return "torch-conv1d", causal_conv1d_torch


@torch.library.custom_op("zoo::causal_conv1d", mutates_args=())
def _causal_conv1d_op(x: Tensor, weight: Tensor, bias: Tensor | None, silu: bool) -> Tensor:
    name, fn = _implementation(x)
    backends.record("causal_conv1d", name)
    with torch.no_grad():
        return fn(x, weight, bias, silu).contiguous()


@_causal_conv1d_op.register_fake
def _(x, weight, bias, silu):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:3])
    ctx.silu = inputs[3]


def _backward(ctx, grad):
    args = (*ctx.saved_tensors, ctx.silu)
    _, fn = _implementation(args[0])
    return tuple(grads_by_recompute(fn, args, [*ctx.needs_input_grad[:3], False], grad))


_causal_conv1d_op.register_autograd(_backward, setup_context=_setup_context)


def causal_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None = None, activation: str | None = None) -> Tensor:
    """Causal depthwise conv1d (see module doc)."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"causal_conv1d: activation must be one of {_ACTIVATIONS}, got {activation!r}")
    return _causal_conv1d_op(x, weight, bias, activation is not None)

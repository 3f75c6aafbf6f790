"""Backward passes by recomputation through a differentiable implementation.

Several ops (SSD scan, causal conv, attention) run their forward without autograd inside a
``torch.library`` custom op. Their backward re-runs a differentiable implementation of the same op under
``enable_grad`` and asks autograd for the input gradients: the cost of one extra forward, the memory of
activation checkpointing (nothing but the inputs is kept between forward and backward).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def grads_by_recompute(
    fn: Callable[..., Tensor], args: Sequence[object], needs_grad: Sequence[bool], grad_out: Tensor
) -> list[Tensor | None]:
    """Gradients of ``fn(*args)`` w.r.t. each tensor in ``args`` whose ``needs_grad`` is set (else None)."""
    with torch.enable_grad():
        leaves = [
            a.detach().requires_grad_(True) if isinstance(a, Tensor) and n else a
            for a, n in zip(args, needs_grad, strict=True)
        ]
        wanted = [i for i, (a, n) in enumerate(zip(leaves, needs_grad, strict=True)) if n and isinstance(a, Tensor)]
        if not wanted:
            return [None] * len(args)
        out = fn(*leaves)
        grads = torch.autograd.grad(out, [leaves[i] for i in wanted], grad_out, allow_unused=True)
    result: list[Tensor | None] = [None] * len(args)
    for i, g in zip(wanted, grads, strict=True):
        result[i] = g if g is not None else torch.zeros_like(args[i])
    return result

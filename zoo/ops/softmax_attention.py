"""Softmax attention as a custom op, so FLOP counters see its quadratic term and backends can differ.

``attention(q, k, v, key_mask=None)``: q (batch, heads, Lq, head_dim), k and v (batch, heads, Lk,
head_dim), ``key_mask`` (batch, Lk) bool, True = attend. Scale 1/sqrt(head_dim), no dropout, not causal.

Backends: on CUDA, flash-attn for fp16/bf16 inputs without a mask when it imports, else PyTorch's
``scaled_dot_product_attention``; on CPU, SDPA, whose CPU flash kernel keeps memory O(L) (the L x L score
matrix is never materialised).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _cuda
from .dispatch import Backend, define_op


def attention_sdpa(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None) -> Tensor:
    mask = None if key_mask is None else key_mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _attention_flash(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None, fn=None) -> Tensor:
    """The call into flash-attn (``fn``: its ``flash_attn_func`` or a function with that signature), which
    takes (batch, L, heads, head_dim)."""
    fn = fn or _cuda.flash_attn_func()
    return fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def _flash_usable(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None) -> bool:
    return key_mask is None and q.dtype in (torch.float16, torch.bfloat16) and _cuda.flash_attn_func() is not None


def _contiguous(fn):
    return lambda *args: fn(*args).contiguous()


_OP = define_op(
    "attention",
    "(Tensor q, Tensor k, Tensor v, Tensor? key_mask) -> Tensor",
    [
        Backend("flash_attn", "cuda", _contiguous(_attention_flash), usable=_flash_usable),
        Backend("sdpa", "cuda", _contiguous(attention_sdpa)),
        Backend("sdpa", "cpu", _contiguous(attention_sdpa)),
    ],
    lambda q, k, v, key_mask: q.new_empty(*q.shape[:-1], v.shape[-1]),
)


def attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None) -> Tensor:
    """Softmax attention (see module doc)."""
    if key_mask is not None and key_mask.dtype != torch.bool:
        raise TypeError(f"attention: key_mask must be bool (True = attend), got {key_mask.dtype}")
    return _OP(q, k, v, key_mask)

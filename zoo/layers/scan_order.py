"""2-D <-> 1-D token orders on an h x w grid (any aspect ratio).

Tokens are stored row-major (index = row * w + col). A scan order is a permutation ``perm`` of those
indices: the sequence a mixer sees is ``x[:, perm]`` and ``x_seq[:, inverse(perm)]`` puts it back.

- ``row``: row-major (width-first, T2MD's "W" scan);
- ``col``: column-major (height-first, T2MD's "H" scan);
- ``row_reversed`` and ``col_reversed``: the same sequences read backwards.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

SCAN_ORDERS = ("row", "row_reversed", "col", "col_reversed")


@lru_cache(maxsize=256)
def _permutation(h: int, w: int, order: str) -> Tensor:
    if order not in SCAN_ORDERS:
        raise ValueError(f"unknown scan order {order!r}; choose from {SCAN_ORDERS}")
    # cached: a normal CPU tensor even if first built in inference mode or under `with torch.device("meta")`
    with torch.inference_mode(False):
        grid = torch.arange(h * w, device="cpu").reshape(h, w)
        seq = grid.t().reshape(-1) if order.startswith("col") else grid.reshape(-1)
        return seq.flip(0) if order.endswith("reversed") else seq


def scan_permutation(h: int, w: int, order: str) -> Tensor:
    """Row-major token index at each position of the ``order`` sequence (a LongTensor of length h*w)."""
    return _permutation(h, w, order)


class _PermuteTokens(torch.autograd.Function):
    """``x[:, index]`` for a permutation ``index`` of dim 1, whose gradient is the gather by the inverse
    permutation: autograd's own backward of an index is a scatter-add (index_put with accumulate), several
    times slower on the CPU, and a cat around it costs another full copy."""

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        return x.index_select(1, index)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (index,) = ctx.saved_tensors
        return grad.index_select(1, torch.argsort(index)), None


def permute_tokens(x: Tensor, perm: Tensor, prefix: int = 0) -> Tensor:
    """(B, prefix + n, C) -> the ``prefix`` tokens in front as they are, then the other n in the order ``perm``
    (a permutation of range(n)): one gather, in the forward and in the backward."""
    if prefix:
        perm = torch.cat([torch.arange(prefix, device=perm.device), perm + prefix])
    if torch.is_grad_enabled() and not torch.jit.is_tracing():
        return _PermuteTokens.apply(x, perm)
    return x.index_select(1, perm)


def inverse_permutation(perm: Tensor) -> Tensor:
    """The permutation that undoes ``perm``: ``permute_tokens(permute_tokens(x, p), inverse_permutation(p))``
    is x."""
    return torch.argsort(perm)


def to_scan_order(x: Tensor, h: int, w: int, order: str) -> Tensor:
    """(B, h*w, C) row-major tokens -> the same tokens in ``order``.

    Written as reshapes, a transpose and a flip rather than a gather by ``scan_permutation``: ``row`` is
    the input itself (no copy) and ``col`` one strided copy, which at 4K token grids is several times
    cheaper than an index gather (tests check both give the same sequence)."""
    if order not in SCAN_ORDERS:
        raise ValueError(f"unknown scan order {order!r}; choose from {SCAN_ORDERS}")
    if order.startswith("col"):
        x = x.unflatten(1, (h, w)).transpose(1, 2).flatten(1, 2)
    return x.flip(1) if order.endswith("reversed") else x


def from_scan_order(x: Tensor, h: int, w: int, order: str) -> Tensor:
    """Inverse of ``to_scan_order``: tokens in ``order`` -> row-major."""
    if order not in SCAN_ORDERS:
        raise ValueError(f"unknown scan order {order!r}; choose from {SCAN_ORDERS}")
    if order.endswith("reversed"):
        x = x.flip(1)
    if order.startswith("col"):
        x = x.unflatten(1, (w, h)).transpose(1, 2).flatten(1, 2)
    return x

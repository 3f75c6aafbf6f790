"""Gated linear attention (GLA, Yang et al. 2023, "Gated Linear Attention Transformers with Hardware-Efficient
Training") as a custom op: DiG's token mixer (Zhu et al. 2024), so FLOP counters see its linear cost and
backends can differ.

``gated_linear_attention(q, k, v, g, scale=None)``: q, k, g (batch, heads, L, key_dim), v (batch, heads, L,
value_dim) -> (batch, heads, L, value_dim). Causal, one direction (DiG gets its second direction by flipping
the token sequence between blocks). The recurrence, per batch and head, with a state S of (key_dim,
value_dim)::

    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,    o_t = scale * q_t S_t,    S_0 = 0

g is a log-gate, g <= 0 (per key dimension: a decay in (0, 1]); ``scale`` defaults to key_dim ** -0.5, as
flash-linear-attention's (fla) ``chunk_gla`` and ``naive_recurrent_gla``, which DiG calls. Sums in float32
whatever the input dtype, the output in q's dtype (as fla).

The chunked form (chunks of ``CHUNK`` = 64 tokens, fla's chunk size): with b_t the cumulative log-gate inside
the chunk and S the state entering it,

    o_t = scale * [ (q_t * exp(b_t)) S + sum_{s <= t in chunk} (sum_d q_td k_sd exp(b_td - b_sd)) v_s ]
    S'  = diag(exp(b_last)) S + sum_s (k_s * exp(b_last - b_s))^T v_s

Every exponent is <= 0 (the gates are non-positive, b is non-increasing), so no factor can overflow however
strong the decay: the intra-chunk scores are formed from the (chunk, chunk, key_dim) decays directly rather
than by factoring exp(b_t) exp(-b_s) (which fla's kernels do in sub-chunks). Memory is O(L): one chunk's
temporaries and the (key_dim, value_dim) state.

Backends: CUDA: fla's ``chunk_gla`` when ``fla.ops.gla`` imports (its own autograd through the recomputation),
else the chunked PyTorch code; CPU: the chunked PyTorch code. The backward recomputes through the forward
(``dispatch``), O(L) memory too. FLOPs: ``flops.gated_linear_attention_flops``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from .dispatch import Backend, define_op

CHUNK = 64  # tokens per chunk (fla's chunk_gla uses 64 too)


def gla_chunked(q: Tensor, k: Tensor, v: Tensor, g: Tensor, scale: float, chunk: int = CHUNK) -> Tensor:
    """The op in PyTorch, chunk by chunk (see module doc). Differentiable; float32 inside."""
    b, h, length, dk = q.shape
    state = q.new_zeros(b, h, dk, v.shape[-1], dtype=torch.float32)
    outs = []
    for start in range(0, length, chunk):
        sl = slice(start, start + chunk)
        qc, kc, vc = q[..., sl, :].float(), k[..., sl, :].float(), v[..., sl, :].float()
        cum = g[..., sl, :].float().cumsum(-2)  # b_t, (B, H, C, Dk), non-increasing
        c = cum.shape[-2]
        causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()
        diff = cum.unsqueeze(-2) - cum.unsqueeze(-3)  # (B, H, t, s, Dk): b_t - b_s, <= 0 where s <= t
        decay = torch.where(causal[..., None], diff, float("-inf")).exp()
        scores = torch.einsum("bhtd,bhsd,bhtsd->bhts", qc, kc, decay)
        out = scores @ vc + (qc * cum.exp()) @ state
        outs.append((out * scale).to(q.dtype))
        last = cum[..., -1:, :]  # (B, H, 1, Dk)
        state = last.exp().transpose(-1, -2) * state + (kc * (last - cum).exp()).transpose(-1, -2) @ vc
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)


def gla_reference(q: Tensor, k: Tensor, v: Tensor, g: Tensor, scale: float | None = None) -> Tensor:
    """The recurrence step by step in float64, for tests (differentiable)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    q, k, v, g = (t.double() for t in (q, k, v, g))
    state = q.new_zeros(*q.shape[:-2], q.shape[-1], v.shape[-1])
    outs = []
    for i in range(q.shape[-2]):
        state = g[..., i, :].exp().unsqueeze(-1) * state + k[..., i, :].unsqueeze(-1) * v[..., i, :].unsqueeze(-2)
        outs.append(scale * (q[..., i, :].unsqueeze(-2) @ state).squeeze(-2))
    return torch.stack(outs, dim=-2)


@functools.cache
def fla_chunk_gla() -> Callable | None:
    """fla's Triton ``chunk_gla`` (layout (B, T, H, K)), or None where it does not import."""
    try:
        from fla.ops.gla import chunk_gla
    except Exception:
        return None
    return chunk_gla


def _fla(q: Tensor, k: Tensor, v: Tensor, g: Tensor, scale: float) -> Tensor:
    fn = fla_chunk_gla()
    q, k, v, g = (t.transpose(1, 2) for t in (q, k, v, g))
    out, _ = fn(q, k, v, g, scale=scale)
    return out.transpose(1, 2)


def _torch(q: Tensor, k: Tensor, v: Tensor, g: Tensor, scale: float) -> Tensor:
    return gla_chunked(q, k, v, g, scale).contiguous()


_OP = define_op(
    "gated_linear_attention",
    "(Tensor q, Tensor k, Tensor v, Tensor g, float scale) -> Tensor",
    [
        Backend(
            "fla",
            "cuda",
            lambda *a: _fla(*a).contiguous(),
            usable=lambda *a: fla_chunk_gla() is not None,
            differentiable=_fla,
        ),
        Backend("torch-chunked", "cuda", _torch, differentiable=gla_chunked),
        Backend("torch-chunked", "cpu", _torch, differentiable=gla_chunked),
    ],
    lambda q, k, v, g, scale: q.new_empty(*q.shape[:-1], v.shape[-1]),
)


def gated_linear_attention(q: Tensor, k: Tensor, v: Tensor, g: Tensor, scale: float | None = None) -> Tensor:
    """Gated linear attention (see module doc); g the log-gate (<= 0), shaped as k."""
    if q.shape != k.shape or g.shape != k.shape or k.shape[:-1] != v.shape[:-1] or q.dim() != 4:
        raise ValueError(
            f"gated_linear_attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, "
            f"g {tuple(g.shape)} do not fit (q, k, g (B, H, L, Dk); v (B, H, L, Dv))"
        )
    return _OP(q, k, v, g, float(q.shape[-1] ** -0.5 if scale is None else scale))

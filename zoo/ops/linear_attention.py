"""ReLU linear attention as a custom op (SANA's self-attention, Xie et al. 2024), so FLOP counters see its
linear cost and backends can differ.

``linear_attention(q, k, v, eps=1e-15)``: q (batch, heads, Lq, head_dim), k (batch, heads, Lk, head_dim),
v (batch, heads, Lk, value_dim) -> (batch, heads, Lq, value_dim). Not causal, no mask, no scale::

    out_i = sum_j (relu(q_i) . relu(k_j)) v_j / (relu(q_i) . sum_j relu(k_j) + eps)

This is diffusers' ``SanaLinearAttnProcessor2_0`` (and NVlabs/Sana's ``LiteLA``): the ReLU feature map on q
and k, the sums in float32 whatever the input dtype (the output cast back to q's dtype), eps 1e-15 added to
the denominator. diffusers computes numerator and denominator in one matmul by padding v with a row of
ones; we compute the same two products, k^T v first, so memory stays O(L): the state is (heads, head_dim,
value_dim) and the key sum (heads, head_dim), never an L x L matrix.

Backends: on the CPU, the products over chunks of ``CHUNK`` tokens (float32 temporaries of one chunk, not
of the whole sequence); on CUDA, the same PyTorch matmuls unchunked. flash-linear-attention (fla) has no
row: its linear-attention kernels (``chunk_linear_attn``, ``fused_chunk_linear_attn``) are causal, and
SANA's attention is not. The backward recomputes through the forward (``dispatch``): O(L) memory too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .dispatch import Backend, define_op

EPS = 1e-15  # diffusers' SanaLinearAttnProcessor2_0 and NVlabs/Sana's LiteLA
CHUNK = 4096  # tokens per chunk of the CPU backend


def linear_attention_torch(q: Tensor, k: Tensor, v: Tensor, eps: float = EPS, chunk: int | None = None) -> Tensor:
    """The op in PyTorch: the key state relu(k)^T [v | 1] accumulated over chunks of ``chunk`` tokens (None:
    all at once), then read out by relu(q), chunk by chunk. Differentiable."""
    lq, lk = q.shape[-2], k.shape[-2]
    step_k, step_q = chunk or lk, chunk or lq
    state = q.new_zeros(*k.shape[:-2], k.shape[-1], v.shape[-1], dtype=torch.float32)  # (B, H, D, Dv)
    ksum = q.new_zeros(*k.shape[:-2], 1, k.shape[-1], dtype=torch.float32)  # (B, H, 1, D)
    for start in range(0, lk, step_k):
        fk = F.relu(k[..., start : start + step_k, :]).float()
        state = state + fk.transpose(-1, -2) @ v[..., start : start + step_k, :].float()
        ksum = ksum + fk.sum(-2, keepdim=True)
    outs = []
    for start in range(0, lq, step_q):
        fq = F.relu(q[..., start : start + step_q, :]).float()
        num = fq @ state
        den = (fq * ksum).sum(-1, keepdim=True)
        outs.append((num / (den + eps)).to(q.dtype))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)


def linear_attention_reference(q: Tensor, k: Tensor, v: Tensor, eps: float = EPS) -> Tensor:
    """The O(L^2) definition, for tests: the (Lq, Lk) kernel matrix relu(q) relu(k)^T, row-normalised."""
    scores = F.relu(q).double() @ F.relu(k).double().transpose(-1, -2)
    return ((scores @ v.double()) / (scores.sum(-1, keepdim=True) + eps)).to(q.dtype)


def _cpu(q: Tensor, k: Tensor, v: Tensor, eps: float) -> Tensor:
    return linear_attention_torch(q, k, v, eps, CHUNK).contiguous()


def _cuda(q: Tensor, k: Tensor, v: Tensor, eps: float) -> Tensor:
    return linear_attention_torch(q, k, v, eps).contiguous()


_OP = define_op(
    "linear_attention",
    "(Tensor q, Tensor k, Tensor v, float eps) -> Tensor",
    [Backend("torch", "cuda", _cuda), Backend("torch-chunked", "cpu", _cpu)],
    lambda q, k, v, eps: q.new_empty(*q.shape[:-1], v.shape[-1]),
)


def linear_attention(q: Tensor, k: Tensor, v: Tensor, eps: float = EPS) -> Tensor:
    """ReLU linear attention (see module doc)."""
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"linear_attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not fit "
            "(q and k share head_dim, k and v share length)"
        )
    return _OP(q, k, v, float(eps))

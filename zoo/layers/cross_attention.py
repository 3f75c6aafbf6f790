"""Cross-attention from image tokens to caption tokens, PixArt-alpha's layout (``q_linear``, ``kv_linear``,
``proj``), on ``zoo.ops.attention`` with a key mask for padded captions. PixArt packs the batch into one
sequence with a block-diagonal mask; attending per sample with a key mask is the same computation."""

from __future__ import annotations

from torch import Tensor, nn

from zoo import ops


class CrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, N, d) attends to context (B, M, d); mask (B, M) bool, True = a real caption token."""
        b, n, d = x.shape
        heads, hd = self.num_heads, d // self.num_heads
        q = self.q_linear(x).view(b, n, heads, hd).transpose(1, 2)
        k, v = self.kv_linear(context).view(b, context.shape[1], 2, heads, hd).permute(2, 0, 3, 1, 4)
        out = ops.attention(q, k, v, mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))

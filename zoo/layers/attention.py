"""Multi-head self-attention with timm's parameter layout (``qkv``, ``proj``) on ``zoo.ops.attention``.

timm's own ``Attention`` calls ``F.scaled_dot_product_attention`` directly: FLOP counters do not see its
quadratic term on CPU and it never reaches flash-attn. Same weights, our op.
"""

from __future__ import annotations

from torch import Tensor, nn

from zoo import ops
from zoo.errors import BadOption


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise BadOption(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = ops.attention(qkv[0], qkv[1], qkv[2], key_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

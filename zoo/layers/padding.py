"""Learnable end-of-line padding tokens on a 2-D token grid (DiM of Teng et al., Sec. 3.2).

``k`` learned tokens are appended after every row (column ``w + i`` holds token ``i``) and ``k`` full rows
are appended at the bottom (row ``h + i`` holds token ``i`` across the whole padded width), giving an
(h + k) x (w + k) grid. Read row-major, every row ends with the k tokens; read column-major, every
column ends with them too, so each scan direction sees an explicit end-of-line marker. This is the
'lateral' geometry of the official DiM code (tyshiwo1/DiM-DiffusionMamba); with k equal to the causal
conv width, the first token of a line never sees the previous line's last real tokens through the conv.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class EndOfLinePadding(nn.Module):
    def __init__(self, dim: int, num_tokens: int = 3, init_std: float = 0.02):
        super().__init__()
        self.num_tokens = num_tokens
        self.tokens = nn.Parameter(torch.randn(num_tokens, dim) * init_std)

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        return h + self.num_tokens, w + self.num_tokens

    def pad(self, x: Tensor, h: int, w: int) -> Tensor:
        """(B, h*w, C) row-major -> (B, (h+k)*(w+k), C) row-major on the padded grid."""
        b, _, c = x.shape
        k = self.num_tokens
        tokens = self.tokens.to(x.dtype)
        grid = x.reshape(b, h, w, c)
        right = tokens[None, None].expand(b, h, k, c)  # column w+i <- token i
        grid = torch.cat([grid, right], dim=2)
        bottom = tokens[None, :, None].expand(b, k, w + k, c)  # row h+i <- token i
        return torch.cat([grid, bottom], dim=1).reshape(b, (h + k) * (w + k), c)

    def unpad(self, x: Tensor, h: int, w: int) -> Tensor:
        """Inverse of ``pad``: drop the padding tokens, keep the h*w real ones in row-major order."""
        b, _, c = x.shape
        k = self.num_tokens
        return x.reshape(b, h + k, w + k, c)[:, :h, :w].reshape(b, h * w, c)

"""Learnable end-of-line padding tokens on a 2-D token grid (DiM of Teng et al., Sec. 3.2).

``k`` learned tokens pad an h x w grid to (h + k) x (w + k): k columns on the right of every row and k full
rows at the bottom. Read row-major, every row ends with k pads; read column-major, every column does too, so
each scan direction sees an explicit end-of-line marker; with k equal to the causal conv width, the first
token of a line never sees the previous line's last real tokens through the conv. Which token sits where
follows the two layouts of the official DiM code (tyshiwo1/DiM-DiffusionMamba):

- ``"lateral"`` (its 256-px and CIFAR-10 configs): column ``w + i`` holds token ``i`` in every row, and row
  ``h + i`` holds token ``i`` across the whole padded width.
- ``"rho"`` (its ``rho_pad``, the 512-px fine-tune and upsampling configs): the pad positions, read
  row-major, take the tokens 0, 1, ..., k-1, 0, 1, ... in turn. The right-hand columns are as in
  ``"lateral"``; bottom row ``r``, column ``c`` holds token ``(r * w + c) % k``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.errors import BadOption

PAD_LAYOUTS = ("lateral", "rho")


class EndOfLinePadding(nn.Module):
    def __init__(self, dim: int, num_tokens: int = 3, init_std: float = 0.02, layout: str = "lateral"):
        super().__init__()
        if layout not in PAD_LAYOUTS:
            raise BadOption(f"padding layout must be one of {PAD_LAYOUTS}, got {layout!r}")
        self.num_tokens, self.layout = num_tokens, layout
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
        if self.layout == "lateral":
            bottom = tokens[None, :, None].expand(b, k, w + k, c)  # row h+i <- token i
        else:  # rho: pad positions in row-major order cycle through the tokens
            rows = torch.arange(k, device=x.device)[:, None] * w + torch.arange(w + k, device=x.device)
            bottom = tokens[rows % k][None].expand(b, k, w + k, c)
        return torch.cat([grid, bottom], dim=1).reshape(b, (h + k) * (w + k), c)

    def unpad(self, x: Tensor, h: int, w: int) -> Tensor:
        """Inverse of ``pad``: drop the padding tokens, keep the h*w real ones in row-major order."""
        b, _, c = x.shape
        k = self.num_tokens
        return x.reshape(b, h + k, w + k, c)[:, :h, :w].reshape(b, h * w, c)

"""Patch grids: the patch embedding, the size check every model runs, and unpatchify for any (also
non-square) grid. ``PatchEmbed`` keeps timm's parameter names so official checkpoints load unchanged
(``tests/test_layers.py`` checks parity with timm's module)."""

from __future__ import annotations

from torch import Tensor, nn

from zoo.errors import UnsupportedInput


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches of any input size -> (batch, tokens, dim), row-major (timm's
    ``PatchEmbed(None, p, in_chans, dim)``: a strided conv named ``proj``)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, bias: bool = True):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def nearest_multiples(size: int, multiple: int, count: int = 2) -> list[int]:
    """The ``count`` multiples of ``multiple`` on each side of ``size`` (positive ones only)."""
    below = (size // multiple) * multiple
    values = {below - i * multiple for i in range(count)} | {below + (i + 1) * multiple for i in range(count)}
    return sorted(v for v in values if v > 0)


def token_grid(height: int, width: int, patch: int, what: str = "input") -> tuple[int, int]:
    """(rows, cols) of patches; a clear error naming the nearest valid sizes when not divisible."""
    bad = [(name, v) for name, v in (("height", height), ("width", width)) if v % patch]
    if bad:
        hints = "; ".join(f"{name} {v} -> try {nearest_multiples(v, patch)}" for name, v in bad)
        raise UnsupportedInput(
            f"{what} size {width}x{height} (WxH) is not divisible by the patch size {patch}: {hints}"
        )
    return height // patch, width // patch


def unpatchify(x: Tensor, h: int, w: int, patch: int, channels: int) -> Tensor:
    """(B, h*w, patch*patch*C) tokens in row-major order -> (B, C, h*patch, w*patch) (DiT's layout)."""
    b = x.shape[0]
    x = x.reshape(b, h, w, patch, patch, channels)
    x = x.permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, h * patch, w * patch)

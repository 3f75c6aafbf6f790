"""Fixed 2-D sin-cos positional embeddings for any token grid h x w.

Channel convention of DiT/MAE/PixArt (their meshgrid is built (w, h)): the first half of the channels
encodes the x (column) coordinate, the second half the y (row) coordinate; each half is [sin | cos] with
frequencies 10000^(-k / (dim/4)). Tokens are in row-major order (index = row * w + col).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """(len(positions), dim) embedding [sin | cos] of float positions; dim must be even."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    args = positions.double()[:, None] * omega[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def _grid_embedding(dim: int, ys: Tensor, xs: Tensor) -> Tensor:
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs a dimension divisible by 4, got {dim}")
    h, w = len(ys), len(xs)
    emb_x = sincos_1d(dim // 2, xs.repeat(h))  # column coordinate of token r*w + c
    emb_y = sincos_1d(dim // 2, ys.repeat_interleave(w))  # row coordinate
    return torch.cat([emb_x, emb_y], dim=1).float()


def sincos_2d(dim: int, h: int, w: int, scale: float = 1.0) -> Tensor:
    """DiT/PixArt embedding of an h x w grid: coordinates are token indices divided by ``scale``
    (PixArt's ``(n / base_size) * lewei_scale``; 1 for DiT). Returns (h * w, dim)."""
    ys = torch.arange(h, dtype=torch.float64) / scale
    xs = torch.arange(w, dtype=torch.float64) / scale
    return _grid_embedding(dim, ys, xs)


def sincos_2d_centered(dim: int, h: int, w: int, base: float) -> Tensor:
    """Centered sin-cos embedding normalised by the long edge (T2MD's model adaptation, Sec. 3.4.3).

    y_i = (i - (h-1)/2) * base / max(h, w) and x_j = (j - (w-1)/2) * base / max(h, w): the spacing is the
    same along both axes and the long edge always spans ``base`` units, so a larger or non-square grid
    interpolates between positions seen in training instead of extrapolating. The paper gives only the
    idea; ``base`` is our choice (the training grid's long edge keeps one unit per token at the training
    resolution). Returns (h * w, dim).
    """
    long_edge = max(h, w)
    ys = (torch.arange(h, dtype=torch.float64) - (h - 1) / 2) * base / long_edge
    xs = (torch.arange(w, dtype=torch.float64) - (w - 1) / 2) * base / long_edge
    return _grid_embedding(dim, ys, xs)


def sincos_2d_pixart(dim: int, h: int, w: int, base_size: int, lewei_scale: float = 1.0) -> Tensor:
    """PixArt-alpha's embedding: each axis index divided by (n / base_size) and by ``lewei_scale``, so each
    axis spans base_size / lewei_scale units whatever its length (anisotropic on non-square grids).
    ``base_size`` is the training token grid (input_size // patch). Returns (h * w, dim)."""
    ys = torch.arange(h, dtype=torch.float64) / (h / base_size) / lewei_scale
    xs = torch.arange(w, dtype=torch.float64) / (w / base_size) / lewei_scale
    return _grid_embedding(dim, ys, xs)


def resize_learned(pos_embed: Tensor, extras: int, grid: int, h: int, w: int) -> Tensor:
    """A learned embedding (1, extras + grid*grid, d) for an h x w token grid: the ``extras`` leading
    (non-patch) rows are kept, the patch rows bilinearly resized from grid x grid (U-ViT, DiM)."""
    if (h, w) == (grid, grid):
        return pos_embed
    patches = pos_embed[:, extras:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
    patches = torch.nn.functional.interpolate(patches, size=(h, w), mode="bilinear", align_corners=False)
    return torch.cat([pos_embed[:, :extras], patches.flatten(2).transpose(1, 2)], dim=1)


def sincos_2d_like(x: Tensor, dim: int, h: int, w: int) -> Tensor:
    """DiT's fixed sin-cos table for an h x w grid on x's device and dtype: memoised for real devices, built
    on the meta device when counting (a 100000 px image would otherwise allocate a 30 GB table on the CPU)."""
    if x.device.type == "meta":
        with torch.device("meta"):
            return sincos_2d(dim, h, w).to(x.dtype)
    return sincos_2d_cached(dim, h, w).to(x.device, x.dtype)


@lru_cache(maxsize=64)
def sincos_2d_cached(dim: int, h: int, w: int) -> Tensor:
    """``sincos_2d`` memoised per grid (DiT-style models call it every forward)."""
    # cached: a normal CPU tensor even if first built in inference mode or under `with torch.device("meta")`
    with torch.inference_mode(False), torch.device("cpu"):
        return sincos_2d(dim, h, w)

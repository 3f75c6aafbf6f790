"""Resolutions and example inputs: image pixels -> what a registry entry consumes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zoo.layers.patch import nearest_multiples
from zoo.registry import ModelEntry


@dataclass(frozen=True)
class Resolution:
    """An image size in pixels, width x height."""

    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def parse_resolution(text: str) -> Resolution:
    """``"256"`` (square) or ``"3840x2160"`` (width x height, image pixels)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) <= 0:
        raise ValueError(f"resolution {text!r}: expected a size like 256 or WxH like 3840x2160 (image pixels)")
    return Resolution(values[0], values[-1])


def input_grid(entry: ModelEntry, res: Resolution, patch_size: int) -> tuple[int, int]:
    """(height, width) of the model input (latent or pixels) for an image resolution, checked against the
    patch grid; an impossible size names the nearest image sizes that work."""
    factor = entry.inputs.spatial_factor
    step = factor * patch_size
    bad = [(axis, v) for axis, v in (("width", res.width), ("height", res.height)) if v % step]
    if bad:
        hints = "; ".join(f"{axis} {v} -> try {nearest_multiples(v, step)}" for axis, v in bad)
        kind = f"latent factor {factor} x patch {patch_size}" if factor > 1 else f"patch {patch_size}"
        raise ValueError(f"{entry.name} cannot take {res} px: sides must be multiples of {step} ({kind}); {hints}")
    return res.height // factor, res.width // factor


def example_inputs(entry: ModelEntry, res: Resolution, patch_size: int, batch: int = 1, device="meta"):
    """(x, t, y) for ``model(x, t, y)`` at ``res``: random-free empties on the meta device."""
    h, w = input_grid(entry, res, patch_size)
    x = torch.empty(batch, entry.inputs.in_channels, h, w, device=device)
    t = torch.zeros(batch, device=device)
    spec = entry.inputs
    y = None
    if spec.conditioning == "class":
        y = torch.zeros(batch, dtype=torch.long, device=device)
    elif spec.conditioning == "text":
        y = torch.empty(batch, spec.caption_tokens, spec.caption_channels, device=device)
    return x, t, y

"""Resolutions and example inputs: image pixels (and, for video entries, frames) -> what a registry entry consumes.

A size is ``WxH`` for an image model and ``TxWxH`` for a clip of T frames of W x H pixels: that string is
the ``resolution`` of every row a video case writes (sweep CSV, results store), so the frame count is part of
a row's identity. ``case_resolution`` fills in a video entry's own clip length when none is given and
refuses a frame count for an image entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mambabench.errors import UserError
from zoo.entries import ModelEntry
from zoo.layers.patch import nearest_multiples
from zoo.registry import get_entry, list_models


@dataclass(frozen=True)
class Resolution:
    """An image size in pixels, width x height."""

    width: int
    height: int
    frames: int = 0  # 0: an image; T: a clip of T frames (video entries)

    def __str__(self) -> str:
        size = f"{self.width}x{self.height}"
        return f"{self.frames}x{size}" if self.frames else size


def parse_resolution(text: str, frames: int | None = None) -> Resolution:
    """``"256"`` (square) or ``"3840x2160"`` (width x height, image pixels); ``"16x256x256"`` is a clip
    (frames x width x height, as video rows write it). ``frames`` (``--frames``) makes the size a clip."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2, 3) or min(values, default=0) <= 0:
        raise UserError(f"resolution {text!r}: expected a size like 256 or WxH like 3840x2160 (image pixels)")
    if frames is not None and frames < 1:
        raise UserError(f"--frames {frames}: a clip needs at least 1 frame (e.g. --frames 16)")
    if len(values) == 3:
        if frames is not None and frames != values[0]:
            raise UserError(f"resolution {text!r} says {values[0]} frames and --frames says {frames}: give one")
        frames, values = values[0], values[1:]
    return Resolution(values[0], values[-1], frames or 0)


def video_entries() -> list[str]:
    """Registry names of the video entries (``InputSpec.frames`` > 0)."""
    return [name for name in list_models() if get_entry(name).inputs.frames]


def case_resolution(entry: ModelEntry, res: Resolution) -> Resolution:
    """The size a case of ``entry`` runs at: a video entry given no frame count takes its own clip length
    (``InputSpec.frames``); an image entry given one is a ValueError naming the fix."""
    if entry.inputs.frames:
        return res if res.frames else Resolution(res.width, res.height, entry.inputs.frames)
    if res.frames:
        raise UserError(
            f"{entry.name} is an image model and takes no frame count ({res}): drop --frames, or "
            f"choose a video entry ({', '.join(video_entries())})"
        )
    return res


def input_grid(entry: ModelEntry, res: Resolution, patch_size: int) -> tuple[int, int]:
    """(height, width) of the model input (latent or pixels) for an image resolution, checked against the
    patch grid; an impossible size names the nearest image sizes that work."""
    factor = entry.inputs.spatial_factor
    step = factor * patch_size
    bad = [(axis, v) for axis, v in (("width", res.width), ("height", res.height)) if v % step]
    if bad:
        hints = "; ".join(f"{axis} {v} -> try {nearest_multiples(v, step)}" for axis, v in bad)
        kind = f"latent factor {factor} x patch {patch_size}" if factor > 1 else f"patch {patch_size}"
        raise UserError(f"{entry.name} cannot take {res} px: sides must be multiples of {step} ({kind}); {hints}")
    return res.height // factor, res.width // factor


def example_inputs(entry: ModelEntry, res: Resolution, patch_size: int, batch: int = 1, device="meta"):
    """(x, t, y) for ``model(x, t, y)`` at ``res``: random-free empties on the meta device. A video entry's x
    is a clip (batch, channels, frames, height, width) (see ``case_resolution``)."""
    res = case_resolution(entry, res)
    h, w = input_grid(entry, res, patch_size)
    clip = (res.frames,) if res.frames else ()
    x = torch.empty(batch, entry.inputs.in_channels, *clip, h, w, device=device)
    t = torch.zeros(batch, device=device)
    spec = entry.inputs
    y = None
    if spec.conditioning == "class":
        y = torch.zeros(batch, dtype=torch.long, device=device)
    elif spec.conditioning == "text":
        y = torch.empty(batch, spec.caption_tokens, spec.caption_channels, device=device)
    return x, t, y

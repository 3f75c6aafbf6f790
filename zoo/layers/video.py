"""Clip layout helpers shared by the video backbones (``zoo.models.latte``, ``zoo.models.dim_mo_video``).

A clip is (B, C, T, H, W). Inside a model the tokens alternate between two views of one tensor:

- spatial: (B*T, N, D), one sequence per frame over its N tokens;
- temporal: (B*N, T, D), one sequence per token position over the T frames.

``to_temporal`` and ``to_spatial`` convert between them (one copy each way, no data mixing), so a block
applied to the spatial view can only mix tokens of one frame and a block applied to the temporal view only
the frames of one token position.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from zoo.errors import BadOption, UnsupportedInput
from zoo.layers.pos_embed import sincos_1d


def check_clip(x: Tensor, model: str) -> tuple[int, int, int, int, int]:
    """(B, C, T, H, W) of a clip; anything but a 5-D tensor is a ValueError naming the layout."""
    if x.dim() != 5:
        raise UnsupportedInput(
            f"{model} is a video model: it takes clips (batch, channels, frames, height, width), "
            f"got a {x.dim()}-D tensor {tuple(x.shape)}"
        )
    if x.shape[2] < 1:
        raise UnsupportedInput(f"{model}: a clip needs at least one frame, got shape {tuple(x.shape)}")
    b, c, t, h, w = x.shape
    return b, c, t, h, w


def frames_as_batch(x: Tensor) -> Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W): every frame an image, frames of one clip adjacent."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


def batch_as_frames(x: Tensor, frames: int) -> Tensor:
    """(B*T, C, H, W) -> (B, C, T, H, W), the inverse of ``frames_as_batch``."""
    bt, c, h, w = x.shape
    return x.reshape(bt // frames, frames, c, h, w).transpose(1, 2)


def to_temporal(seq: Tensor, frames: int) -> Tensor:
    """Spatial view (B*T, N, D) -> temporal view (B*N, T, D)."""
    bt, n, d = seq.shape
    return seq.reshape(bt // frames, frames, n, d).transpose(1, 2).reshape(-1, frames, d)


def to_spatial(seq: Tensor, tokens: int) -> Tensor:
    """Temporal view (B*N, T, D) -> spatial view (B*T, N, D), the inverse of ``to_temporal``."""
    bn, t, d = seq.shape
    return seq.reshape(bn // tokens, tokens, t, d).transpose(1, 2).reshape(-1, tokens, d)


def over_video_frames(seq: Tensor, frames: int, images: int, temporal: Callable[[Tensor], Tensor]) -> Tensor:
    """A temporal block under video-image joint training (Latte's ``use_image_num``): the spatial view
    (B*T, N, D) of clips whose last ``images`` frames are single images of other videos; ``temporal`` (a
    function of the temporal view (B*N, T - images, D)) mixes only the clip's own frames, the images pass
    through unchanged."""
    if not images:
        return to_spatial(temporal(to_temporal(seq, frames)), seq.shape[1])
    bt, n, d = seq.shape
    grid = seq.reshape(bt // frames, frames, n, d)
    video = grid[:, : frames - images].reshape(-1, n, d)
    mixed = to_spatial(temporal(to_temporal(video, frames - images)), n).reshape(-1, frames - images, n, d)
    return torch.cat([mixed, grid[:, frames - images :]], dim=1).reshape(bt, n, d)


def frame_conditions(labels: Tensor, frames: int, images: int, image_labels: Tensor | None) -> Tensor:
    """(B * T,) label of every frame of a batch of clips, frame-major within a clip: the clip's label, except
    for the last ``images`` frames (video-image joint training), which take ``image_labels`` (B, images), their
    own videos' labels, when given."""
    per_frame = labels.repeat_interleave(frames, 0).view(-1, frames)
    if images and image_labels is not None:
        if image_labels.shape != (labels.shape[0], images):
            raise UnsupportedInput(
                f"image_cond {tuple(image_labels.shape)}: expected (batch, use_image_num) = "
                f"({labels.shape[0]}, {images})"
            )
        per_frame = torch.cat([per_frame[:, : frames - images], image_labels.to(per_frame)], dim=1)
    return per_frame.reshape(-1)


def check_image_frames(frames: int, images: int) -> None:
    if not 0 <= images < frames:
        raise BadOption(f"use_image_num must be in [0, frames): {images} image frames in a clip of {frames}")


def sincos_frames_like(x: Tensor, dim: int, frames: int) -> Tensor:
    """Fixed 1-D sin-cos table (frames, dim) of frame indices 0..T-1, [sin | cos] with frequencies
    10000^(-k / (dim/2)) (the 1-D half of DiT's table), on x's device and dtype; built on the meta device
    when counting. Any clip length works: the table is computed for the clip that comes in."""
    if x.device.type == "meta":
        with torch.device("meta"):
            return sincos_1d(dim, torch.arange(frames)).to(x.dtype)
    with torch.device("cpu"):
        table = sincos_1d(dim, torch.arange(frames)).float()
    return table.to(x.device, x.dtype)

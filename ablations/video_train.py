"""Video-image joint training ("IMG" in Mo & Tian's Table 3, Latte's recipe; Mo & Tian Sec. 4.1 say their video
setup follows Latte): single frames of other videos of the data set are appended to each training clip along
the frame axis, the whole tensor is noised and denoised with one loss, and the model is told how many trailing
frames are images so that its temporal blocks (and temporal position embedding) leave them out. Each image is
conditioned on its own video's class (``image_cond``; Latte's training code embeds these ``y_image`` labels,
each dropped for classifier-free guidance on its own draw, for the image frames of its spatial blocks).

The engine does the data side; the model side is part of the backbone contract (``zoo.models.base``): a model
class declaring ``image_joint = True`` takes ``use_image_num`` (the name Latte's released code uses) in its
``forward``. Any other cannot be trained this way: appending frames without it would let the temporal blocks
mix unrelated images into the clip, which is not the paper's recipe, so ``image_joint_problem`` names what is
missing instead. Latte appends 8 frames to each UCF-101 clip.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mambabench.errors import UserError

IMAGE_JOINT_ARG = "use_image_num"
LATTE_UCF101_IMAGES = 8  # Latte's UCF-101 video-image joint configuration


def image_joint_problem(builder) -> str | None:
    """Why a model class (a registry entry's builder) cannot do video-image joint training, or None if it can."""
    if not getattr(builder, "image_joint", False):
        name = getattr(builder, "__name__", str(builder))
        return (
            f"{name} does not declare image_joint (its forward takes no `{IMAGE_JOINT_ARG}`): video-image joint "
            "training needs the model to keep the appended image frames out of its temporal blocks"
        )
    return None


def append_image_frames(clips: Tensor, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """(B, C, T, h, w) -> (B, C, T + count, h, w): each clip followed by ``count`` single frames, each a random
    frame of another clip of the batch (the batch is a random draw of the data set: frames of other videos);
    also (B, count), the batch index of the clip each image came from (None when ``count`` is 0), whose label
    the image is conditioned on (Latte's ``y_image``)."""
    if count == 0:
        return clips, None
    batch, frames = clips.shape[0], clips.shape[2]
    shift = torch.randint(1, max(batch, 2), (batch, count), generator=generator)
    source = (torch.arange(batch).view(-1, 1) + shift) % batch
    frame = torch.randint(0, frames, (batch, count), generator=generator)
    images = clips[source.to(clips.device), :, frame.to(clips.device)]  # (B, count, C, h, w)
    return torch.cat([clips, images.permute(0, 2, 1, 3, 4)], dim=2), source


def image_joint_kwargs(builder, count: int) -> dict[str, int]:
    """The keyword arguments the trainer passes to the model's forward for ``count`` appended image frames;
    a ValueError naming what is missing when the model cannot take them."""
    if not count:
        return {}
    problem = image_joint_problem(builder)
    if problem:
        raise UserError(f"--image-joint {count}: {problem}")
    return {IMAGE_JOINT_ARG: count}

"""The contract every registry model follows, written down once.

Construction: every family accepts the keywords

- ``input_size``: the side of the training input in the model's own space (latent pixels for latent
  models, image pixels for pixel models); any size the patch divides works at run time;
- ``in_channels``: channels of x (3 for pixels, 4 for SD-VAE latents);
- ``num_classes``: the real classes; the label table has one more row, the null label ``num_classes``,
  for classifier-free guidance; 0 means no label table (unconditional or text models);
- ``learn_sigma``: output 2 * in_channels (noise and the variance interpolation, as DiT); the families
  that predict noise only (U-ViT, DiM of Teng et al., WD-Mamba) refuse True.

Attributes: ``input_size``, ``in_channels``, ``out_channels``, ``patch_size``, ``num_classes`` and
``conditioning``: ``"class"`` (labels), ``"text"`` (caption embeddings) or ``"none"``.

Calling: ``model(x, t, cond=None, mask=None)``. x is (B, C, H, W), or (B, C, T, H, W) for video entries;
t holds B timesteps; cond is (B,) long labels for class models (None: the null label for all, as the
official DiM code does for its unconditional CIFAR-10 model), (B, L, D) caption embeddings for text models
with ``mask`` (B, L) bool marking real caption tokens, and None for unconditional ones. The output has
x's shape with ``out_channels`` channels. ``null_condition(batch)`` is the unconditional input the sampler's
classifier-free guidance and the trainer's condition dropout use. A model never drops conditions itself:
that is the trainer's job (the same Bernoulli draw per sample as DiT's in-model dropout, but seeded and
identical across DDP ranks).

Video-image joint training (Latte's recipe, "IMG" in Mo & Tian's Table 3): a video entry that can keep image
frames appended after a clip's frames out of its temporal blocks says so with the class attribute
``image_joint = True`` and takes ``forward(..., use_image_num=k, image_cond=None)``: the count of those
trailing frames (the name of Latte's released code) and their own (B, k) labels (default: the clip's);
tests/test_contract.py checks that every entry declaring it takes both.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from zoo.errors import BadOption

Conditioning = Literal["class", "text", "none"]


class Backbone(nn.Module):
    """Base class of every registry model: stores the contract's attributes (see module doc). Each family
    defines ``forward(x, t, cond=None, mask=None)``; tests/test_contract.py checks that every entry does."""

    image_joint: ClassVar[bool] = False  # forward takes use_image_num (video-image joint training; module doc)

    def __init__(
        self,
        *,
        input_size: int,
        in_channels: int,
        patch_size: int,
        num_classes: int = 0,
        learn_sigma: bool = False,
        conditioning: Conditioning | None = None,
    ):
        super().__init__()
        if num_classes < 0:
            raise BadOption(f"num_classes counts the real classes (0 for none), got {num_classes}")
        self.input_size, self.in_channels, self.patch_size = input_size, in_channels, patch_size
        self.num_classes = num_classes
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.conditioning: Conditioning = conditioning or ("class" if num_classes > 0 else "none")

    def null_condition(self, batch: int, device: torch.device | str | None = None) -> Tensor | None:
        """The unconditional input for ``batch`` samples: the null label, or None without labels. Text models
        return their learned null caption."""
        if self.conditioning == "class":
            return torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        return None


def noise_only(learn_sigma: bool, family: str) -> None:
    """The check of families that predict noise only."""
    if learn_sigma:
        raise BadOption(f"{family} predicts noise only (as its paper's code): learn_sigma must be False")

"""PixArt-alpha with its 1024-MS resolution and aspect-ratio conditioning (Chen et al. 2023).

The PixArt-alpha skeleton itself is ``PixArtSkeleton`` in ``zoo/models/t2md.py`` (T2MD keeps it; the 256 / 512
entries ``pixart-alpha-xl/2`` and ``pixart-tiny`` are registered there). This file adds what only the
multi-scale 1024 px model has, the micro-conditions of PixArt-alpha's ``PixArtMS.py``
(diffusers: ``use_additional_conditions``):

- ``csize_embedder``: the image height and width in pixels, each embedded like a timestep (256 sin-cos
  frequencies -> Linear(256, d/3) -> SiLU -> Linear(d/3, d/3)), concatenated: 2d/3 channels.
- ``ar_embedder``: the aspect ratio height / width, embedded the same way: d/3 channels.
- Both are added, concatenated [size | ratio] (d channels), to the timestep embedding before ``t_block``
  and the final layer. At d = 1152 the two embedders hold 2 x 246,528 = 493,056 parameters.

``use_additional_conditions=False`` is PixArtSkeleton exactly (the 256 and 512 models). The 1024-MS entry also
uses PixArt's position-table scale 2 (``lewei_scale``, diffusers ``interpolation_scale``) over a 64 x 64
base grid. By default the conditions are the generated image's own size, (8 h, 8 w) pixels for an h x w
latent, and ratio h / w, as PixArt-alpha's and diffusers' inference do; pass ``resolution`` (B, 2) and
``aspect_ratio`` (B,) or (B, 1) to set them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.entries import InputSpec, PaperInfo, Published, register
from zoo.errors import BadOption
from zoo.layers.embeddings import TimestepEmbedder
from zoo.layers.patch import token_grid, unpatchify
from zoo.models.t2md import PixArtSkeleton

VAE_FACTOR = 8  # PixArt-alpha's latents are SD VAE latents: image pixels = 8 x latent size


class SizeEmbedder(TimestepEmbedder):
    """Each of a (B, k) tensor's k scalars embedded like a timestep, concatenated: (B, k * out)."""

    def forward(self, values: Tensor) -> Tensor:  # type: ignore[override]
        batch = values.shape[0]
        return super().forward(values.reshape(-1)).reshape(batch, -1)


class PixArtAlphaMS(PixArtSkeleton):
    """``PixArtSkeleton`` with the optional resolution / aspect-ratio micro-conditions of PixArt-alpha 1024-MS;
    ``model(x, t, cond=None, mask=None, resolution=None, aspect_ratio=None)``."""

    def __init__(self, *args, use_additional_conditions: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_additional_conditions = use_additional_conditions
        if use_additional_conditions:
            d = self.x_embedder.proj.out_channels
            if d % 3:
                raise BadOption(
                    f"use_additional_conditions needs hidden_size divisible by 3 (d/3 per condition), got {d}"
                )
            self.csize_embedder = SizeEmbedder(d // 3)
            self.ar_embedder = SizeEmbedder(d // 3)
            for embedder in (self.csize_embedder, self.ar_embedder):  # PixArtMS's init
                torch.nn.init.normal_(embedder.mlp[0].weight, std=0.02)
                torch.nn.init.zeros_(embedder.mlp[0].bias)
                torch.nn.init.normal_(embedder.mlp[2].weight, std=0.02)
                torch.nn.init.zeros_(embedder.mlp[2].bias)

    def micro_conditions(self, x: Tensor, resolution: Tensor | None, aspect_ratio: Tensor | None) -> Tensor:
        """(B, d): [csize(height, width) | ar(height / width)], by default of the image x decodes to."""
        b, dtype = x.shape[0], self.csize_embedder.mlp[0].weight.dtype
        if resolution is None:
            resolution = torch.tensor([x.shape[-2] * VAE_FACTOR, x.shape[-1] * VAE_FACTOR], device=x.device)
        if aspect_ratio is None:
            aspect_ratio = torch.tensor([x.shape[-2] / x.shape[-1]], device=x.device)
        resolution = resolution.to(x.device, dtype).reshape(-1, 2).expand(b, 2)
        aspect_ratio = aspect_ratio.to(x.device, dtype).reshape(-1, 1).expand(b, 1)
        return torch.cat([self.csize_embedder(resolution), self.ar_embedder(aspect_ratio)], dim=1)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        mask: Tensor | None = None,
        resolution: Tensor | None = None,
        aspect_ratio: Tensor | None = None,
    ) -> Tensor:
        if not self.use_additional_conditions:
            return super().forward(x, t, cond, mask)
        h, w = token_grid(x.shape[-2], x.shape[-1], self.patch_size, "latent")
        with torch.device(x.device):
            pos = self.positions(h, w)
        t_emb = self.t_embedder(t) + self.micro_conditions(x, resolution, aspect_ratio)
        x = self.x_embedder(x) + pos.to(x.dtype)
        t6 = self.t_block(t_emb)
        caption = self.y_embedder(self.null_condition(x.shape[0], x.device) if cond is None else cond)
        for block in self.blocks:
            x = block(x, t6, caption, mask, h, w)
        x = self.final_layer(x, t_emb)
        return unpatchify(x, h, w, self.patch_size, self.out_channels)


register(
    "pixart-alpha-xl/2-1024-ms",
    family="pixart",
    builder=PixArtAlphaMS,
    config=dict(input_size=128, layout="SAx28", lewei_scale=2.0, use_additional_conditions=True),
    inputs=InputSpec(
        in_channels=4, latent=True, image_size=1024, conditioning="text", caption_tokens=120, caption_channels=4096
    ),
    paper=PaperInfo(
        "Chen et al. 2023 (PixArt-alpha), 1024 px multi-scale model",
        "public PixArtMS_XL_2 config",
        params_m=611.4,
        note="610.9 M of the 512 model + 0.493 M for the resolution and aspect-ratio embedders; the paper says 0.6B",
    ),
    weights=(
        Published(
            "https://huggingface.co/PixArt-alpha/PixArt-alpha",
            "PixArt-XL-2-1024-MS.pth",
            "original layout, state dict under 'state_dict'",
        ),
        Published(
            "https://huggingface.co/PixArt-alpha/PixArt-XL-2-1024-MS",
            "transformer/diffusion_pytorch_model.safetensors",
            "diffusers layout",
        ),
    ),
)

"""DiM for video (Mo & Tian 2024, Sec. 3.5 and Table 3): DiM's bidirectional Mamba blocks in Latte's layout.

The paper says three things about its video model: a clip's latent z in R^{T x H x W x C} becomes, frame by
frame, T sequences of L patches (Sec. 3.5); the bidirectional SSMs run "not only across the spatial
dimensions of each frame but also across the temporal sequence of frames" (Sec. 3.5); and the video
approach "follows the Latte model specifications" (Sec. 4.1), with Stable Diffusion's VAE. No code, no
configuration and no parameter count are published. What we build, and what we chose where it is silent:

- Blocks: DiM's own (``zoo.models.dim_mo.DiMMoBlock``: pre-LN bidirectional Mamba, then pre-LN 4x MLP),
  in Latte's interleaved layout (Latte Sec. 3.2, Variant 1): even blocks scan the tokens of each frame
  (row-major, both directions), odd blocks scan the frames of each token position (both directions).
- Size: DiM-XL of Table 1 (36 blocks x 1152, patch 2), i.e. 18 spatial/temporal pairs. DiM-XL is sized to
  match DiT-XL's parameters (Table 1's caption), so it matches Latte-XL's (DiT-XL's blocks) the same way:
  counted 689.4 M vs Latte-XL's 673.8 M (+2.3%). ``depth=28`` gives Latte's block count instead (536.6 M).
- Conditioning: DiM's (Sec. 3.2): the timestep and the class enter as two tokens in front of the patches.
  Here every frame gets the pair in front of its patches, and the pair takes part in the temporal blocks
  like any other token position (so each frame's time/class tokens see the other frames'). Class-conditional
  on UCF-101's 101 classes plus a null row for classifier-free guidance (Sec. 3.1: labels with CFG; Latte's
  UCF-101 models are class-conditional too).
- Positions: DiM's fixed 2-D sin-cos table per frame (Sec. 3.2) and Latte's absolute 1-D sin-cos frame
  embedding added once before the first temporal block (Latte Sec. 3.3.3, "follows Latte"), both computed
  for the clip that comes in: any frame count and any (also non-square) frame size.
- Head: DiM's (final LayerNorm, linear to noise and learned sigma, 2C channels), per frame.

``model(x, t, y)``: x (B, C, T, H, W) latents, t (B,), y (B,) labels (``num_classes`` = null) -> (B, 2C, T, H, W).
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.entries import InputSpec, PaperInfo, register
from zoo.errors import BadOption
from zoo.layers.patch import token_grid, unpatchify
from zoo.layers.pos_embed import sincos_2d_like
from zoo.layers.video import (
    batch_as_frames,
    check_clip,
    check_image_frames,
    frame_conditions,
    frames_as_batch,
    over_video_frames,
    sincos_frames_like,
)
from zoo.models.dim_mo import DiMMo


class DiMMoVideo(DiMMo):
    """DiM-Mo's embedders, blocks and head (``zoo.models.dim_mo``); the blocks alternate spatial / temporal."""

    image_joint = True  # use_image_num trailing image frames skip the temporal blocks, as in Latte

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 36,
        mlp_ratio: float = 4.0,
        num_classes: int = 101,
        learn_sigma: bool = True,
    ):
        if depth % 2:
            raise BadOption(f"the video blocks come in spatial/temporal pairs: depth must be even, got {depth}")
        super().__init__(input_size, patch_size, in_channels, hidden_size, depth, mlp_ratio, num_classes, learn_sigma)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        mask: Tensor | None = None,
        use_image_num: int = 0,
        image_cond: Tensor | None = None,
    ) -> Tensor:
        """x (B, C, T, H, W) latents, t (B,) timesteps, cond (B,) labels -> (B, out_channels, T, H, W). With
        ``use_image_num`` n (Table 3's "+IMG": video-image joint training as Latte's), the last n frames are
        single images: spatial blocks scan them, temporal blocks and the frame embedding leave them out;
        ``image_cond`` (B, n) are their own labels, the class token of their frames (default: the clip's)."""
        y = self.null_condition(x.shape[0], x.device) if cond is None else cond
        batch, _, frames, height, width = check_clip(x, "DiM video")
        h, w = token_grid(height, width, self.patch_size, "latent")
        dim = self.x_embedder.proj.out_channels
        # Sec. 3.5: each frame's latent patchified into L tokens; Sec. 3.2: DiM's 2-D position table per frame
        patches = self.x_embedder(frames_as_batch(x)) + sincos_2d_like(x, dim, h, w)  # (B*T, L, D)
        # Sec. 3.2: time and class tokens in front of the patches (ours: the pair in front of every frame; an
        # appended image's class token is its own video's label, as Latte's joint training conditions it)
        check_image_frames(frames, use_image_num)
        frame_labels = frame_conditions(y, frames, use_image_num, image_cond)  # (B*T,)
        prefix = torch.stack([self.t_embedder(t).repeat_interleave(frames, 0), self.y_embedder(frame_labels)], dim=1)
        seq = torch.cat([prefix, patches], dim=1)  # (B*T, 2 + L, D)
        video_frames = frames - use_image_num
        for index, block in enumerate(self.blocks):
            if index % 2 == 0:  # Sec. 3.5: bidirectional scan across the spatial tokens of each frame
                seq = block(seq)
                continue

            def temporal(tokens: Tensor, block=block, first=index == 1) -> Tensor:
                # Sec. 3.5: bidirectional scan across the frames of each token (the clip's own frames)
                if first:  # Sec. 4.1 "follows Latte": Latte's absolute frame embedding (its Sec. 3.3.3)
                    tokens = tokens + sincos_frames_like(x, dim, video_frames)
                return block(tokens)

            seq = over_video_frames(seq, frames, use_image_num, temporal)
        # Sec. 3.2 / Fig. 2: final norm and a linear layer predicting the noise (and sigma), per frame
        out = self.linear_out(self.norm_final(seq[:, prefix.shape[1] :]))
        return batch_as_frames(unpatchify(out, h, w, self.patch_size, self.out_channels), frames)


register(
    "dim-mo-video-xl/2",
    family="dim-mo-video",
    builder=DiMMoVideo,
    config=dict(patch_size=2, hidden_size=1152, depth=36, num_classes=101),
    inputs=InputSpec(in_channels=4, latent=True, image_size=256, conditioning="class", num_classes=101, frames=16),
    paper=PaperInfo(
        "Mo & Tian 2024 (DiM)",
        "Sec. 3.5, Table 3 (UCF-101); DiM-XL of Table 1",
        note="no parameter count is reported for the video model; DiM-XL's 36 x 1152 in Latte's interleaved "
        "layout (module docstring)",
    ),
)

register(
    "dim-mo-video-tiny",
    family="dim-mo-video",
    builder=DiMMoVideo,
    config=dict(input_size=8, patch_size=2, in_channels=3, hidden_size=64, depth=4, num_classes=10),
    inputs=InputSpec(in_channels=3, latent=False, image_size=8, conditioning="class", num_classes=10, frames=4),
    tags=("tiny",),
)

"""Latte: Latent Diffusion Transformer for Video Generation (Ma et al., 2024; arXiv 2401.03048).

The baseline of DiM's video table (Mo & Tian, Table 3: "Latte" 477.97 FVD on UCF-101). Latte proposes four
ways of splitting a clip's tokens into spatial and temporal attention; its released UCF-101 model is the
first, which is what we build: DiT blocks (``zoo.models.dit``: adaLN-Zero, tanh-GELU MLP, qkv with bias) in
pairs, the first of a pair attending over the tokens of each frame, the second over the frames of each token
position.

Choices, each named in a one-line comment where it is made:
- Section numbers are those of the arXiv paper; each comment also names the section's topic.
- Conditioning: class labels (101 UCF-101 classes, plus DiT's null row for classifier-free guidance) and
  the timestep, summed and injected by adaLN-Zero in every block (Latte's "S-AdaLN"): Latte's UCF-101 model,
  the one DiM's Table 3 compares with, is class-conditional on the 101 classes. ``y`` is always given, as
  for DiT (``num_classes`` is an option).
- Temporal position: Latte's absolute (fixed 1-D sin-cos) embedding of the frame index, added once, before
  the first temporal block; the paper does not say where, this is where the authors' released model adds it.
  Computed for the clip that comes in, so any frame count runs (Latte trains at 16).
- Spatial position: DiT's fixed 2-D sin-cos table, computed for the actual grid (any size, non-square too).
- Image-video joint training ("Latte+IMG"): ``forward(..., use_image_num=n)``, the last n frames are single
  images that skip the temporal blocks and the frame embedding (as Latte's released ``latte_img.py``); the
  engine appends them (``ablations.video_train``). Latte's other three variants are not built.
- Official weights: ``zoo.create_model("latte-xl/2", pretrained="ucf101.pt")`` (``zoo.checkpoints``, family
  ``latte``): the names are the released code's; its fixed ``pos_embed`` / ``temp_embed`` tables are checked
  against ours and dropped.

Parameters: Latte-XL is 673.68 M in the paper's table of model sizes (28 blocks x 1152, 16 heads), which is
exactly this model without a class table (673,681,568); the class-conditional UCF-101 model adds the
102 x 1152 label table: 673,799,072 (+0.017%).

Tensors: ``model(x, t, y)`` with x (B, C, T, H, W) latents, t (B,), y (B,) labels (``num_classes`` = null)
-> (B, 2C, T, H, W) (noise and learned sigma, as DiT).
"""

from __future__ import annotations

from torch import Tensor

from zoo.entries import InputSpec, PaperInfo, Published, register
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
from zoo.models.dit import DiT


class Latte(DiT):
    """DiT's embedders, blocks, final layer and initialisation; the blocks alternate spatial / temporal."""

    image_joint = True  # use_image_num trailing image frames skip the temporal blocks (Latte's code)

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_classes: int = 101,
        learn_sigma: bool = True,
    ):
        if depth % 2:
            raise BadOption(f"Latte's blocks come in spatial/temporal pairs: depth must be even, got {depth}")
        super().__init__(
            input_size, patch_size, in_channels, hidden_size, depth, num_heads, mlp_ratio, num_classes, learn_sigma
        )

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
        ``use_image_num`` n (video-image joint training, Sec. 4.1 "Latte+IMG"), the last n frames are single
        images: spatial blocks see them, temporal blocks and the frame embedding do not; ``image_cond`` (B, n)
        are their own labels (default: the clip's)."""
        y = self.null_condition(x.shape[0], x.device) if cond is None else cond
        batch, _, frames, height, width = check_clip(x, "Latte")
        h, w = token_grid(height, width, self.patch_size, "latent")
        dim = self.x_embedder.proj.out_channels
        # Sec. 3.3.1 (clip patch embedding): uniform frame patch embedding, each frame patchified like an image
        seq = self.x_embedder(frames_as_batch(x)) + sincos_2d_like(x, dim, h, w)  # (B*T, N, D), DiT's 2-D table
        # Sec. 3.3.2 (timestep-class injection): S-AdaLN, t and class embeddings summed (DiT's adaLN-Zero)
        t_emb = self.t_embedder(t)
        check_image_frames(frames, use_image_num)
        # Latte's joint training code: the spatial blocks of an image frame see its own label (y_image)
        frame_labels = frame_conditions(y, frames, use_image_num, image_cond)  # (B*T,)
        c_spatial = t_emb.repeat_interleave(frames, 0) + self.y_embedder(frame_labels)
        c_temporal = (t_emb + self.y_embedder(y)).repeat_interleave(h * w, 0)
        video_frames = frames - use_image_num
        for index, block in enumerate(self.blocks):
            if index % 2 == 0:  # Sec. 3.2 (Variant 1): spatial block, attention over the tokens of one frame
                seq = block(seq, c_spatial)
                continue

            def temporal(tokens: Tensor, block=block, first=index == 1) -> Tensor:
                # Sec. 3.2 (Variant 1): temporal block, over the frames of one token (the clip's own frames)
                if first:  # Sec. 3.3.3 (temporal positional embedding): absolute sin-cos, before the first one
                    tokens = tokens + sincos_frames_like(x, dim, video_frames)
                return block(tokens, c_temporal)

            seq = over_video_frames(seq, frames, use_image_num, temporal)
        # DiT Sec. 3.2 (transformer decoder; Latte keeps DiT's): adaLN final layer and linear, per frame
        out = self.final_layer(seq, c_spatial)
        return batch_as_frames(unpatchify(out, h, w, self.patch_size, self.out_channels), frames)


_UCF101 = InputSpec(in_channels=4, latent=True, image_size=256, conditioning="class", num_classes=101, frames=16)

register(
    "latte-xl/2",
    family="latte",
    builder=Latte,
    config=dict(patch_size=2, hidden_size=1152, depth=28, num_heads=16, num_classes=101),
    inputs=_UCF101,
    paper=PaperInfo(
        "Ma et al. 2024 (Latte)",
        "model sizes (Latte-XL); UCF-101 setting of Mo & Tian Table 3",
        params_m=673.68,
        note="the paper's count is the model without a class table (673.68 M exactly); the UCF-101 "
        "class-conditional model adds its 102 x 1152 label table (+0.017%)",
    ),
    weights=(
        Published(
            "https://huggingface.co/maxin-cn/Latte",
            "ucf101.pt",
            "Vchitect/Latte README, configs/ucf101/ucf101_sample.yaml: class-conditional UCF-101 (101 "
            "classes), 16 frames at 256 px, frame interval 3; EMA weights under 'ema'",
        ),
    ),
)

register(
    "latte-tiny",
    family="latte",
    builder=Latte,
    config=dict(input_size=8, patch_size=2, in_channels=3, hidden_size=64, depth=4, num_heads=4, num_classes=10),
    inputs=InputSpec(in_channels=3, latent=False, image_size=8, conditioning="class", num_classes=10, frames=4),
    tags=("tiny",),
)

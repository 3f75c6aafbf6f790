"""U-ViT: All are Worth Words: A ViT Backbone for Diffusion Models (Bao et al., CVPR 2023).

The transformer baseline of DiM (Teng et al.) and WD-Mamba. Everything is a token: [label, time, patches]
(the label token only for class-conditional models), a learned positional embedding over the whole
sequence, pre-LN ViT blocks in a U: depth//2 "in" blocks whose outputs are kept, one mid block, depth//2
"out" blocks that each merge one kept output (last in, first out) with Linear(2d -> d) on the
concatenation. Output: LayerNorm -> Linear to patch pixels -> drop the extra tokens -> unpatchify ->
optional 3x3 conv. Noise prediction only. Parameter names follow baofff/U-ViT ``libs/uvit.py``, so its
checkpoints (``nnet_ema.pth``, e.g. ``imagenet256_uvit_huge.pth``) load with ``zoo.create_model(name,
pretrained=PATH)``; the learned ``pos_embed`` must match the grid (``input_size``). The constructor takes
the contract's names (``zoo.models.base``): U-ViT's ``img_size``, ``in_chans`` and ``embed_dim`` are
``input_size``, ``in_channels`` and ``hidden_size``, and ``num_classes`` counts the real classes (U-ViT's
configs count the null one: 1001 for ImageNet).

Choices where the paper is silent:
- Other token grids (another resolution or aspect ratio): the patch part of the learned positional
  embedding is bilinearly resized to the grid (the extra tokens keep theirs).
- Label dropout for CFG lives in the data pipeline in U-ViT (here: the trainer); the null label is
  ``num_classes`` (the ImageNet configs have a 1001-row table, row 1000 = null).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.init import trunc_normal_

from zoo.entries import InputSpec, PaperInfo, Published, register
from zoo.layers.attention import SelfAttention
from zoo.layers.embeddings import timestep_embedding
from zoo.layers.mlp import Mlp
from zoo.layers.patch import PatchEmbed, token_grid, unpatchify
from zoo.layers.pos_embed import resize_learned
from zoo.models.base import Backbone, noise_only


class UViTBlock(nn.Module):
    """Pre-LN ViT block; ``skip=True`` adds U-ViT's long-skip merge Linear(2d -> d) before it."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, skip: bool = False):
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UViT(Backbone):
    """``model(x, t, cond=None)`` -> noise prediction of x's shape (labels, or None: the null class)."""

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 3,
        hidden_size: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        mlp_time_embed: bool = False,
        num_classes: int = 0,
        conv: bool = True,
        learn_sigma: bool = False,
    ):
        noise_only(learn_sigma, "U-ViT")
        super().__init__(input_size=input_size, in_channels=in_channels, patch_size=patch_size, num_classes=num_classes)
        img_size, in_chans, embed_dim = input_size, in_channels, hidden_size  # U-ViT's names, used below
        self.grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, bias=True)
        self.time_embed = (
            nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.SiLU(), nn.Linear(4 * embed_dim, embed_dim))
            if mlp_time_embed
            else nn.Identity()
        )
        self.label_emb = nn.Embedding(num_classes + 1, embed_dim) if num_classes > 0 else None  # + the null label
        self.extras = 1 + int(num_classes > 0)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + self.grid**2, embed_dim))
        self.in_blocks = nn.ModuleList(UViTBlock(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth // 2))
        self.mid_block = UViTBlock(embed_dim, num_heads, mlp_ratio, qkv_bias)
        self.out_blocks = nn.ModuleList(
            UViTBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, skip=True) for _ in range(depth // 2)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.decoder_pred = nn.Linear(embed_dim, patch_size**2 * in_chans)
        self.final_layer = nn.Conv2d(in_chans, in_chans, 3, padding=1) if conv else nn.Identity()
        trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        h, w = token_grid(x.shape[-2], x.shape[-1], self.patch_size)
        x = self.patch_embed(x)
        time_token = self.time_embed(timestep_embedding(t, x.shape[-1]).to(x.dtype)).unsqueeze(1)
        x = torch.cat([time_token, x], dim=1)
        if self.label_emb is not None:
            y = self.null_condition(x.shape[0], x.device) if cond is None else cond
            x = torch.cat([self.label_emb(y).unsqueeze(1), x], dim=1)  # final order [label, time, patches]
        x = x + resize_learned(self.pos_embed, self.extras, self.grid, h, w)
        skips = []
        for block in self.in_blocks:
            x = block(x)
            skips.append(x)
        x = self.mid_block(x)
        for block in self.out_blocks:
            x = block(x, skips.pop())
        x = self.decoder_pred(self.norm(x))[:, self.extras :]
        return self.final_layer(unpatchify(x, h, w, self.patch_size, self.in_channels))


_PAPER = "Bao et al. 2023 (U-ViT)"
_RELEASE = "baofff/U-ViT README, Pretrained Models (EMA state dict)"
register(
    "uvit-s/2-cifar10",
    family="uvit",
    builder=UViT,
    config=dict(input_size=32, patch_size=2, in_channels=3, hidden_size=512, depth=12, num_heads=8),
    inputs=InputSpec(in_channels=3, latent=False, image_size=32, conditioning="none"),
    paper=PaperInfo(_PAPER, "Table 1 (CIFAR-10, U-ViT-S/2)", params_m=44),
    weights=(
        Published(
            "https://drive.google.com/file/d/1yoYyuzR_hQYWU0mkTj659tMTnoCWCMv-", "cifar10_uvit_small.pth", _RELEASE
        ),
    ),
)
register(
    "uvit-l/2",
    family="uvit",
    builder=UViT,
    config=dict(input_size=32, patch_size=2, in_channels=4, hidden_size=1024, depth=20, num_heads=16, num_classes=1000),
    inputs=InputSpec(in_channels=4, latent=True, image_size=256, conditioning="class", num_classes=1000),
    paper=PaperInfo(_PAPER, "Table 2 (ImageNet 256, U-ViT-L/2)", params_m=287, gflops=77, gflops_image_size=256),
    weights=(
        Published(
            "https://drive.google.com/file/d/1w7T1hiwKODgkYyMH9Nc9JNUThbxFZgs3", "imagenet256_uvit_large.pth", _RELEASE
        ),
    ),
)
register(
    "uvit-h/2",
    family="uvit",
    builder=UViT,
    config=dict(
        input_size=32,
        patch_size=2,
        in_channels=4,
        hidden_size=1152,
        depth=28,
        num_heads=16,
        num_classes=1000,
        conv=False,
    ),
    inputs=InputSpec(in_channels=4, latent=True, image_size=256, conditioning="class", num_classes=1000),
    paper=PaperInfo(_PAPER, "Table 2 (ImageNet 256, U-ViT-H/2)", params_m=501, gflops=133, gflops_image_size=256),
    weights=(
        Published(
            "https://drive.google.com/file/d/13StUdrjaaSXjfqqF7M47BzPyhMAArQ4u", "imagenet256_uvit_huge.pth", _RELEASE
        ),
    ),
)
register(
    "uvit-tiny",
    family="uvit",
    builder=UViT,
    config=dict(input_size=8, patch_size=2, in_channels=3, hidden_size=64, depth=2, num_heads=4, num_classes=10),
    inputs=InputSpec(in_channels=3, latent=False, image_size=8, conditioning="class", num_classes=10),
    tags=("tiny",),
)

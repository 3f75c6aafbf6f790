"""DiS: Scalable Diffusion Models with State Space Backbone (Fei et al., 2024; code: feizc/DiS).

U-ViT's layout with Vim's bidirectional Mamba in place of attention. Everything is a token: the sequence is
[label, time, patches] (the label token only for class-conditional models) plus a learned positional
embedding over the whole sequence; ``depth // 2`` "in" blocks whose outputs are kept, one mid block,
``depth // 2`` "out" blocks that each merge one kept output (last in, first out) with Linear(2d -> d) on the
concatenation (U-ViT's long skips). Names and layout follow ``models_dis.py`` (``DisModel``) and the
Mamba fork it imports (``mamba/mamba_ssm/modules/mamba_simple.py``, ``bimamba_type="v2"``):

- the mixer is Vim's v2 bidirectional Mamba: shared in_proj/out_proj, a backward conv1d_b, x_proj_b,
  dt_proj_b, A_b_log, D_b; the two directions summed (not averaged); d_state 16, d_conv 4, expand 2
  (``zoo.layers.mamba.Mamba(bimamba=True)``, the same layer DiM of Mo & Tian uses with shared projections);
- blocks in the Mamba language-model layout: the long-skip merge acts on the block input (the previous
  block's mixer output), then ``residual += hidden; hidden = Mamba(RMSNorm(residual))``; no MLP;
- time token: U-ViT's ``time_embed`` MLP (d -> 4d -> d, SiLU) of the width-d sinusoid; label token: DiT's
  table with the null row (class dropout 0.1 in the code, the trainer's job here);
- output: RMSNorm of residual + hidden, then DiT's final layer: LayerNorm without affine, modulated by
  (shift, scale) = Linear(SiLU(time token + label token)) for class models (plain for unconditional ones),
  Linear to patch pixels; the extra tokens dropped. ``learn_sigma`` True by default (the code's default:
  DiT's diffusion with learned variance);
- init: the Mamba LM init over the whole model (zero Linear biases but dt's, N(0, 0.02) embeddings,
  out_proj Kaiming-uniform / sqrt(n_layer), n_layer being the code's ``depth`` argument, one less than the
  number of blocks); the positional embedding starts at zero.

Configurations (``dis_{s,b,m,l,h}_{2,4}`` in ``models_dis.py``): S = 368, B = 768, M = 768, L = 1024 and
H = 1536 wide; the code's ``depth`` 24 (S, B) or 48 (M, L, H) builds ``depth // 2`` in blocks, a mid block
and ``depth // 2`` out blocks, so 25 or 49 blocks; our ``depth`` counts blocks (odd), as the paper's layer
counts do. Entries: the ImageNet ones on SD-VAE latents (256 px: 32 x 32, 512 px: 64 x 64, 1000 classes)
and DiS-S/2 unconditional on 32 px pixels (the README's CelebA/CIFAR-10 runs, ``img_size=32, channels=3``).

Our choices: other token grids bilinearly resize the patch part of the learned positional embedding
(U-ViT's rule); stochastic depth (drop path 0.1 in the code) is not built; the contract's missing labels
mean the null label (the code fails on a class model called without labels). Parameter counts: the paper's own
table could not be read here; ``dis-h/2-512`` records the 900 M that Lu & Song 2024 (sCM, Table 2) cite for it,
the others none; the tests check every count against a closed form of the official layout.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from zoo.entries import InputSpec, PaperInfo, register
from zoo.errors import BadOption
from zoo.layers.embeddings import LabelEmbedder, modulate, timestep_embedding
from zoo.layers.mamba import Mamba
from zoo.layers.patch import PatchEmbed, token_grid, unpatchify
from zoo.layers.pos_embed import resize_learned
from zoo.models.base import Backbone


class DiSBlock(nn.Module):
    """Optional long-skip merge, then add -> RMSNorm -> bidirectional Mamba (official ``Block``)."""

    def __init__(self, dim: int, skip: bool, mamba_kwargs: dict):
        super().__init__()
        self.mixer = Mamba(dim, bimamba=True, **mamba_kwargs)
        self.norm = nn.RMSNorm(dim, eps=1e-5)
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None

    def forward(self, hidden: Tensor, residual: Tensor | None, skip: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.skip_linear is not None:
            hidden = self.skip_linear(torch.cat([hidden, skip], dim=-1))
        residual = hidden if residual is None else residual + hidden
        return self.mixer(self.norm(residual)), residual


class DiS(Backbone):
    """``model(x, t, cond=None)`` -> noise (and variance with ``learn_sigma``) of x's shape."""

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1536,
        depth: int = 49,
        num_classes: int = 1000,
        mlp_time_embed: bool = True,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        learn_sigma: bool = True,
    ):
        super().__init__(
            input_size=input_size,
            in_channels=in_channels,
            patch_size=patch_size,
            num_classes=num_classes,
            learn_sigma=learn_sigma,
        )
        if depth % 2 == 0:
            raise BadOption(f"depth counts the blocks: in + mid + out, odd (25 or 49 in the paper), got {depth}")
        d = hidden_size
        self.grid = input_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_channels, d, bias=True)
        self.time_embed = (
            nn.Sequential(nn.Linear(d, 4 * d), nn.SiLU(), nn.Linear(4 * d, d)) if mlp_time_embed else nn.Identity()
        )
        self.label_emb = LabelEmbedder(num_classes, d) if num_classes > 0 else None
        self.extras = 1 + int(num_classes > 0)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + self.grid**2, d))
        mamba_kwargs = dict(d_state=d_state, d_conv=d_conv, expand=expand)
        half = depth // 2
        self.in_blocks = nn.ModuleList(DiSBlock(d, False, mamba_kwargs) for _ in range(half))
        self.mid_block = DiSBlock(d, False, mamba_kwargs)
        self.out_blocks = nn.ModuleList(DiSBlock(d, True, mamba_kwargs) for _ in range(half))
        self.norm_f = nn.RMSNorm(d, eps=1e-5)
        self.final_layer = nn.Module()
        self.final_layer.norm_final = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_layer.linear = nn.Linear(d, patch_size * patch_size * self.out_channels)
        if num_classes > 0:
            self.final_layer.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self._init_weights(n_layer=depth - 1)

    @property
    def blocks(self) -> list[DiSBlock]:
        """Every block in execution order (what ``bench`` times block by block)."""
        return [*self.in_blocks, self.mid_block, *self.out_blocks]

    def _init_weights(self, n_layer: int) -> None:
        """The code's ``self.apply(partial(_init_weights, n_layer=depth))`` (its depth: blocks - 1)."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and module.bias is not None and not name.endswith("dt_proj"):
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        for block in self.blocks:
            weight = block.mixer.out_proj.weight
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            with torch.no_grad():
                weight /= math.sqrt(n_layer)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        h, w = token_grid(x.shape[-2], x.shape[-1], self.patch_size, "input")
        x = self.patch_embed(x)
        time_token = self.time_embed(timestep_embedding(t, x.shape[-1]).to(x.dtype)).unsqueeze(1)
        x = torch.cat([time_token, x], dim=1)
        c = time_token
        if self.label_emb is not None:
            y = self.null_condition(x.shape[0], x.device) if cond is None else cond
            label_token = self.label_emb(y).unsqueeze(1)
            x = torch.cat([label_token, x], dim=1)  # final order [label, time, patches]
            c = time_token + label_token
        hidden = x + resize_learned(self.pos_embed, self.extras, self.grid, h, w)
        residual, skips = None, []
        for block in self.in_blocks:
            hidden, residual = block(hidden, residual)
            skips.append(hidden)
        hidden, residual = self.mid_block(hidden, residual)
        for block in self.out_blocks:
            hidden, residual = block(hidden, residual, skips.pop())
        out = self.final_layer.norm_final(self.norm_f(residual + hidden))
        if self.label_emb is not None:
            shift, scale = self.final_layer.adaLN_modulation(c[:, 0]).chunk(2, dim=1)
            out = modulate(out, shift, scale)
        out = self.final_layer.linear(out)[:, self.extras :]
        return unpatchify(out, h, w, self.patch_size, self.out_channels)


_PAPER = "Fei et al. 2024 (DiS)"
_SIZES = {"s": (25, 368), "b": (25, 768), "m": (49, 768), "l": (49, 1024), "h": (49, 1536)}
_NOTE = (
    "config from feizc/DiS models_dis.py (dis_{}_{}); the paper's parameter counts could not be pinned in "
    "this session: our count is checked against a closed form of the official layout instead"
)
_IMAGENET = InputSpec(in_channels=4, latent=True, image_size=256, conditioning="class", num_classes=1000)
for (_size, (_depth, _hidden)), _patch in ((s, p) for s in _SIZES.items() for p in (2, 4)):
    register(
        f"dis-{_size}/{_patch}",
        family="dis",
        builder=DiS,
        config=dict(patch_size=_patch, hidden_size=_hidden, depth=_depth),
        inputs=_IMAGENET,
        paper=PaperInfo(_PAPER, "ImageNet 256 (class-conditional)", note=_NOTE.format(_size, _patch)),
    )
register(
    "dis-h/2-512",
    family="dis",
    builder=DiS,
    config=dict(input_size=64, patch_size=2, hidden_size=1536, depth=49),  # README: DiS-H/2 at 512 px
    inputs=InputSpec(in_channels=4, latent=True, image_size=512, conditioning="class", num_classes=1000),
    paper=PaperInfo(
        _PAPER,
        "ImageNet 512 (class-conditional); count as cited by Lu & Song 2024 (sCM, arXiv 2410.11081) Table 2",
        params_m=900,
        params_tolerance=0.02,
        note="DiS-H/2 at 512 px is 900M in sCM's Table 2 (a rounded count; DiS's own table could not be read here, "
        "and feizc/DiS's README gives none); ours 908.1 M (+0.9%), config from feizc/DiS models_dis.py (dis_h_2)",
    ),
)
register(
    "dis-s/2-32",
    family="dis",
    builder=DiS,
    # README: "DiS-S/2 (32x32) in the pixel space ... --task-type uncond" (CelebA; CIFAR-10 alike)
    config=dict(input_size=32, patch_size=2, in_channels=3, hidden_size=368, depth=25, num_classes=0),
    inputs=InputSpec(in_channels=3, latent=False, image_size=32, conditioning="none"),
    paper=PaperInfo(_PAPER, "unconditional 32 px (pixels)", note=_NOTE.format("s", 2)),
)
register(
    "dis-tiny",
    family="dis",
    builder=DiS,
    config=dict(input_size=8, patch_size=2, hidden_size=64, depth=5, num_classes=10),
    inputs=InputSpec(in_channels=4, latent=True, image_size=64, conditioning="class", num_classes=10),
    tags=("tiny",),
)

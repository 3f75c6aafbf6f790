"""ZigMa: A DiT-style Zigzag Mamba Diffusion Model (Hu et al., ECCV 2024; code: CompVis/zigma).

A DiT-like stack of unidirectional Mamba-1 blocks whose token order changes from block to block: block i
scans the patch grid along zigzag path ``i % len(paths)`` (the code's ``scan_type="zigzagN8"``). The
layout follows ``model_zigma.py`` and ``dis_mamba/mamba_ssm/modules/mamba_simple.py`` of the official code:

- patch embedding (timm's, named ``x_embedder.proj``); optional positional embedding: learned (the code's
  ``use_pe=2``, configs ``zigzag8_b1_pe2``), none (``use_pe=0``, config ``s1024_zigzag8_b2_old``) or fixed
  sin-cos (``use_pe=1``);
- conditioning c = DiT's timestep MLP (+ a label table for class models); no condition tokens;
- blocks in the Mamba language-model layout (add -> RMSNorm -> mixer, a separate residual stream):
  ``residual += hidden; h = RMSNorm(residual); hidden = h + gate * Mamba_zigzag(modulate(h, shift, scale))``
  with (shift, scale, gate) from ``adaLN_modulation`` = SiLU + Linear(d, 3d) of c, zero-initialised. The
  mixer permutes its input into the block's path and its output back (the code permutes in_proj's output,
  which is token-wise, so it is the same function);
- after the last block: RMSNorm of residual + hidden, then the final layer: LayerNorm without affine, Linear
  to patch pixels (no adaLN in the final layer: the code builds ``FinalLayer(cond=False)``);
- Mamba settings: mamba_ssm's defaults (d_state 16, d_conv 4, expand 2); init: DiT's (xavier patch
  embedding, N(0, 0.02) timestep MLP, zero adaLN) then the Mamba LM init (zero biases but dt's, out_proj
  Kaiming-uniform / sqrt(depth)).

The 8 zigzag paths (``zigzag_paths``) are the code's ``zigzag_path(N)`` in its order: for each start corner
(top-left, top-right, bottom-left, bottom-right) a row-wise boustrophedon then a column-wise one. The code
builds them for square grids only; here any h x w grid gets them (the same formulas with h rows and w
columns; on a square grid they equal the code's, tests/test_zigma_dis.py checks it). The reversal of any of
the 8 paths is again one of the 8, on every grid (tested): the paper's "paths and their reversals" are these
8. Index tensors (path and inverse) are built once per grid size and cached.

Choices where the code and our contract differ, or the paper is silent:

- t: the code's flow-matching time in [0, 1] is multiplied by 1000 before the sinusoid; the contract passes
  timesteps on that scale already, so t is embedded as given.
- Labels: the contract's table has the null row ``num_classes`` (the code builds none, its label dropout
  being 0); 1 x d parameters more for class models.
- Stochastic depth (drop path 0.1 in the code, a training regulariser) is not built: the zoo's models are
  deterministic; residual_in_fp32 / fused add+norm are numerics of the CUDA path, not of the function.
- ``learn_sigma=True`` doubles the output channels (the code predicts a velocity with ``in_channels``
  channels; the option exists for the contract, default off).
- Text conditioning (the code's ``has_text``: cross-attention after each mixer, used for MS COCO and the
  captioned MultiModal-CelebA runs) and the video models (the code's ``zzvideo_sst`` factorised scans,
  UCF-101) are not built here.

Parameter counts: the paper prints no parameter table that could be pinned in this session (its text was not
retrievable here); entries give the official configs (``config/model/*.yaml``), counted by building them,
and the tests check the count against a closed form of the official layout.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor, nn

from zoo.entries import InputSpec, PaperInfo, Published, register
from zoo.errors import BadOption
from zoo.layers.embeddings import LabelEmbedder, TimestepEmbedder, modulate
from zoo.layers.mamba import Mamba
from zoo.layers.patch import PatchEmbed, token_grid, unpatchify
from zoo.layers.pos_embed import resize_learned, sincos_2d_like
from zoo.models.base import Backbone

NUM_ZIGZAG_PATHS = 8
POS_EMBEDS = ("learned", "none", "sincos")


def zigzag_paths(h: int, w: int) -> list[list[int]]:
    """The 8 zigzag paths of an h x w grid (row-major token indices r * w + c), in the official order:
    per start corner, the row-wise boustrophedon then the column-wise one (``utils_zigzag.zigzag_path``)."""
    paths = []
    for r0, c0, dr, dc in ((0, 0, 1, 1), (0, w - 1, 1, -1), (h - 1, 0, -1, 1), (h - 1, w - 1, -1, -1)):
        rows = [(r0 + dr * i) * w + c0 + dc * (j if i % 2 == 0 else w - 1 - j) for i in range(h) for j in range(w)]
        cols = [(r0 + dr * (i if j % 2 == 0 else h - 1 - i)) * w + c0 + dc * j for j in range(w) for i in range(h)]
        paths += [rows, cols]
    return paths


@lru_cache(maxsize=64)
def zigzag_index(h: int, w: int) -> tuple[Tensor, Tensor]:
    """(paths, inverses): two (8, h*w) LongTensors, built once per grid; ``x[:, paths[k]]`` is the sequence
    along path k and ``seq[:, inverses[k]]`` puts it back in row-major order."""
    # cached: a normal CPU tensor even if first built in inference mode or under `with torch.device("meta")`
    with torch.inference_mode(False), torch.device("cpu"):
        paths = torch.tensor(zigzag_paths(h, w), dtype=torch.long)
        return paths, torch.argsort(paths, dim=1)


class ZigMaBlock(nn.Module):
    """Add -> RMSNorm -> adaLN-modulated Mamba along this block's zigzag path, gated (official ``Block``)."""

    def __init__(self, dim: int, mamba_kwargs: dict):
        super().__init__()
        self.mixer = Mamba(dim, **mamba_kwargs)
        self.norm = nn.RMSNorm(dim, eps=1e-5)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))

    def forward(
        self, hidden: Tensor, residual: Tensor | None, c: Tensor, path: Tensor, inverse: Tensor
    ) -> tuple[Tensor, Tensor]:
        residual = hidden if residual is None else residual + hidden
        h = self.norm(residual)
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=1)
        out = self.mixer(modulate(h, shift, scale).index_select(1, path)).index_select(1, inverse)
        return h + gate.unsqueeze(1) * out, residual


class ZigMa(Backbone):
    """``model(x, t, cond=None)`` -> velocity (flow matching, as the code's stochastic interpolants) of x's shape
    (labels, or None: the null class; unconditional models take None)."""

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 768,
        depth: int = 24,
        num_classes: int = 0,
        num_paths: int = NUM_ZIGZAG_PATHS,
        pos_embed: str = "learned",
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        learn_sigma: bool = False,
    ):
        super().__init__(
            input_size=input_size,
            in_channels=in_channels,
            patch_size=patch_size,
            num_classes=num_classes,
            learn_sigma=learn_sigma,
        )
        if not 1 <= num_paths <= NUM_ZIGZAG_PATHS:
            raise BadOption(f"num_paths is 1..{NUM_ZIGZAG_PATHS} (the code's zigzagN<k>), got {num_paths}")
        if pos_embed not in POS_EMBEDS:
            raise BadOption(f"pos_embed is one of {POS_EMBEDS}, got {pos_embed!r}")
        d = hidden_size
        self.grid = input_size // patch_size
        self.num_paths, self.pos_embed_kind = num_paths, pos_embed
        self.x_embedder = PatchEmbed(patch_size, in_channels, d, bias=True)
        self.t_embedder = TimestepEmbedder(d)
        self.y_embedder = LabelEmbedder(num_classes, d) if num_classes > 0 else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid**2, d)) if pos_embed == "learned" else None
        mamba_kwargs = dict(d_state=d_state, d_conv=d_conv, expand=expand)
        self.blocks = nn.ModuleList(ZigMaBlock(d, mamba_kwargs) for _ in range(depth))
        self.norm_f = nn.RMSNorm(d, eps=1e-5)
        self.final_layer = nn.Module()
        self.final_layer.norm_final = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_layer.linear = nn.Linear(d, patch_size * patch_size * self.out_channels)
        self._init_weights(depth)

    def _init_weights(self, depth: int) -> None:
        """The code's ``initialize_weights`` then the Mamba LM init (``_init_weights``, ``m_init=True``)."""
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.x_embedder.proj.bias)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and module.bias is not None and not name.endswith("dt_proj"):
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        for block in self.blocks:
            weight = block.mixer.out_proj.weight
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            with torch.no_grad():
                weight /= math.sqrt(depth)

    def block_path(self, i: int) -> int:
        """The zigzag path block ``i`` scans along (the code's ``zz_paths * depth``: i mod #paths)."""
        return i % self.num_paths

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        h, w = token_grid(x.shape[-2], x.shape[-1], self.patch_size, "input")
        hidden = self.x_embedder(x)
        c = self.t_embedder(t)
        if self.y_embedder is not None:
            y = self.null_condition(x.shape[0], x.device) if cond is None else cond
            c = c + self.y_embedder(y)
        if self.pos_embed is not None:
            hidden = hidden + resize_learned(self.pos_embed, 0, self.grid, h, w)
        elif self.pos_embed_kind == "sincos":
            hidden = hidden + sincos_2d_like(x, hidden.shape[-1], h, w)
        paths, inverses = zigzag_index(h, w)
        paths, inverses = paths.to(x.device), inverses.to(x.device)
        residual = None
        for i, block in enumerate(self.blocks):
            k = self.block_path(i)
            hidden, residual = block(hidden, residual, c, paths[k], inverses[k])
        hidden = self.norm_f(residual + hidden)
        out = self.final_layer.linear(self.final_layer.norm_final(hidden))
        return unpatchify(out, h, w, self.patch_size, self.out_channels)


_PAPER = "Hu et al. 2024 (ZigMa, ECCV)"
_CODE = "CompVis/zigma"
_HF = "https://huggingface.co/taohu/zigma"
# how sample_acc.py reads them (zoo.checkpoints.zigma: the official names are ours; t is passed as 1000 * t)
_CONTAINER = "train_acc.py's checkpoint, EMA weights under 'ema'"
_NO_TABLE = (
    "config from the official code (" + _CODE + " config/model/{}.yaml); no parameter count of the paper "
    "(arXiv 2403.13802) was found (CompVis/zigma's README gives none): our count is checked against a closed "
    "form of the official layout instead"
)
register(
    "zigma-b/2-faceshq1024",
    family="zigma",
    builder=ZigMa,
    # s1024_zigzag8_b2_old: img_dim 128 (SD-VAE latents of 1024 px), patch 2, 24 x 768, zigzagN8, no PE
    config=dict(input_size=128, patch_size=2, hidden_size=768, depth=24, pos_embed="none"),
    inputs=InputSpec(in_channels=4, latent=True, image_size=1024, conditioning="none"),
    paper=PaperInfo(_PAPER, "Sec. 4 (FacesHQ 1024, unconditional)", note=_NO_TABLE.format("s1024_zigzag8_b2_old")),
    weights=(
        Published(
            _HF,
            "faceshq1024_0090000.pt",
            "CompVis/zigma README, Sampling: model=s1024_zigzag8_b2_old; " + _CONTAINER,
        ),
        Published(_HF, "landscape1024_0210000.pt", "same README: LandscapeHQ 1024, same config"),
    ),
)
register(
    "zigma-b/1-256",
    family="zigma",
    builder=ZigMa,
    # zigzag8_b1_pe2: img_dim 32 (latents of 256 px), patch 1, 24 x 768, zigzagN8, learned PE; the config of
    # the README's unconditional MultiModal-CelebA-HQ 256 run and of the released Churches 256 checkpoint
    config=dict(input_size=32, patch_size=1, hidden_size=768, depth=24, pos_embed="learned"),
    inputs=InputSpec(in_channels=4, latent=True, image_size=256, conditioning="none"),
    paper=PaperInfo(
        _PAPER, "Sec. 4 (MultiModal-CelebA-HQ 256, unconditional)", note=_NO_TABLE.format("zigzag8_b1_pe2")
    ),
    weights=(
        Published(_HF, "churches256_0280000.pt", "CompVis/zigma README, Sampling: model=zigzag8_b1_pe2; " + _CONTAINER),
    ),
)
register(
    "zigma-tiny",
    family="zigma",
    builder=ZigMa,
    config=dict(input_size=8, patch_size=2, hidden_size=64, depth=3, num_classes=10),
    inputs=InputSpec(in_channels=4, latent=True, image_size=64, conditioning="class", num_classes=10),
    tags=("tiny",),
)

"""PixArt-alpha (Chen et al. 2023) and T2MD, its self-attention/Mamba-2 hybrid student (Yao et al. 2025).

One class serves both, since T2MD keeps the teacher's skeleton (T2MD Sec. 3.3: "consistent with the
teacher model, our entire model consists of 28 blocks"): each block is token mixer -> cross-attention to the
caption -> MLP, conditioned by adaLN-single. ``layout`` says which mixer each block has: ``SA``
self-attention, ``HM`` Mamba-2 scanning height-first (column-major), ``WM`` width-first (row-major). The
teacher is ``"SAx28"``; T2MD is Sec. 4.1's ``"SA-(HM-WM)x3-SA-(HM-WM)x3-SA-(HM-WM)x3-SA-(HM-WM)x3"``
(SA at blocks 0, 7, 14, 21).

PixArt-alpha XL/2 as its public code builds it (PixArt-alpha/PixArt-alpha ``PixArt.py``; parameter names
follow it, so its checkpoints load with ``zoo.create_model(name, pretrained=PATH)``, see ``zoo/checkpoints/``):
patch 2, width 1152, 16 heads, 4 latent channels in, 8 out (learned sigma); captions are T5 embeddings (120
tokens x 4096) through a caption MLP (4096 -> 1152 -> 1152, tanh GELU), with a fixed random null caption
buffer for CFG (dropped with p = 0.1 in training); adaLN-single: the timestep MLP output goes through one
shared SiLU -> Linear(d, 6d) (``t_block``), to which each block adds its own learned (6, d) table; x += g1
SA(LN(x)(1+s1)+b1); x += CrossAttn(x, caption); x += g2 MLP(LN(x)(1+s2)+b2); final LayerNorm modulated by a
(2, d) table plus the raw timestep embedding, then Linear. Fixed 2-D sin-cos positional embedding with
PixArt's per-axis normalisation (``pos_embed="pixart"``).

T2MD's teacher: the paper distils PixArt-alpha (Sec. 3.1, 3.3: "we choose the open-source PixArt-alpha as the
teacher model") at 512 x 512 ("Starting from the distilled 512x512 resolution base model", Abstract; Fig. 4
"each 512x512 stage"), then adapts and fine-tunes to 1024 and 2048. It names no checkpoint file; the public
configuration that fits is PixArt-alpha XL/2 at 512 px (``pixart-alpha-xl/2``, ``PixArt-XL-2-512x512.pth``:
lewei_scale 1, no resolution / aspect-ratio conditioning, SD VAE latents, T5 captions of 120 tokens), not
the 1024-MS model (``pixart-alpha-xl/2-1024-ms``). ``ablations train`` takes such a checkpoint file as the
distillation teacher (``DistillConfig.teacher``) as well as a teacher run.

Our reading of T2MD where the paper is brief (Sec. 3.3, 4.1):
- A Mamba block scans its orientation forwards and backwards with one shared Mamba-2 (d_state 256,
  expand 2, headdim 64, mamba_ssm's other defaults), and "their outputs are fused by a linear projection":
  we sum the two outputs and apply Linear(d, d). Concatenation then Linear(2d, d) is the other natural
  reading but gives 754 M, which does not round to the paper's "0.7B"; the sum gives 722 M.
- ``bidirectional=False`` (Table 1's "Bi-dir -> Uni-dir") scans forwards only, without the fusion layer.
- ``shared_projections`` (default True) projects in and out once for both directions, the same function
  as running the Mamba-2 layer per direction with its shared weights (see ``BidirectionalMamba2``) at
  about 30% fewer MACs per Mamba block; ``False`` reproduces the per-direction accounting.
- T2MD entries default to the centered, long-edge-normalised sin-cos embedding of the model-adaptation
  stage (Sec. 3.4.3), which samples zero-shot at other resolutions and aspect ratios; pass
  ``pos_embed="pixart"`` to reproduce the distillation stages, which inherit the teacher's.
- Text: the backbone takes caption embeddings (B, tokens, 4096) and a (B, tokens) bool mask; the T5
  encoder stays outside (encode prompts with a T5 encoder of width 4096 and pass its last hidden state).
  For class-labelled data sets, ``zoo.layers.captions.class_captions`` maps labels to fixed caption
  embeddings.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from zoo.entries import InputSpec, PaperInfo, Published, register
from zoo.errors import BadOption
from zoo.layers.attention import SelfAttention
from zoo.layers.cross_attention import CrossAttention
from zoo.layers.embeddings import TimestepEmbedder, gelu_tanh, modulate
from zoo.layers.mamba import Mamba2
from zoo.layers.mlp import Mlp
from zoo.layers.patch import PatchEmbed, token_grid, unpatchify
from zoo.layers.pos_embed import sincos_2d_centered, sincos_2d_pixart
from zoo.layers.scan_order import from_scan_order, to_scan_order
from zoo.models.base import Backbone

T2MD_LAYOUT = "SA-(HM-WM)x3-SA-(HM-WM)x3-SA-(HM-WM)x3-SA-(HM-WM)x3"
MIXERS = ("SA", "HM", "WM")


def parse_layout(layout: str) -> list[str]:
    """'SA-(HM-WM)x3' -> ['SA', 'HM', 'WM', 'HM', 'WM', 'HM', 'WM']; also 'SAx28' and comma lists."""
    text = layout.replace(" ", "").replace(",", "-")
    group = re.compile(r"\(([^()]*)\)x(\d+)")
    while group.search(text):
        text = group.sub(lambda m: "-".join([m.group(1)] * int(m.group(2))), text)
    text = re.sub(r"([A-Z]+)x(\d+)", lambda m: "-".join([m.group(1)] * int(m.group(2))), text)
    mixers = [t for t in text.split("-") if t]
    bad = sorted(set(mixers) - set(MIXERS))
    if bad or not mixers:
        raise BadOption(f"layout {layout!r}: unknown mixer(s) {bad}; use SA, HM, WM, groups '(HM-WM)x3'")
    return mixers


class BidirectionalMamba2(nn.Module):
    """Mamba-2 over the grid in one orientation, forwards and backwards with shared weights, outputs
    summed and fused by a linear layer (T2MD Sec. 3.3).

    ``shared_projections=True`` (default) computes in_proj once and out_proj once for both directions:
    the weights are shared and both projections act token by token, so projecting the sequence once and
    reading it backwards, and projecting the sum of the two (normed, gated) directions once, is the same
    function (out_proj has no bias). ``False`` runs the whole Mamba-2 layer per direction, as a naive
    reading of the paper (and its MAC accounting) does; outputs agree to float rounding."""

    def __init__(
        self, dim: int, order: str, bidirectional: bool = True, shared_projections: bool = True, **mamba_kwargs
    ):
        super().__init__()
        self.order = order
        self.shared_projections = shared_projections
        self.mamba = Mamba2(dim, **mamba_kwargs)
        self.fuse = nn.Linear(dim, dim) if bidirectional else None

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        seq = to_scan_order(x, h, w, self.order)
        if self.fuse is None:
            out = self.mamba(seq)
        elif self.shared_projections:
            proj = self.mamba.in_proj(seq)
            both = self.mamba.mix(proj) + self.mamba.mix(proj, reverse=True)
            out = self.fuse(self.mamba.out_proj(both))
        else:
            forward, backward = self.mamba(torch.cat([seq, seq.flip(1)], dim=0)).chunk(2, dim=0)
            out = self.fuse(forward + backward.flip(1))
        return from_scan_order(out, h, w, self.order)


class CaptionEmbedder(nn.Module):
    """T5 caption embeddings -> model width (PixArt's ``y_proj``), with the null caption buffer for CFG. PixArt
    also swaps captions for the null one during training; here the trainer does (``zoo.models.base``)."""

    def __init__(self, in_channels: int, hidden_size: int, token_num: int):
        super().__init__()
        self.y_proj = Mlp(in_channels, hidden_size, hidden_size, act_layer=gelu_tanh)
        self.register_buffer("y_embedding", torch.randn(token_num, in_channels) / in_channels**0.5)

    def forward(self, caption: Tensor) -> Tensor:
        return self.y_proj(caption)


class T2IBlock(nn.Module):
    """Token mixer (self-attention or bidirectional Mamba-2) -> cross-attention -> MLP, adaLN-single."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mixer: str,
        mlp_ratio: float,
        bidirectional: bool,
        mamba_kwargs,
        shared_projections: bool = True,
    ):
        super().__init__()
        self.mixer_kind = mixer
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        if mixer == "SA":
            self.attn = SelfAttention(dim, num_heads, qkv_bias=True)
        else:
            order = "col" if mixer == "HM" else "row"
            self.mamba = BidirectionalMamba2(dim, order, bidirectional, shared_projections, **mamba_kwargs)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=gelu_tanh)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    @property
    def token_mixer(self) -> nn.Module:
        return self.attn if self.mixer_kind == "SA" else self.mamba

    def forward(self, x: Tensor, t6: Tensor, caption: Tensor, mask: Tensor | None, h: int, w: int) -> Tensor:
        table = self.scale_shift_table[None] + t6.view(x.shape[0], 6, -1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = table.unbind(1)
        mixer_in = modulate(self.norm1(x), shift_msa, scale_msa)
        mixed = self.attn(mixer_in) if self.mixer_kind == "SA" else self.mamba(mixer_in, h, w)
        x = x + gate_msa.unsqueeze(1) * mixed
        x = x + self.cross_attn(x, caption, mask)
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class T2IFinalLayer(nn.Module):
    """LayerNorm modulated by a learned (2, d) table plus the raw timestep embedding, then Linear."""

    def __init__(self, dim: int, out_features: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, out_features)
        self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim**0.5)

    def forward(self, x: Tensor, t_emb: Tensor) -> Tensor:
        shift, scale = (self.scale_shift_table[None] + t_emb[:, None]).unbind(1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def init_pixart_weights(model: nn.Module) -> None:
    """PixArt's init (T2MD's skeleton and SANA keep it): Xavier linears, N(0, 0.02) for the timestep, t_block and
    caption MLPs, zeroed cross-attention output projections and final linear. ``model`` has PixArt's module names
    (x_embedder, t_embedder, t_block, y_embedder.y_proj, blocks[i].cross_attn, final_layer)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    w = model.x_embedder.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    for linear in (model.t_embedder.mlp[0], model.t_embedder.mlp[2], model.t_block[1]):
        nn.init.normal_(linear.weight, std=0.02)
    nn.init.normal_(model.y_embedder.y_proj.fc1.weight, std=0.02)
    nn.init.normal_(model.y_embedder.y_proj.fc2.weight, std=0.02)
    for block in model.blocks:
        nn.init.zeros_(block.cross_attn.proj.weight)
        nn.init.zeros_(block.cross_attn.proj.bias)
    nn.init.zeros_(model.final_layer.linear.weight)
    nn.init.zeros_(model.final_layer.linear.bias)


class PixArtSkeleton(Backbone):
    """PixArt-alpha's skeleton with one token mixer per block (``layout``): ``"SAx28"`` is PixArt-alpha, T2MD's
    layouts mix in Mamba-2. ``model(x, t, cond, mask=None)``: latents, timesteps, caption embeddings
    (B, tokens, caption_channels) and their bool mask -> noise and sigma (2 x in_channels)."""

    def __init__(
        self,
        input_size: int = 64,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        caption_channels: int = 4096,
        caption_tokens: int = 120,
        num_classes: int = 0,
        learn_sigma: bool = True,
        layout: str = "SAx28",
        bidirectional: bool = True,
        pos_embed: str = "pixart",
        lewei_scale: float = 1.0,
        d_state: int = 256,
        expand: int = 2,
        headdim: int = 64,
        shared_projections: bool = True,
    ):
        if num_classes:
            raise BadOption(
                f"PixArt-alpha and T2MD condition on captions, not labels: num_classes must be 0, got {num_classes}"
            )
        super().__init__(
            input_size=input_size,
            in_channels=in_channels,
            patch_size=patch_size,
            learn_sigma=learn_sigma,
            conditioning="text",
        )
        mixers = parse_layout(layout)
        if len(mixers) != depth:
            raise BadOption(f"layout {layout!r} has {len(mixers)} blocks, depth is {depth}")
        if pos_embed not in ("pixart", "centered"):
            raise BadOption(f"pos_embed must be 'pixart' or 'centered', got {pos_embed!r}")
        self.pos_embed_kind, self.lewei_scale = pos_embed, lewei_scale
        self.base_size = input_size // patch_size
        d = hidden_size
        self.x_embedder = PatchEmbed(patch_size, in_channels, d, bias=True)
        self.t_embedder = TimestepEmbedder(d)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.y_embedder = CaptionEmbedder(caption_channels, d, caption_tokens)
        mamba_kwargs = dict(d_state=d_state, expand=expand, headdim=headdim)
        self.blocks = nn.ModuleList(
            T2IBlock(d, num_heads, m, mlp_ratio, bidirectional, mamba_kwargs, shared_projections) for m in mixers
        )
        self.final_layer = T2IFinalLayer(d, patch_size * patch_size * self.out_channels)
        init_pixart_weights(self)

    def positions(self, h: int, w: int) -> Tensor:
        dim = self.x_embedder.proj.out_channels
        if self.pos_embed_kind == "centered":  # T2MD Sec. 3.4.3
            return sincos_2d_centered(dim, h, w, base=self.base_size)
        return sincos_2d_pixart(dim, h, w, self.base_size, self.lewei_scale)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) latents, t (B,) timesteps, cond (B, tokens, caption_channels) caption embeddings
        (None: the null caption) with ``mask`` (B, tokens) bool -> (B, out_channels, H, W)."""
        h, w = token_grid(x.shape[-2], x.shape[-1], self.patch_size, "latent")
        with torch.device(x.device):  # built where it is used (free on the meta device when counting FLOPs)
            pos = self.positions(h, w)
        x = self.x_embedder(x) + pos.to(x.dtype)
        t_emb = self.t_embedder(t)
        t6 = self.t_block(t_emb)
        caption = self.y_embedder(self.null_condition(x.shape[0], x.device) if cond is None else cond)
        for block in self.blocks:
            x = block(x, t6, caption, mask, h, w)
        x = self.final_layer(x, t_emb)
        return unpatchify(x, h, w, self.patch_size, self.out_channels)

    def null_condition(self, batch: int, device: torch.device | str | None = None) -> Tensor:
        """The fixed null caption (for the unconditional half of a CFG batch and caption dropout)."""
        return self.y_embedder.y_embedding[None].expand(batch, -1, -1).to(device)


_TEXT_512 = InputSpec(
    in_channels=4, latent=True, image_size=512, conditioning="text", caption_tokens=120, caption_channels=4096
)
register(
    "pixart-alpha-xl/2",
    family="pixart",
    builder=PixArtSkeleton,
    config=dict(layout="SAx28"),
    inputs=_TEXT_512,
    paper=PaperInfo(
        "Chen et al. 2023 (PixArt-alpha); T2MD's teacher",
        "T2MD Sec. 3.3",
        params_m=610.9,
        note="610.9 M derived from the public XL/2 config; the papers say 0.6B",
    ),
    weights=(
        Published(
            "https://huggingface.co/PixArt-alpha/PixArt-alpha",
            "PixArt-XL-2-512x512.pth",
            "original layout, state dict under 'state_dict'",
        ),
        Published(
            "https://huggingface.co/PixArt-alpha/PixArt-alpha",
            "PixArt-XL-2-256x256.pth",
            "256 px model: also pass input_size=32",
        ),
        Published(
            "https://huggingface.co/PixArt-alpha/PixArt-XL-2-512x512",
            "transformer/diffusion_pytorch_model.safetensors",
            "diffusers layout",
        ),
    ),
)
register(
    "t2md",
    family="t2md",
    builder=PixArtSkeleton,
    config=dict(layout=T2MD_LAYOUT, pos_embed="centered"),
    inputs=_TEXT_512,
    paper=PaperInfo(
        "Yao et al. 2025 (T2MD)",
        "Sec. 4.1",
        params_m=700,
        params_tolerance=0.05,
        note="the paper gives 0.7B (one significant digit); ours 722 M, see the module doc",
    ),
)
_TINY = dict(input_size=8, hidden_size=64, num_heads=4, caption_channels=32, caption_tokens=6, d_state=16, headdim=16)
_TINY_TEXT = InputSpec(
    in_channels=4, latent=True, image_size=64, conditioning="text", caption_tokens=6, caption_channels=32
)
register(
    "pixart-tiny",
    family="pixart",
    builder=PixArtSkeleton,
    config=dict(_TINY, depth=3, layout="SAx3"),
    inputs=_TINY_TEXT,
    tags=("tiny",),
)
register(
    "t2md-tiny",
    family="t2md",
    builder=PixArtSkeleton,
    config=dict(_TINY, depth=3, layout="SA-HM-WM", pos_embed="centered"),
    inputs=_TINY_TEXT,
    tags=("tiny",),
)

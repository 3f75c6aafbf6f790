"""SANA (Xie et al. 2024, "SANA: Efficient High-Resolution Image Synthesis with Linear Diffusion Transformers"):
a PixArt-style text-to-image transformer whose self-attention is ReLU linear attention and whose MLP is a
gated convolutional "Mix-FFN", on 32-channel DC-AE latents (32x downsampling: 1024 px -> a 32 x 32 latent).

The layer is diffusers' ``SanaTransformer2DModel`` (tests/test_sana.py loads its weights and checks outputs
within 1e-5); the parameter names are NVlabs/Sana's (``SanaMS``: ``attn.qkv``, ``mlp.inverted_conv.conv``,
``attention_y_norm`` ...), so its ``.pth`` files load as they are (``zoo/checkpoints/sana.py`` checks and
drops their ``pos_embed`` buffer) and diffusers' names are mapped onto them. Top to bottom:

- patch embedding: a p x p conv (p = 1), no positional embedding (``interpolation_scale=None``, the 512 and
  1024 px models); the 2K / 4K models add PixArt's fixed sin-cos table with ``interpolation_scale`` 1 / 2
  over the training grid (diffusers' ``PatchEmbed(pos_embed_type="sincos")``);
- timestep: 256 sin-cos frequencies -> Linear -> SiLU -> Linear (``t_embedder``), then adaLN-single: SiLU ->
  Linear(d, 6d) (``t_block``) shared by all blocks, each adding its own learned (6, d) table;
- caption: Gemma-2-2B embeddings (300 tokens x 2304) -> Linear -> tanh GELU -> Linear (``y_embedder``), then
  RMSNorm (eps 1e-5, learned scale; ``attention_y_norm``); a fixed null-caption buffer for guidance, as
  PixArt's;
- each block: x += g1 * LinearAttn(LN(x)(1 + s1) + b1); x += CrossAttn(x, caption) (softmax, unmodulated,
  ``zoo.ops.attention`` with the caption mask); x += g2 * MixFFN(LN(x)(1 + s2) + b2). LayerNorms without
  affine, eps 1e-6;
- linear attention (``zoo.ops.linear_attention``): q, k, v by one Linear without bias, heads of 32 channels,
  ReLU feature map, no scale, float32 sums, eps 1e-15; then Linear with bias;
- Mix-FFN (diffusers' ``GLUMBConv``): 1x1 conv d -> 2h, SiLU, 3x3 depthwise conv over the token grid, split
  into [value | gate], value * SiLU(gate), 1x1 conv h -> d without bias; h = int(mlp_ratio * d), mlp_ratio 2.5;
- final layer: LayerNorm modulated by a learned (2, d) table plus the raw timestep embedding, Linear to
  p * p * 32 (SANA predicts the flow velocity: no learned sigma; ``learn_sigma=True``, not SANA's, doubles
  the output channels, as diffusers' ``out_channels=64`` would).

Configurations (paper Table 6 / diffusers' conversion script): Sana-0.6B width 1152, depth 28, 36 heads of
32, cross-attention 16 heads of 72; Sana-1.6B width 2240, depth 20, 70 heads of 32, cross-attention 20 heads
of 112; both FFN 2.5x. The 4K model is Sana-1.6B at a 128 x 128 latent with the sin-cos table
(``interpolation_scale=2``; diffusers' ``convert_sana_to_diffusers.py``: {512: None, 1024: None, 2048: 1.0,
4096: 2.0}).

Where the paper is silent and diffusers' model decides: the caption mask is applied to cross-attention only
(diffusers turns it into a -10000 bias, we into a boolean key mask: the same softmax in float32); the
null caption buffer (300 x 2304, N(0, 1) / sqrt(2304), PixArt's init) is what ``null_condition`` returns, as
SANA's own code keeps one; diffusers' files hold none, so a model loaded from them keeps its own (a warning
says so). The init is PixArt's (Xavier linears, zeroed cross-attention output and final linear); the convs
keep PyTorch's default init and the RMSNorm scale starts at 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo import ops
from zoo.entries import InputSpec, PaperInfo, Published, register
from zoo.errors import BadOption
from zoo.layers.cross_attention import CrossAttention
from zoo.layers.embeddings import TimestepEmbedder, modulate
from zoo.layers.patch import PatchEmbed, token_grid, unpatchify
from zoo.layers.pos_embed import sincos_2d_pixart
from zoo.models.base import Backbone
from zoo.models.t2md import CaptionEmbedder, T2IFinalLayer, init_pixart_weights

DC_AE_FACTOR = 32  # SANA's DC-AE (f32c32): image pixels = 32 x latent size


class LinearSelfAttention(nn.Module):
    """Multi-head ReLU linear attention (SANA's ``LiteLA``): ``qkv`` without bias, ``proj`` with bias."""

    def __init__(self, dim: int, num_heads: int, head_dim: int = 32, qkv_bias: bool = False):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        self.qkv = nn.Linear(dim, 3 * num_heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(num_heads * head_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = ops.linear_attention(q, k, v)  # (b, heads, n, head_dim)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class ConvLayer(nn.Module):
    """One convolution, under SANA's module name ``conv`` (``mlp.inverted_conv.conv``)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class MixFFN(nn.Module):
    """GLU MBConv over the token grid: 1x1 expand to 2h, SiLU, 3x3 depthwise, value * SiLU(gate), 1x1 to d."""

    def __init__(self, dim: int, mlp_ratio: float = 2.5):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.inverted_conv = ConvLayer(nn.Conv2d(dim, 2 * hidden, 1))
        self.depth_conv = ConvLayer(nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden))
        self.point_conv = ConvLayer(nn.Conv2d(hidden, dim, 1, bias=False))

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        """x (B, h*w, d) tokens in row-major order -> (B, h*w, d)."""
        grid = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        value, gate = self.depth_conv(F.silu(self.inverted_conv(grid))).chunk(2, dim=1)
        out = self.point_conv(value * F.silu(gate))
        return out.flatten(2).transpose(1, 2)


class SanaBlock(nn.Module):
    """Linear self-attention -> cross-attention to the caption -> Mix-FFN, adaLN-single."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, cross_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = LinearSelfAttention(dim, num_heads, head_dim)
        self.cross_attn = CrossAttention(dim, cross_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MixFFN(dim, mlp_ratio)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(self, x: Tensor, t6: Tensor, caption: Tensor, mask: Tensor | None, h: int, w: int) -> Tensor:
        table = self.scale_shift_table[None] + t6.view(x.shape[0], 6, -1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = table.unbind(1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + self.cross_attn(x, caption, mask)
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp), h, w)


class Sana(Backbone):
    """SANA's transformer (module doc). ``model(x, t, cond, mask=None)``: DC-AE latents (B, 32, H, W),
    timesteps (B,), caption embeddings (B, tokens, caption_channels) with their bool mask -> the velocity
    (B, 32, H, W)."""

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 1,
        in_channels: int = 32,
        hidden_size: int = 2240,
        depth: int = 20,
        head_dim: int = 32,
        cross_heads: int = 20,
        mlp_ratio: float = 2.5,
        caption_channels: int = 2304,
        caption_tokens: int = 300,
        interpolation_scale: float | None = None,
        num_classes: int = 0,
        learn_sigma: bool = False,
    ):
        if num_classes:
            raise BadOption(f"SANA conditions on captions, not labels: num_classes must be 0, got {num_classes}")
        if hidden_size % head_dim or hidden_size % cross_heads:
            raise BadOption(
                f"hidden_size {hidden_size} must be divisible by head_dim {head_dim} and cross_heads {cross_heads}"
            )
        super().__init__(
            input_size=input_size,
            in_channels=in_channels,
            patch_size=patch_size,
            learn_sigma=learn_sigma,
            conditioning="text",
        )
        d = hidden_size
        self.interpolation_scale = interpolation_scale
        self.base_size = input_size // patch_size
        self.x_embedder = PatchEmbed(patch_size, in_channels, d, bias=True)
        self.t_embedder = TimestepEmbedder(d)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.y_embedder = CaptionEmbedder(caption_channels, d, caption_tokens)
        self.attention_y_norm = nn.RMSNorm(d, eps=1e-5)
        self.blocks = nn.ModuleList(SanaBlock(d, d // head_dim, head_dim, cross_heads, mlp_ratio) for _ in range(depth))
        self.final_layer = T2IFinalLayer(d, patch_size * patch_size * self.out_channels)
        init_pixart_weights(self)  # PixArt's init: SANA's code keeps it

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) latents, t (B,) timesteps, cond (B, tokens, caption_channels) caption embeddings
        (None: the null caption) with ``mask`` (B, tokens) bool -> (B, out_channels, H, W)."""
        h, w = token_grid(x.shape[-2], x.shape[-1], self.patch_size, "latent")
        x = self.x_embedder(x)
        if self.interpolation_scale is not None:  # the 2K / 4K models
            with torch.device(x.device):  # built where it is used (free on the meta device)
                pos = sincos_2d_pixart(x.shape[-1], h, w, self.base_size, self.interpolation_scale)
            x = x + pos.to(x.dtype)
        t_emb = self.t_embedder(t)
        t6 = self.t_block(t_emb)
        caption = self.y_embedder(self.null_condition(x.shape[0], x.device) if cond is None else cond)
        caption = self.attention_y_norm(caption)
        for block in self.blocks:
            x = block(x, t6, caption, mask, h, w)
        x = self.final_layer(x, t_emb)
        return unpatchify(x, h, w, self.patch_size, self.out_channels)

    def null_condition(self, batch: int, device: torch.device | str | None = None) -> Tensor:
        """The fixed null caption (the unconditional half of a CFG batch, caption dropout)."""
        return self.y_embedder.y_embedding[None].expand(batch, -1, -1).to(device)


def _inputs(image_size: int, caption_tokens: int = 300, caption_channels: int = 2304) -> InputSpec:
    return InputSpec(
        in_channels=32,
        latent=True,
        image_size=image_size,
        conditioning="text",
        caption_tokens=caption_tokens,
        caption_channels=caption_channels,
        latent_factor=DC_AE_FACTOR,
    )


_SANA_600M = dict(hidden_size=1152, depth=28, cross_heads=16)
_SANA_1600M = dict(hidden_size=2240, depth=20, cross_heads=20)
_HUB = "https://huggingface.co/Efficient-Large-Model/"
_DIFFUSERS_NOTE = "diffusers layout: pass the folder (or its transformer/) as pretrained="
_ORIGINAL_NOTE = "NVlabs/Sana layout (state dict under state_dict): pass the .pth file as pretrained="

register(
    "sana-600m",
    family="sana",
    builder=Sana,
    config=dict(_SANA_600M, input_size=32),
    inputs=_inputs(1024),
    paper=PaperInfo(
        "Xie et al. 2024 (SANA), Sana-0.6B at 1024 px",
        "Table 6 (arXiv 2410.10629, ar5iv rendering)",
        params_m=590,
        note="the paper's Table 6 gives 590 M (width 1152, depth 28, FFN 2880, 36 heads; Table 7: 0.6 B); ours "
        "591.7 M (+0.3%), the same as diffusers' SanaTransformer2DModel of that config",
    ),
    weights=(
        Published(_HUB + "Sana_600M_1024px_diffusers", "transformer/", _DIFFUSERS_NOTE),
        Published(_HUB + "Sana_600M_1024px", "checkpoints/Sana_600M_1024px_MultiLing.pth", _ORIGINAL_NOTE),
    ),
)
register(
    "sana-1600m",
    family="sana",
    builder=Sana,
    config=dict(_SANA_1600M, input_size=32),
    inputs=_inputs(1024),
    paper=PaperInfo(
        "Xie et al. 2024 (SANA), Sana-1.6B at 1024 px",
        "Table 6 (arXiv 2410.10629, ar5iv rendering)",
        params_m=1604,
        note="the paper's Table 6 gives 1604 M (width 2240, depth 20, FFN 5600, 70 heads; Table 7: 1.6 B); ours "
        "1604.5 M, the same as diffusers' SanaTransformer2DModel defaults",
    ),
    weights=(
        Published(_HUB + "Sana_1600M_1024px_diffusers", "transformer/", _DIFFUSERS_NOTE),
        Published(
            _HUB + "Sana_1600M_1024px_BF16_diffusers",
            "transformer/",
            _DIFFUSERS_NOTE + " (the bf16 variant: diffusion_pytorch_model.bf16.safetensors)",
        ),
        Published(_HUB + "Sana_1600M_1024px", "checkpoints/Sana_1600M_1024px.pth", _ORIGINAL_NOTE),
    ),
)
register(
    "sana-1600m-4k",
    family="sana",
    builder=Sana,
    config=dict(_SANA_1600M, input_size=128, interpolation_scale=2.0),
    inputs=_inputs(4096),
    paper=PaperInfo(
        "Xie et al. 2024 (SANA), Sana-1.6B at 4096 px",
        "Table 6 (arXiv 2410.10629); diffusers' convert_sana_to_diffusers.py (sample_size 128, interpolation_scale 2)",
        params_m=1604,
        note="Sana-1.6B's 1604 M (the fixed sin-cos table adds no parameters)",
    ),
    weights=(
        Published(
            _HUB + "Sana_1600M_4Kpx_BF16_diffusers",
            "transformer/",
            _DIFFUSERS_NOTE + " (the bf16 variant: diffusion_pytorch_model.bf16.safetensors)",
        ),
        Published(_HUB + "Sana_1600M_4Kpx_BF16", "checkpoints/Sana_1600M_4Kpx_BF16.pth", _ORIGINAL_NOTE),
    ),
)
register(
    "sana-tiny",
    family="sana",
    builder=Sana,
    config=dict(
        input_size=8, hidden_size=64, depth=2, head_dim=16, cross_heads=4, caption_channels=32, caption_tokens=6
    ),
    inputs=_inputs(256, caption_tokens=6, caption_channels=32),
    tags=("tiny",),
)

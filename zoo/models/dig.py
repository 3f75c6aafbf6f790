"""DiG: Diffusion Gated Linear Attention Transformers (Zhu et al. 2024, "DiG: Scalable and Efficient Diffusion
Models with Gated Linear Attention", CVPR 2025; code hustvl/DiG ``models_dig.py`` / ``module_dig.py``).

DiT's layout (patch embedding + fixed sin-cos positions, timestep and label embedders summed into c,
adaLN-Zero blocks, DiT's final layer) with the self-attention replaced by gated linear attention (GLA, Yang
et al. 2023, fla's ``GatedLinearAttention`` layer as DiG's ``module_dig.py`` has it). Read top to bottom:

- GLA layer: q, k (key_dim = d / 2, ``expand_k=0.5``), v and the output gate g (value_dim = d) by Linears
  without bias; the log-gate from a low-rank Linear(d, 16) -> Linear(16, key_dim, bias),
  ``logsigmoid(.) / 16`` (``gate_logit_normalizer``); ``zoo.ops.gated_linear_attention`` per head (scale
  head_k_dim ** -0.5, fla's default); then per head an RMSNorm (learned weight, eps 1e-6) times swish(g)
  (fla's ``FusedRMSNormSwishGate``), and ``o_proj`` without bias;
- MLP: fla's ``GLAMLP``, SwiGLU: ``gate_proj`` d -> 2h (no bias), silu(gate) * value, ``down_proj`` h -> d (no
  bias), h = 2/3 * 4d rounded up to a multiple of 256 (1024 / 2048 / 2816 / 3072 for S / B / L / XL);
- block (``SeqDiGBlock``): x += gate1 * GLA(modulate(LN(x))); x += gate2 * MLP(modulate(LN(x))), LayerNorms
  without affine, eps 1e-6; then (``if_dw_conv``, not in-block) a 3x3 depthwise conv with bias over the token
  grid, *replacing* x (no residual), initialised to the identity (centre tap 1);
- bidirectional arrangement (``bid_mode='layer'``): after every block the token sequence is reversed, so
  blocks alternate between scanning forward and backward; with ``if_quad_dir`` the grid is also transposed
  after every odd block, so the four directions (row-major / column-major, forward / backward) rotate;
- U-shaped variant (``if_skip``, ``long_skip`` here): blocks i > depth // 2 take a long skip popped from the
  outputs of blocks i < depth // 2 - 1 (LIFO), merged by Linear(2d -> d) on the concatenation, no residual.

Configurations: the code's ``DiG_models`` (all ``bid-layer-dwconv-qdir``): S/2 12 x 384, 6 heads; B/2 12 x 768,
12 heads; L/2 24 x 1024, 16 heads; XL/2 28 x 1152, 18 heads (``head18``), patch 2, ImageNet 256 latents. The
``-u`` entries are the code's ``-skip`` variants (S/2 and XL/2).

Our choices, where the code does not carry over:
- any h x w grid: the sin-cos table is computed for the actual grid; the depthwise conv and the transposes
  follow the grid the tokens are currently arranged in (the code assumes a square grid, ``edge_len``); after
  the last block the tokens are put back in row-major order before the final layer (for the paper depths,
  12 / 24 / 28, the flips and transposes already cancel, as the code relies on);
- no label dropout in the model (the trainer drops labels; the contract's null label is ``num_classes``);
- the code's init is kept: Xavier linears (GLA's own with gain 2 ** -2.5, which DiG's init skips since fla
  marks them initialised), DiT's init for the embedders, zeroed adaLN and output layers, identity depthwise
  convs; long-skip Linears Xavier (the code's ``-skip``; ``zero_init_skip`` gives ``-skipzero``'s identity);
- the reference kernels: the code runs fla's ``fused_chunk_gla``; ours is the same recurrence (tested
  against fla's ``naive_recurrent_gla`` in tests/test_dig.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo import ops
from zoo.entries import InputSpec, PaperInfo, register
from zoo.layers.embeddings import LabelEmbedder, TimestepEmbedder, modulate
from zoo.layers.patch import PatchEmbed, token_grid, unpatchify
from zoo.layers.pos_embed import sincos_2d_like
from zoo.models.base import Backbone
from zoo.models.dit import FinalLayer

GATE_LOW_RANK = 16  # fla GatedLinearAttention gate_low_rank_dim
GATE_NORMALIZER = 16  # gate_logit_normalizer
NORM_EPS = 1e-6  # DiG's GLAConfig rms_norm_eps


class GatedLinearAttention(nn.Module):
    """fla's GLA layer as DiG configures it (see module doc); parameter names are fla's."""

    def __init__(self, dim: int, num_heads: int, expand_k: float = 0.5, expand_v: float = 1.0):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim, self.value_dim = int(dim * expand_k), int(dim * expand_v)
        if self.key_dim % num_heads or self.value_dim % num_heads:
            raise ValueError(f"GLA: key dim {self.key_dim} and value dim {self.value_dim} must divide by {num_heads}")
        self.head_v_dim = self.value_dim // num_heads
        self.q_proj = nn.Linear(dim, self.key_dim, bias=False)
        self.k_proj = nn.Linear(dim, self.key_dim, bias=False)
        self.v_proj = nn.Linear(dim, self.value_dim, bias=False)
        self.g_proj = nn.Linear(dim, self.value_dim, bias=False)
        self.gk_proj = nn.Sequential(
            nn.Linear(dim, GATE_LOW_RANK, bias=False), nn.Linear(GATE_LOW_RANK, self.key_dim, bias=True)
        )
        self.o_proj = nn.Linear(self.value_dim, dim, bias=False)
        self.g_norm_swish_gate = nn.Module()  # fla's FusedRMSNormSwishGate: only a weight
        self.g_norm_swish_gate.weight = nn.Parameter(torch.ones(self.head_v_dim))
        for module in self.modules():  # fla's own init, which DiG's init leaves alone
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, gain=2**-2.5)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
                module._is_gla_initialized = True

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(b, n, self.num_heads, -1).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        gk = heads(F.logsigmoid(self.gk_proj(x)) / GATE_NORMALIZER)
        o = ops.gated_linear_attention(q, k, v, gk).transpose(1, 2)  # (b, n, heads, head_v_dim)
        o = o.float() * torch.rsqrt(o.float().pow(2).mean(-1, keepdim=True) + NORM_EPS)
        o = (o * self.g_norm_swish_gate.weight).to(x.dtype) * F.silu(self.g_proj(x).view_as(o))
        return self.o_proj(o.reshape(b, n, self.value_dim))


class SwiGLUMlp(nn.Module):
    """fla's ``GLAMLP``: down(silu(gate) * value), [gate | value] = gate_proj(x); no biases."""

    def __init__(self, dim: int, hidden_ratio: int = 4):
        super().__init__()
        hidden = int(dim * hidden_ratio * 2 / 3)
        self.intermediate_size = 256 * ((hidden + 255) // 256)
        self.gate_proj = nn.Linear(dim, 2 * self.intermediate_size, bias=False)
        self.down_proj = nn.Linear(self.intermediate_size, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.gate_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * value)


class DiGBlock(nn.Module):
    """adaLN-Zero block around GLA and SwiGLU, then the depthwise conv over the current grid (see module doc)."""

    def __init__(self, hidden_size: int, num_heads: int, dw_conv: bool = True, skip: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = GatedLinearAttention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = SwiGLUMlp(hidden_size)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))
        self.dw_conv = nn.Conv2d(hidden_size, hidden_size, 3, padding=1, groups=hidden_size) if dw_conv else None
        self.skip_linear = nn.Linear(2 * hidden_size, hidden_size) if skip else None

    def forward(self, x: Tensor, c: Tensor, grid: tuple[int, int], skip: Tensor | None = None) -> Tensor:
        if self.skip_linear is not None and skip is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        if self.dw_conv is not None:
            b, n, d = x.shape
            x = self.dw_conv(x.transpose(1, 2).reshape(b, d, *grid)).flatten(2).transpose(1, 2)
        return x


class DiG(Backbone):
    """Class-conditional latent diffusion model with GLA blocks; ``model(x, t, y)`` -> noise (and sigma)."""

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 18,
        num_classes: int = 1000,
        learn_sigma: bool = True,
        dw_conv: bool = True,
        quad_dir: bool = True,
        long_skip: bool = False,
        zero_init_skip: bool = False,
    ):
        super().__init__(
            input_size=input_size,
            in_channels=in_channels,
            patch_size=patch_size,
            num_classes=num_classes,
            learn_sigma=learn_sigma,
        )
        self.quad_dir, self.long_skip = quad_dir, long_skip
        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        self.blocks = nn.ModuleList(
            DiGBlock(hidden_size, num_heads, dw_conv, skip=long_skip and i > depth // 2) for i in range(depth)
        )
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights(zero_init_skip)

    def initialize_weights(self, zero_init_skip: bool = False) -> None:
        """DiG's init (DiT's plus identity depthwise convs; GLA's Linears keep their own)."""
        for module in self.modules():
            if isinstance(module, nn.Linear) and not getattr(module, "_is_gla_initialized", False):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            if block.dw_conv is not None:
                with torch.no_grad():
                    block.dw_conv.weight.zero_()
                    block.dw_conv.weight[:, :, 1, 1] = 1.0
                    block.dw_conv.bias.zero_()
            if block.skip_linear is not None and zero_init_skip:
                with torch.no_grad():
                    block.skip_linear.weight.zero_()
                    block.skip_linear.weight[:, : block.skip_linear.out_features].fill_diagonal_(1.0)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) latents, t (B,) timesteps, cond (B,) labels (``num_classes`` = null) -> (B, out, H, W)."""
        y = self.null_condition(x.shape[0], x.device) if cond is None else cond
        h, w = token_grid(x.shape[-2], x.shape[-1], self.patch_size, "latent")
        x = self.x_embedder(x) + sincos_2d_like(x, self.x_embedder.proj.out_channels, h, w)
        c = self.t_embedder(t) + self.y_embedder(y)
        grid, flipped, transposed = (h, w), False, False  # how the tokens are arranged now
        depth, skips = len(self.blocks), []
        for i, block in enumerate(self.blocks):
            skip = skips.pop() if self.long_skip and i > depth // 2 and skips else None
            x = block(x, c, grid, skip).flip(1)  # bid_mode 'layer': the next block scans the other way
            flipped = not flipped
            if self.quad_dir and i % 2 == 1:
                x, grid, transposed = _transpose(x, grid), grid[::-1], not transposed
            if self.long_skip and i < depth // 2 - 1:
                skips.append(x)
        if flipped:  # back to row-major (a no-op for the paper depths)
            x = x.flip(1)
        if transposed:
            x = _transpose(x, grid)
        x = self.final_layer(x, c)
        return unpatchify(x, h, w, self.patch_size, self.out_channels)


def _transpose(x: Tensor, grid: tuple[int, int]) -> Tensor:
    """Tokens of a row-major (rows, cols) grid -> the row-major (cols, rows) grid of its transpose."""
    b, _, d = x.shape
    return x.view(b, grid[0], grid[1], d).transpose(1, 2).reshape(b, -1, d)


# hustvl/DiG models_dig.py DiG_models (bid-layer-dwconv-qdir): (depth, width, heads)
_SIZES = {"s": (12, 384, 6), "b": (12, 768, 12), "l": (24, 1024, 16), "xl": (28, 1152, 18)}
_IMAGENET_LATENT = InputSpec(in_channels=4, latent=True, image_size=256, conditioning="class", num_classes=1000)
_PAPER = "Zhu et al. 2024 (DiG)"
_NOTE = (
    "configuration from hustvl/DiG models_dig.py ({code}); no parameter count is recorded: none was found for "
    "the paper (arXiv 2405.18428; hustvl/DiG's README gives none). Its Gflops at 256 px, as others quote them "
    "(DiG-S/2 4.30, DiG-XL/2 89.40), are 0.76x / 0.77x our counted MACs (5.68 / 116.0; DiT-XL/2's 118.6 "
    "matches ours), so they are not entered either: the gap, about 2.6 d^2 MACs per token and block besides the "
    "GLA op itself, is not explained"
)

for _size, (_depth, _hidden, _heads) in _SIZES.items():
    register(
        f"dig-{_size}/2",
        family="dig",
        builder=DiG,
        config=dict(patch_size=2, hidden_size=_hidden, depth=_depth, num_heads=_heads),
        inputs=_IMAGENET_LATENT,
        paper=PaperInfo(
            _PAPER,
            "configs of the official code",
            note=_NOTE.format(
                code=f"DiG-{_size.upper()}/2-bid-layer-dwconv-qdir" + ("-head18" if _size == "xl" else "")
            ),
        ),
    )
for _size in ("s", "xl"):
    _depth, _hidden, _heads = _SIZES[_size]
    register(
        f"dig-{_size}/2-u",
        family="dig",
        builder=DiG,
        config=dict(patch_size=2, hidden_size=_hidden, depth=_depth, num_heads=_heads, long_skip=True),
        inputs=_IMAGENET_LATENT,
        paper=PaperInfo(
            _PAPER,
            "configs of the official code (U-shaped)",
            note=_NOTE.format(
                code=f"DiG-{_size.upper()}/2-bid-layer-dwconv-qdir" + ("-head18" if _size == "xl" else "") + "-skip"
            ),
        ),
    )

register(
    "dig-tiny",
    family="dig",
    builder=DiG,
    config=dict(input_size=8, patch_size=2, hidden_size=64, depth=2, num_heads=4, num_classes=10),
    inputs=InputSpec(in_channels=4, latent=True, image_size=64, conditioning="class", num_classes=10),
    tags=("tiny",),
)

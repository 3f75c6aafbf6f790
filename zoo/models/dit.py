"""DiT: Scalable Diffusion Models with Transformers (Peebles & Xie, ICCV 2023).

Read top to bottom: embeddings -> adaLN-Zero blocks -> final layer -> the model -> the registry entries.
Parameter names follow facebookresearch/DiT ``models.py``: its checkpoints (``DiT-XL-2-256x256.pt``,
``DiT-XL-2-512x512.pt``) load with ``zoo.create_model("dit-xl/2", pretrained=PATH)``. Their ``pos_embed`` (a
saved, fixed sin-cos table) is checked against ours and dropped: the table is recomputed for whatever latent
grid comes in (``zoo/checkpoints/dit.py``; tested on files in the official layout, ``tests/test_weights.py``).

Deliberate differences from the official code, each a choice the paper leaves open:
- Classifier-free guidance (in the sampler, ``ablations.samplers.guided``, for every model) guides all
  latent channels (the official code guides the first three, kept there for JAX reproducibility).
- Non-square and other-size latents work: the sin-cos embedding is computed for the actual h x w grid.
"""

from __future__ import annotations

from torch import Tensor, nn

from zoo.entries import InputSpec, PaperInfo, Published, register
from zoo.layers.attention import SelfAttention
from zoo.layers.embeddings import LabelEmbedder, TimestepEmbedder, gelu_tanh, modulate
from zoo.layers.mlp import Mlp
from zoo.layers.patch import PatchEmbed, token_grid, unpatchify
from zoo.layers.pos_embed import sincos_2d_like
from zoo.models.base import Backbone


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning (DiT Sec. 3.2, 'adaLN-Zero block')."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden_size, num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), act_layer=gelu_tanh)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """LayerNorm modulated by (shift, scale) from the conditioning, then a linear map to patch pixels."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(Backbone):
    """Class-conditional latent diffusion transformer; ``model(x, t, y)`` -> noise (and sigma) prediction.

    ``input_size`` is the training latent size (32 for 256 px); any latent size divisible by the patch
    works at run time.
    """

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        learn_sigma: bool = True,
    ):
        super().__init__(
            input_size=input_size,
            in_channels=in_channels,
            patch_size=patch_size,
            num_classes=num_classes,
            learn_sigma=learn_sigma,
        )
        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init: Xavier linears, N(0, 0.02) embedders, zeroed adaLN-Zero and output layers."""

        def basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(basic_init)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # patch embedding initialised like a linear
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:  # adaLN-Zero: every residual branch starts as the identity
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """x (B, C, H, W) latents, t (B,) timesteps, cond (B,) labels (``num_classes`` = null) -> (B, out, H, W)."""
        y = self.null_condition(x.shape[0], x.device) if cond is None else cond
        h, w = token_grid(x.shape[-2], x.shape[-1], self.patch_size, "latent")
        pos = sincos_2d_like(x, self.x_embedder.proj.out_channels, h, w)
        x = self.x_embedder(x) + pos
        c = self.t_embedder(t) + self.y_embedder(y)
        for block in self.blocks:
            x = block(x, c)
        x = self.final_layer(x, c)
        return unpatchify(x, h, w, self.patch_size, self.out_channels)


# Configurations of DiT Table 1 x patch sizes 2/4/8. Reported GFLOPs (forward MACs, 256 px) are Table 4's;
# parameter counts are the paper's for /2 (and XL/4).
_SIZES = {"s": (12, 384, 6), "b": (12, 768, 12), "l": (24, 1024, 16), "xl": (28, 1152, 16)}
_PARAMS_M = {("s", 2): 33, ("b", 2): 130, ("l", 2): 458, ("xl", 2): 675, ("xl", 4): 675}
_GFLOPS = {
    ("s", 8): 0.36,
    ("s", 4): 1.41,
    ("s", 2): 6.06,
    ("b", 8): 1.42,
    ("b", 4): 5.56,
    ("b", 2): 23.01,
    ("l", 8): 5.01,
    ("l", 4): 19.70,
    ("l", 2): 80.71,
    ("xl", 8): 7.39,
    ("xl", 4): 29.05,
    ("xl", 2): 118.64,
}
_IMAGENET_LATENT = InputSpec(in_channels=4, latent=True, image_size=256, conditioning="class", num_classes=1000)
_WEIGHTS = {
    ("xl", 2): (
        Published(
            "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt",
            "DiT-XL-2-256x256.pt",
            "facebookresearch/DiT download.py; EMA weights, a plain state dict",
        ),
        Published(
            "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-512x512.pt",
            "DiT-XL-2-512x512.pt",
            "512 px model: also pass input_size=64",
        ),
    ),
}

for (_size, (_depth, _hidden, _heads)), _patch in ((s, p) for s in _SIZES.items() for p in (2, 4, 8)):
    register(
        f"dit-{_size}/{_patch}",
        family="dit",
        builder=DiT,
        config=dict(patch_size=_patch, hidden_size=_hidden, depth=_depth, num_heads=_heads),
        inputs=_IMAGENET_LATENT,
        paper=PaperInfo(
            "Peebles & Xie 2023 (DiT)",
            "Table 1 (configs), Table 4 (GFLOPs)",
            params_m=_PARAMS_M.get((_size, _patch)),
            gflops=_GFLOPS[(_size, _patch)],
            gflops_image_size=256,
        ),
        weights=_WEIGHTS.get((_size, _patch), ()),
    )

register(
    "dit-tiny",
    family="dit",
    builder=DiT,
    config=dict(input_size=8, patch_size=2, hidden_size=64, depth=2, num_heads=4, num_classes=10),
    inputs=InputSpec(in_channels=4, latent=True, image_size=64, conditioning="class", num_classes=10),
    tags=("tiny",),
)

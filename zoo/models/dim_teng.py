"""DiM: Diffusion Mamba for Efficient High-Resolution Image Synthesis (Teng et al., 2024).

Read top to bottom: schedules -> block -> model -> registry entries. The paper's Sec. 3.2 designs, each a
constructor switch (the rows of its Tables 4 and 6):

- ``scan_patterns``: the scan orders the blocks switch between (paper numbering, Fig. 2: 1 = row-major,
  2 = reversed row-major, 3 = column-major, 4 = reversed column-major). ``"1234"`` is the full model, ``"12"``
  and ``"1"`` Table 6's ablations.
- ``pad_tokens``: learnable end-of-line tokens after every row and column (``zoo.layers.padding``), and the
  three "split" tokens after the prefix (the code builds both only with padding on).
- ``local_conv``: a 3x3 depthwise conv after the patch embedding and one before the output layer.
- ``long_skip``: U-Net style skips from the first half of the blocks to the second half (last in, first out).
- ``final_conv`` (off, as in DiM; WD-Mamba turns it on): a 3x3 conv on the unpatchified output.

The block layout is data, passed to the constructor: ``block_scans`` (the pattern of every block, a string
of digits) and ``skips`` (which earlier blocks' outputs each merging block receives). By default they are
the official code's (tyshiwo1/DiM-DiffusionMamba, ``adapter_attn4mamba.py`` and ``mamba_2d.py``): block 0
uses pattern 1 and sits outside the U; the K encoder blocks cycle forward through the patterns starting at
the second, the K decoder blocks cycle backward and the last block returns to pattern 1 (depth 25 with
"1234": ``1234123412341432143214321``); decoder block ``2K + 1 - j`` merges encoder block ``j``. The paper's
Sec. 3.2 reads as a plain cycle (``1234 1234 ...``), which ``cyclic_block_scans`` gives for a variant;
WD-Mamba passes its W-Net layout.

Choices taken from the official code where the paper is silent or vague:

- Sequence: [time token, class token (models with a label table), 3 learned "split" tokens, padded grid].
  The time token is the raw sinusoid of width d (U-ViT's convention, which the paper cites for its tokens;
  the paper text says "fully-connected layers"), the class token a table of ``num_classes + 1`` rows (last
  row = null class for CFG; without labels every sample gets the null class, as the code does: its
  unconditional CIFAR-10 model keeps a 10-class table). Prefix tokens stay in front in every scan order.
- A learned positional embedding (zeros at init) over prefix + grid; for another grid size its patch part
  is bilinearly resized. Mamba-1 mixers with d_state 16, d_conv 3, expand 2, no in/out projection bias;
  three padding tokens per line (= d_conv, so a line's first token never sees the previous line through
  the conv), laid out as the code's ``lateral`` (256 px, CIFAR-10) or ``rho_pad`` (512 px) schedule.
- Conditioning also through adaLN-single (PixArt): a global (shift, scale, gate) from the timestep MLP plus a
  second class table, added to a per-block learned (3, d) table; RMSNorm; residual x + (1 + gate) * mixer.
  No MLP in the blocks. The final layer: RMSNorm modulated by (shift, scale) from the time sinusoid plus the
  class token, then Linear to patch pixels. Noise prediction only.
- Skip merge at the entry of a decoder block: Linear(2d -> d) on the concatenation for d <= 512, two d x d
  Linears summed for larger widths.

Our own choice: the residual stream is always kept in row-major order on the padded grid; each block
permutes its normalised input into the block's scan order and its mixer output back. The official code
permutes the residual stream itself from block to block; every operation outside the mixer is token-wise,
so both compute the same function, and skips merge token-wise for any schedule. Parameter counts follow
the code's configs: 50.6 / 386.1 / 862.4 M for S / L / H against the paper's rounded 50 / 380 / 860 M.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from zoo.entries import InputSpec, PaperInfo, Published, register
from zoo.errors import BadOption
from zoo.layers.embeddings import TimestepEmbedder, modulate, timestep_embedding
from zoo.layers.mamba import Mamba
from zoo.layers.padding import EndOfLinePadding
from zoo.layers.patch import PatchEmbed, token_grid, unpatchify
from zoo.layers.pos_embed import resize_learned
from zoo.layers.scan_order import inverse_permutation, permute_tokens, scan_permutation
from zoo.models.base import Backbone, noise_only

SCAN_PATTERNS = {"1": "row", "2": "row_reversed", "3": "col", "4": "col_reversed"}  # paper Fig. 2 numbering
NUM_SPLIT_TOKENS = 3
Skips = dict[int, tuple[int, ...]]  # merging block -> the earlier blocks whose outputs it receives (summed)


def official_block_scans(patterns: str, depth: int) -> str:
    """The official code's schedule (``_init_scan_patterns`` with ``encoder_start_blk_id=1``): block 0 on the
    first pattern; encoder blocks step forward through the patterns, decoder blocks step backward (the middle
    block of an even-length U repeating its neighbour's step back), the last block back on the first pattern."""
    k, encoder_start = len(patterns), 1
    middle = encoder_start + (depth - encoder_start) // 2
    step, scans = 0, []
    for i in range(depth):
        if i < encoder_start or i == depth - 1:
            step = 0
        elif i < middle:
            step = (step + 1) % k
        elif i > middle or (depth - encoder_start) % 2 == 0:
            step = (step - 1) % k
        scans.append(patterns[step])
    return "".join(scans)


def cyclic_block_scans(patterns: str, depth: int) -> str:
    """Block i on pattern ``i % len(patterns)``: the plain cycle the paper's Sec. 3.2 describes."""
    return "".join(patterns[i % len(patterns)] for i in range(depth))


def u_net_skips(depth: int) -> Skips:
    """The official U: block 0 outside it, blocks 1..K keep their outputs, block 2K + 1 - j merges block j."""
    if depth % 2 == 0:
        raise BadOption(f"depth must be odd (1 + K encoder + K decoder blocks), got {depth}")
    return {depth - j: (j,) for j in range(1, (depth - 1) // 2 + 1)}


class DiMBlock(nn.Module):
    """RMSNorm -> adaLN-single modulation -> Mamba in this block's scan order -> gated residual."""

    def __init__(self, dim: int, skip: bool, mamba_kwargs: dict):
        super().__init__()
        # long skip merge (code: concat + Linear for d <= 512, two Linears summed above)
        self.skip_proj = nn.Linear(2 * dim, dim) if skip and dim <= 512 else None
        self.skip_proj_x = nn.Linear(dim, dim) if skip and dim > 512 else None
        self.skip_proj_skip = nn.Linear(dim, dim) if skip and dim > 512 else None
        self.norm = nn.RMSNorm(dim, eps=1e-5)
        self.mixer = Mamba(dim, **mamba_kwargs)
        self.scale_shift_table = nn.Parameter(torch.randn(3, dim) / dim**0.5)  # per-block part of adaLN-single

    def merge_skip(self, x: Tensor, skip: Tensor) -> Tensor:
        if self.skip_proj is not None:
            return self.skip_proj(torch.cat([x, skip], dim=-1))
        return self.skip_proj_x(x) + self.skip_proj_skip(skip)

    def forward(self, x: Tensor, adaln: Tensor, prefix: int, perm: Tensor | None) -> Tensor:
        """x: (B, prefix + L, d) in canonical order; adaln: (B, 3d) global adaLN-single (shift, scale, gate);
        perm: scan order of the grid."""
        shift, scale, gate = (self.scale_shift_table[None] + adaln.view(-1, 3, x.shape[-1])).unbind(1)
        h = modulate(self.norm(x), shift, scale)
        if perm is not None:  # prefix tokens stay in front in every order
            h = permute_tokens(h, perm, prefix)
        out = self.mixer(h)
        if perm is not None:
            out = permute_tokens(out, inverse_permutation(perm), prefix)
        return x + (1 + gate.unsqueeze(1)) * out


class DiMTeng(Backbone):
    """``model(x, t, cond=None)`` -> noise prediction of x's shape (labels, or None: the null class)."""

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1536,
        depth: int = 49,
        num_classes: int = 1000,
        scan_patterns: str = "1234",
        block_scans: str | None = None,
        skips: Skips | None = None,
        pad_tokens: bool = True,
        pad_layout: str = "lateral",
        local_conv: bool = True,
        long_skip: bool = True,
        final_conv: bool = False,
        d_state: int = 16,
        d_conv: int = 3,
        expand: int = 2,
        learn_sigma: bool = False,
    ):
        noise_only(learn_sigma, "DiM (Teng et al.)")
        super().__init__(input_size=input_size, in_channels=in_channels, patch_size=patch_size, num_classes=num_classes)
        for name, value in (("scan_patterns", scan_patterns), ("block_scans", block_scans or "1")):
            if not value or set(value) - set(SCAN_PATTERNS):
                raise BadOption(f"{name} is a string of pattern numbers 1-4 (e.g. '1234'), got {value!r}")
        block_scans = block_scans or official_block_scans(scan_patterns, depth)
        if len(block_scans) != depth:
            raise BadOption(f"block_scans gives {len(block_scans)} patterns for {depth} blocks")
        skips = (u_net_skips(depth) if skips is None else dict(skips)) if long_skip else {}
        if any(not 0 <= j < i for i, sources in skips.items() for j in sources):
            raise BadOption(f"skips must map a block to earlier blocks, got {skips}")
        d = hidden_size
        self.conditional = num_classes > 0  # has a label table (may still be trained without labels)
        self.block_scans = [SCAN_PATTERNS[p] for p in block_scans]
        self.skips = skips
        self.grid = input_size // patch_size
        # the split tokens are padding tokens too: the code builds them only with padding on
        # (adapter_attn4mamba.py, pad_token_dec_split), so Table 4's no-padding row has neither
        num_split = NUM_SPLIT_TOKENS if pad_tokens else 0
        self.prefix = 1 + int(self.conditional) + num_split

        self.x_embedder = PatchEmbed(patch_size, in_channels, d, bias=True)
        self.label_token = nn.Embedding(num_classes + 1, d) if self.conditional else None
        self.split_tokens = nn.Parameter(torch.randn(num_split, d) * 0.02) if pad_tokens else None
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + int(self.conditional) + self.grid**2, d))
        # Sec. 3.2 "lightweight local feature enhancement": 3x3 depthwise convs at input and output
        self.first_conv = nn.Conv2d(d, d, 3, padding=1, groups=d) if local_conv else None
        self.last_conv = nn.Conv2d(d, d, 3, padding=1, groups=d) if local_conv else None
        # Sec. 3.2 "learnable padding token": end-of-line tokens, as many as the conv width
        self.padding = EndOfLinePadding(d, num_tokens=d_conv, layout=pad_layout) if pad_tokens else None

        # adaLN-single (code): global (shift, scale, gate) from time MLP + a second class table
        self.t_embedder = TimestepEmbedder(d)
        self.label_adaln = nn.Embedding(num_classes + 1, d) if self.conditional else None
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 3 * d))

        mamba_kwargs = dict(d_state=d_state, d_conv=d_conv, expand=expand)
        self.blocks = nn.ModuleList(DiMBlock(d, i in skips, mamba_kwargs) for i in range(depth))
        self.final_conv = nn.Conv2d(in_channels, in_channels, 3, padding=1) if final_conv else None

        self.norm_final = nn.RMSNorm(d, eps=1e-5)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.linear_out = nn.Linear(d, patch_size * patch_size * in_channels)
        self._init_weights(depth)

    def _init_weights(self, depth: int) -> None:
        """The code's Mamba language-model init: zero Linear biases (except dt), N(0, 0.02) embeddings,
        out_proj re-drawn Kaiming-uniform and scaled by 1/sqrt(depth)."""
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
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)

    def run_blocks(self, x: Tensor, adaln: Tensor, perms: dict[str, Tensor]) -> Tensor:
        """Every block in turn, in its scan order; a block in ``skips`` first merges the sum of its sources'
        outputs (kept only while a later block still needs them)."""
        last_use = {j: i for i, sources in self.skips.items() for j in sources}
        kept: dict[int, Tensor] = {}
        for i, (block, order) in enumerate(zip(self.blocks, self.block_scans, strict=True)):
            if i in self.skips:
                first, *rest = (kept.pop(j) if last_use[j] == i else kept[j] for j in self.skips[i])
                x = block.merge_skip(x, sum(rest, first))
            x = block(x, adaln, self.prefix, None if order == "row" else perms[order])
            if i in last_use:
                kept[i] = x
        return x

    def _depthwise(self, conv: nn.Conv2d | None, x: Tensor, h: int, w: int) -> Tensor:
        if conv is None:
            return x
        grid = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)
        return conv(grid).flatten(2).transpose(1, 2)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        h, w = token_grid(x.shape[-2], x.shape[-1], self.patch_size, "input")
        b, d = x.shape[0], self.pos_embed.shape[-1]
        # no labels: the null class for all (the code's unconditional use)
        y = self.null_condition(b, x.device) if cond is None else cond
        time_token = timestep_embedding(t, d).to(x.dtype)
        tokens = [time_token[:, None]]
        if self.conditional:
            tokens.append(self.label_token(y)[:, None])
        seq = torch.cat([*tokens, self.x_embedder(x)], dim=1) + resize_learned(
            self.pos_embed, len(tokens), self.grid, h, w
        )
        n_cond = len(tokens)
        prefix, grid = seq[:, :n_cond], seq[:, n_cond:]
        grid = self._depthwise(self.first_conv, grid, h, w)
        gh, gw = (h, w) if self.padding is None else self.padding.padded_size(h, w)
        if self.padding is not None:
            grid = self.padding.pad(grid, h, w)
        split = [] if self.split_tokens is None else [self.split_tokens.to(x.dtype)[None].expand(b, -1, -1)]
        x_seq = torch.cat([prefix, *split, grid], dim=1)

        c = self.t_embedder(t)
        if self.conditional:
            c = c + self.label_adaln(y)
        adaln = self.t_block(c)

        perms = {order: scan_permutation(gh, gw, order).to(x.device) for order in set(self.block_scans)}
        x_seq = self.run_blocks(x_seq, adaln, perms)

        grid = x_seq[:, self.prefix :]
        if self.padding is not None:
            grid = self.padding.unpad(grid, h, w)
        grid = self._depthwise(self.last_conv, grid, h, w)
        shift, scale = self.final_modulation(time_token + (tokens[1][:, 0] if self.conditional else 0)).chunk(2, dim=1)
        out = self.linear_out(modulate(self.norm_final(grid), shift, scale))
        out = unpatchify(out, h, w, self.patch_size, self.in_channels)
        return out if self.final_conv is None else self.final_conv(out)


_PAPER = "Teng et al. 2024 (DiM)"
_REVISION = 1  # see ModelEntry.revision
_IMAGENET = InputSpec(in_channels=4, latent=True, image_size=256, conditioning="class", num_classes=1000)
_TABLE1 = "Table 1 (GFLOPs at a 32x32 input, batch 1)"
_ROUNDED = 0.02  # the paper rounds to 50 / 380 / 860 M; the official configs give 50.6 / 386.1 / 862.4 M
_GFLOPS_NOTE = (
    "our MAC count is 1.49x the paper's for S, L and H alike (18.3 / 140 / 312 G); without the padding "
    "tokens 13.0 / 99.9 / 222.5 G: the paper's count seems to leave out the padding tokens and a little more"
)
register(
    "dim-teng-s/2-cifar10",
    family="dim-teng",
    revision=_REVISION,
    builder=DiMTeng,
    # configs/cifar10_S_DiM.py: trained unconditionally (mode 'uncond') with a 10-class label table kept
    config=dict(input_size=32, patch_size=2, in_channels=3, hidden_size=512, depth=25, num_classes=10),
    inputs=InputSpec(in_channels=3, latent=False, image_size=32, conditioning="none"),
    paper=PaperInfo(
        _PAPER, _TABLE1, params_m=50, gflops=12, gflops_image_size=32, note=_GFLOPS_NOTE, params_tolerance=_ROUNDED
    ),
)
register(
    "dim-teng-l/2",
    family="dim-teng",
    revision=_REVISION,
    builder=DiMTeng,
    config=dict(hidden_size=1024, depth=49),
    inputs=_IMAGENET,
    paper=PaperInfo(
        _PAPER, _TABLE1, params_m=380, gflops=94, gflops_image_size=256, note=_GFLOPS_NOTE, params_tolerance=_ROUNDED
    ),
)
register(
    "dim-teng-h/2",
    family="dim-teng",
    revision=_REVISION,
    builder=DiMTeng,
    config=dict(hidden_size=1536, depth=49),
    inputs=_IMAGENET,
    paper=PaperInfo(
        _PAPER, _TABLE1, params_m=860, gflops=210, gflops_image_size=256, note=_GFLOPS_NOTE, params_tolerance=_ROUNDED
    ),
    weights=(
        Published(
            "https://drive.google.com/drive/folders/1ETllUm8Dpd8-vDHefQEXEWF9whdbyhL5",
            "nnet_ema.pth",
            "tyshiwo1/DiM-DiffusionMamba README, Checkpoints: 625K steps, FID 2.21; EMA state dict",
        ),
        Published(
            "https://drive.google.com/drive/folders/1TTEXKKhnJcEV9jeZbZYlXjiPyV87ZhE0",
            "nnet_ema.pth",
            "same README: 425K steps, FID 2.40",
        ),
    ),
)
register(
    "dim-teng-h/2-512",
    family="dim-teng",
    revision=_REVISION,
    builder=DiMTeng,
    config=dict(input_size=64, hidden_size=1536, depth=49, pad_layout="rho"),  # configs/imagenet512_H_DiM_ft.py
    inputs=InputSpec(in_channels=4, latent=True, image_size=512, conditioning="class", num_classes=1000),
    paper=PaperInfo(_PAPER, "Sec. 4.1 (fine-tuned at 512 px)", params_m=860, params_tolerance=_ROUNDED),
    weights=(
        Published(
            "https://drive.google.com/drive/folders/1lupf4_dj4tWCpycnraGrgqh4P-6yK5Xe",
            "nnet_ema.pth",
            "tyshiwo1/DiM-DiffusionMamba README, Checkpoints: fine-tuned at 512 px, FID 3.94; EMA state dict",
        ),
    ),
)
register(
    "dim-teng-tiny",
    family="dim-teng",
    revision=_REVISION,
    builder=DiMTeng,
    config=dict(input_size=8, patch_size=2, in_channels=3, hidden_size=64, depth=5, num_classes=10),
    inputs=InputSpec(in_channels=3, latent=False, image_size=8, conditioning="class", num_classes=10),
    tags=("tiny",),
)

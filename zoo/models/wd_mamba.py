"""WD-Mamba: a W-Net of Mamba encoders and decoders for diffusion (Polamreddy et al., Sec. 3.2, Fig. 2).

The public code (LakshmikarPolamreddy/Mamba4Diffusion) is DiM's model file (Teng et al.) with another block
list, so everything inside a block is DiM's (``zoo.models.dim_teng``): tokens, end-of-line padding,
per-block scan-order switching, adaLN-single, Mamba-1 with d_conv 3, width 1536. This file only changes
the wiring, as the paper describes it:

- Stages (Fig. 2, Algorithm 1): encoder 1 -> bottleneck 1 -> decoder 1 -> encoder 2 -> bottleneck 2 ->
  decoder 2 -> head, six Mamba blocks per encoder and decoder. The code's single-block bottlenecks give
  the published 463 M, so we use one block per bottleneck.
- Long skips (Sec. 3.2): encoder k's block outputs feed decoder k's blocks mirror-wise (the last encoder
  block to the first decoder block), and "skip connections link each Mamba encoder to the decoders": the
  second decoder receives encoder 1's mirrored features too. We add them to encoder 2's before the
  decoder block's skip merge, so no parameter is added for it (our reading; the paper gives no formula).
  The public code's skips do not implement this (every decoder-1 merge is unused and decoder-2 merges the
  immediately preceding block's output); we implement the paper's.
- Head (Fig. 2, Algorithm 1): "a convolutional layer to predict the noise": a 3x3 conv after the linear
  patch head (the code defaults to the linear head only).
- Ablation variants (Sec. 4.4): U-Mamba is one U of 13 blocks (encoder 6, bottleneck 1, decoder 6).
  HalfU-Mamba has "significantly fewer layers" and no count is given: we take half of that U, the encoder
  and bottleneck without decoder or skips (7 blocks), which matches its reported failure to converge.

Parameter count: 459.2 M unconditional (CelebA, the paper's data set) against the published 463 M (-0.8%);
the published number equals the code built with 1000 classes (462.6 M).
"""

from __future__ import annotations

from torch import Tensor

from zoo.models.dim_teng import DiMTeng
from zoo.registry import InputSpec, PaperInfo, register

W_NET = "enc6,mid1,dec6,enc6,mid1,dec6"
U_NET = "enc6,mid1,dec6"
HALF_U = "enc6,mid1"


def parse_stages(stages: str) -> list[tuple[str, int]]:
    """'enc6,mid1,dec6' -> [('enc', 6), ('mid', 1), ('dec', 6)], checked: decoder k mirrors encoder k."""
    parsed = []
    for part in stages.split(","):
        kind, count = part[:3], part[3:]
        if kind not in ("enc", "mid", "dec") or not count.isdigit() or int(count) < 1:
            raise ValueError(f"stage {part!r}: expected encN, midN or decN (e.g. {W_NET!r})")
        parsed.append((kind, int(count)))
    encoders = [n for k, n in parsed if k == "enc"]
    decoders = [n for k, n in parsed if k == "dec"]
    if len(decoders) > len(encoders) or any(d != e for d, e in zip(decoders, encoders, strict=False)):
        raise ValueError(f"stages {stages!r}: decoder k must have as many blocks as encoder k")
    return parsed


class WDMamba(DiMTeng):
    """``model(x, t, y=None)`` -> noise prediction; ``stages`` sets the W-Net, U-Net or half-U layout."""

    def __init__(
        self,
        stages: str = W_NET,
        input_size: int = 8,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1536,
        num_classes: int = 0,
        **dim_options,
    ):
        self.stages = parse_stages(stages)
        depth = sum(n for _, n in self.stages)
        super().__init__(
            input_size=input_size, patch_size=patch_size, in_channels=in_channels, hidden_size=hidden_size,
            depth=depth, num_classes=num_classes, final_conv=True, **dim_options,
        )  # fmt: skip

    def _stage_of_block(self) -> list[tuple[str, int, int]]:
        """(kind, stage number among its kind, index inside the stage) for every block."""
        out, seen = [], {"enc": 0, "mid": 0, "dec": 0}
        for kind, count in self.stages:
            seen[kind] += 1
            out += [(kind, seen[kind], i) for i in range(count)]
        return out

    def skip_merging_blocks(self, depth: int) -> set[int]:
        if not self.long_skip:
            return set()
        return {i for i, (kind, _, _) in enumerate(self._stage_of_block()) if kind == "dec"}

    def run_blocks(self, x: Tensor, cond: Tensor, perms: dict[str, Tensor]) -> Tensor:
        kept: dict[int, list[Tensor]] = {}  # encoder number -> its block outputs
        layout = self._stage_of_block()
        orders = self.block_orders()
        for i, block in enumerate(self.blocks):
            kind, number, index = layout[i]
            if kind == "dec" and self.long_skip:
                mirror = len(kept[number]) - 1 - index
                skip = kept[number][mirror]
                for earlier in range(1, number):  # encoder 1 also reaches decoder 2 (Sec. 3.2)
                    skip = skip + kept[earlier][mirror]
                x = block.merge_skip(x, skip)
            x = block(x, cond, self.prefix, None if orders[i] == "row" else perms[orders[i]])
            if kind == "enc":
                kept.setdefault(number, []).append(x)
        return x


_PAPER = "Polamreddy et al. (WD-Mamba)"
_CELEBA = InputSpec(in_channels=4, latent=True, image_size=64, conditioning="none")
register(
    "wd-mamba",
    family="wd-mamba",
    builder=WDMamba,
    config=dict(stages=W_NET),
    inputs=_CELEBA,
    paper=PaperInfo(
        _PAPER,
        "Table 1 (CelebA 64)",
        params_m=463,
        params_tolerance=0.02,
        note="463 M is the code built with 1000 classes; unconditional here (-0.8%)",
    ),  # fmt: skip
)
register(
    "wd-mamba-u",
    family="wd-mamba",
    builder=WDMamba,
    config=dict(stages=U_NET),
    inputs=_CELEBA,
    paper=PaperInfo(_PAPER, "Sec. 4.4 ablation: U-Mamba, 13 layers"),
)
register(
    "wd-mamba-halfu",
    family="wd-mamba",
    builder=WDMamba,
    config=dict(stages=HALF_U),
    inputs=_CELEBA,
    paper=PaperInfo(_PAPER, "Sec. 4.4 ablation: HalfU-Mamba (layer count not given; ours: 7)"),
)
register(
    "wd-mamba-tiny",
    family="wd-mamba",
    builder=WDMamba,
    config=dict(stages="enc2,mid1,dec2,enc2,mid1,dec2", input_size=8, hidden_size=64, in_channels=3),
    inputs=InputSpec(in_channels=3, latent=False, image_size=8, conditioning="none"),
    tags=("tiny",),
)

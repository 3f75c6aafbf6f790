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

from zoo.entries import InputSpec, PaperInfo, register
from zoo.errors import BadOption
from zoo.models.dim_teng import DiMTeng, Skips, cyclic_block_scans

W_NET = "enc6,mid1,dec6,enc6,mid1,dec6"
U_NET = "enc6,mid1,dec6"
HALF_U = "enc6,mid1"


def parse_stages(stages: str) -> list[tuple[str, int]]:
    """'enc6,mid1,dec6' -> [('enc', 6), ('mid', 1), ('dec', 6)], checked: decoder k mirrors encoder k."""
    parsed = []
    for part in stages.split(","):
        kind, count = part[:3], part[3:]
        if kind not in ("enc", "mid", "dec") or not count.isdigit() or int(count) < 1:
            raise BadOption(f"stage {part!r}: expected encN, midN or decN (e.g. {W_NET!r})")
        parsed.append((kind, int(count)))
    encoders = [n for k, n in parsed if k == "enc"]
    decoders = [n for k, n in parsed if k == "dec"]
    if len(decoders) > len(encoders) or any(d != e for d, e in zip(decoders, encoders, strict=False)):
        raise BadOption(f"stages {stages!r}: decoder k must have as many blocks as encoder k")
    return parsed


def w_net_skips(stages: list[tuple[str, int]]) -> Skips:
    """Decoder k's blocks receive encoder k's block outputs mirror-wise, plus those of every earlier encoder at
    the same mirrored position (Sec. 3.2: "skip connections link each Mamba encoder to the decoders")."""
    encoders: dict[int, list[int]] = {}  # encoder number -> its block indices
    skips: Skips = {}
    seen = {"enc": 0, "mid": 0, "dec": 0}
    block = 0
    for kind, count in stages:
        seen[kind] += 1
        number = seen[kind]
        for index in range(count):
            if kind == "enc":
                encoders.setdefault(number, []).append(block)
            elif kind == "dec":
                mirror = len(encoders[number]) - 1 - index
                skips[block] = tuple(encoders[e][mirror] for e in (number, *range(1, number)))
            block += 1
    return skips


class WDMamba(DiMTeng):
    """``model(x, t, cond=None)`` -> noise prediction; ``stages`` sets the W-Net, U-Net or half-U layout. DiM's
    model with another block layout: the skips of ``w_net_skips`` and DiM's scan patterns cycled block by block
    (the public code computes DiM's schedule for a depth it does not build; the paper gives none)."""

    def __init__(
        self,
        stages: str = W_NET,
        input_size: int = 8,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1536,
        num_classes: int = 0,
        scan_patterns: str = "1234",
        **dim_options,
    ):
        layout = parse_stages(stages)
        depth = sum(n for _, n in layout)
        super().__init__(
            input_size=input_size,
            patch_size=patch_size,
            in_channels=in_channels,
            hidden_size=hidden_size,
            depth=depth,
            num_classes=num_classes,
            final_conv=True,
            scan_patterns=scan_patterns,
            block_scans=cyclic_block_scans(scan_patterns, depth),
            skips=w_net_skips(layout),
            **dim_options,
        )
        self.stages = layout


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
    ),
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

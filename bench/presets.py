"""Named sweeps. ``quick`` is the README's first command: a few minutes on a 2-core CPU, no download.

- FLOPs (counted on the meta device) of one paper-size entry per family at 256 .. 3840x2160;
- latency (1 thread, CPU) of two small twins, DiM-S/2 (Mo & Tian) and DiT-S/2, at small sizes, with
  their crossover marked;
- peak memory of the same twins at 256.

``quick`` is image-only. ``video`` counts the FLOPs of the two video backbones, Latte-XL/2 and DiM's video
model (XL/2), on clips: 16 frames at 256², 512² (UCF-101's 16-frame clips, DiM Sec. 4.1, and the same at
512²) and, to show where the crossover lies, 1024² and 2048²; 64 frames at 256² (4x longer clips, the token
count of 16x512² spent on time instead of space). Counting takes seconds; timings of these shapes need a
GPU (docs/bench.md, video costs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SweepGroup:
    models: tuple[str, ...]
    resolutions: tuple[str, ...]
    metrics: tuple[str, ...]


@dataclass(frozen=True)
class SweepPreset:
    name: str
    groups: tuple[SweepGroup, ...]
    pairs: tuple[tuple[str, str], ...]
    out: Path
    min_time: float = 0.5

    @property
    def cases(self) -> int:
        return sum(len(g.models) * len(g.resolutions) * len(g.metrics) for g in self.groups)


FAMILIES = ("dit-xl/2", "uvit-h/2", "dim-mo-xl/2", "dim-teng-h/2", "wd-mamba", "pixart-alpha-xl/2", "t2md")
QUICK = SweepPreset(
    name="quick",
    groups=(
        SweepGroup(FAMILIES, ("256", "512", "1024", "2048", "3840x2160"), ("flops",)),
        SweepGroup(("dim-mo-s/2", "dit-s/2"), ("128", "256", "512"), ("latency",)),
        SweepGroup(("dim-mo-s/2", "dit-s/2"), ("256",), ("memory",)),
    ),
    pairs=(("dim-mo-s/2", "dit-s/2"), ("t2md", "pixart-alpha-xl/2"), ("dim-mo-xl/2", "dit-xl/2")),
    out=Path("results") / "sweeps" / "quick" / "sweep.csv",
)
VIDEO_MODELS = ("latte-xl/2", "dim-mo-video-xl/2")
VIDEO = SweepPreset(
    name="video",
    groups=(
        SweepGroup(
            VIDEO_MODELS, ("16x256x256", "16x512x512", "16x1024x1024", "16x2048x2048", "64x256x256"), ("flops",)
        ),
    ),
    pairs=(("dim-mo-video-xl/2", "latte-xl/2"),),
    out=Path("results") / "sweeps" / "video" / "sweep.csv",
)
# ``field``: one paper-size model of every family, by token mixer (softmax attention: DiT, PixArt-alpha, U-ViT;
# Mamba-1: DiM (Mo & Tian, Teng et al.), ZigMa, DiS, WD-Mamba; Mamba-2 hybrid: T2MD; linear attention: SANA,
# gated linear attention: DiG; S4D gated bidirectional SSM with hourglass dense layers: DiffuSSM),
# counted from 256 to 3840x2160 and 4096x4096; each non-softmax family paired with the softmax model of its
# setting (class-conditional: DiT of the same size class; text: PixArt-alpha) so the plot marks where it becomes
# the cheaper one. SANA's 32x DC-AE latents give it 16x fewer tokens per image pixel than the SD-VAE models, so a
# crossover on the token axis would compare different images: it has no pair (per image pixel it costs less
# than PixArt-alpha at every size counted), and its 4K row is 3840x2176 (sides must be multiples of 32).
# DiffuSSM is unpaired for the same reason: no patches (one token per latent pixel, 4x DiT-XL/2's tokens per
# image pixel), so the token axis would compare different images; per image it becomes cheaper than DiT-XL/2
# between 1024 and 2048 px (counted: 4809 vs 2909 GMACs at 1024, 19237 vs 24624 at 2048; ~1630 px log-log).
FIELD_MODELS = (
    "dit-xl/2",
    "dit-b/2",
    "uvit-h/2",
    "pixart-alpha-xl/2",
    "dim-mo-xl/2",
    "dim-teng-h/2",
    "zigma-b/2-faceshq1024",
    "dis-h/2",
    "wd-mamba",
    "t2md",
    "dig-xl/2",
    "diffussm-xl",
)
FIELD = SweepPreset(
    name="field",
    groups=(
        SweepGroup(FIELD_MODELS, ("256", "512", "1024", "2048", "3840x2160", "4096"), ("flops",)),
        SweepGroup(("sana-1600m",), ("256", "512", "1024", "2048", "3840x2176", "4096"), ("flops",)),
    ),
    pairs=(
        ("dim-mo-xl/2", "dit-xl/2"),
        ("dim-teng-h/2", "dit-xl/2"),
        ("dis-h/2", "dit-xl/2"),
        ("zigma-b/2-faceshq1024", "dit-b/2"),
        ("t2md", "pixart-alpha-xl/2"),
        ("dig-xl/2", "dit-xl/2"),
    ),
    out=Path("results") / "sweeps" / "field" / "sweep.csv",
)
PRESETS = {"quick": QUICK, "video": VIDEO, "field": FIELD}


def resolve_groups(groups: list[SweepGroup], frames: list[int] | tuple[int, ...] = ()) -> list[SweepGroup]:
    """One group per model, its sizes as that model runs them: each size once per ``frames`` value (``--frames``),
    a video entry's own clip length where none is given (``TxWxH``). An image entry given frames, or a size
    that does not parse, is a ValueError naming the fix (before any case runs)."""
    from bench.inputs import case_resolution, parse_resolution
    from zoo.registry import get_entry

    resolved = []
    for group in groups:
        for name in group.models:
            entry = get_entry(name)
            sizes = [
                str(case_resolution(entry, parse_resolution(r, f)))
                for r in group.resolutions
                for f in (frames or [None])
            ]
            resolved.append(SweepGroup((name,), tuple(dict.fromkeys(sizes)), group.metrics))
    return resolved

"""Named sweeps. ``quick`` is the README's first command: a few minutes on a 2-core CPU, no download.

- FLOPs (counted on the meta device) of one paper-size entry per family at 256 .. 3840x2160;
- latency (1 thread, CPU) of two small twins, DiM-S/2 (Mo & Tian) and DiT-S/2, at small sizes, with
  their crossover marked;
- peak memory of the same twins at 256.
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
PRESETS = {"quick": QUICK}

"""The committed regression baseline: counted GMACs and parameters of every registry entry at 256, 1024 and
3840x2160 (sizes an entry cannot take are left out; a video entry's rows are clips of its own length, named
TxWxH), in ``results/baselines/cpu-gmacs.csv``. CI compares fresh counts with it (tests/test_results_gate.py);
regenerate it with ``python scripts/make_gmacs_baseline.py`` and say why in the commit when a model change is
intended."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.flops import count_flops
from bench.inputs import parse_resolution
from mambabench.errors import UserError
from zoo import get_entry, list_models

RESOLUTIONS = ("256", "1024", "3840x2160")
BASELINE = Path(__file__).resolve().parents[1] / "results" / "baselines" / "cpu-gmacs.csv"


def baseline_rows(models: list[str] | None = None) -> list[dict]:
    """The baseline's rows of ``models`` (default: every entry), counted now."""
    rows = []
    for name in models or list_models():
        with torch.device("meta"):
            model = get_entry(name).build().eval()  # one build counted at every size
        for res in RESOLUTIONS:
            try:
                count = count_flops(name, parse_resolution(res), model=model)
            except UserError:  # not divisible by this entry's patch grid
                continue
            common = dict(
                model=name,
                resolution=count.resolution,
                batch=1,
                dtype="float32",
                device="meta",
                status="ok",
                source="bench.baseline",
            )
            rows.append(dict(common, metric="gmacs", value=repr(count.macs / 1e9), unit="GMAC"))
            rows.append(dict(common, metric="params_m", value=repr(count.params / 1e6), unit="M params"))
    return rows

"""Registry rows for people and scripts: parameters counted on the meta device beside the paper's."""

from __future__ import annotations

from typing import Any

import torch

from zoo.entries import ModelEntry
from zoo.registry import get_entry, list_models


def count_parameters(name: str, **overrides: Any) -> int:
    """Exact number of parameters of a registry entry, built on the meta device (no memory, no init cost)."""
    entry = get_entry(name)
    with torch.device("meta"):
        model = entry.build(**overrides)
    return sum(p.numel() for p in model.parameters())


def entry_row(entry: ModelEntry) -> dict[str, Any]:
    """One row of ``zoo list``: counted vs reported parameters (millions) and the source."""
    counted = count_parameters(entry.name) / 1e6
    reported = entry.paper.params_m if entry.paper else None
    return {
        "name": entry.name,
        "family": entry.family,
        "params_m": round(counted, 2),
        "params_reported_m": reported,
        "params_delta_pct": round(100 * (counted - reported) / reported, 2) if reported else None,
        "params_tolerance_pct": 100 * entry.paper.params_tolerance if entry.paper else None,
        "source": entry.paper.paper if entry.paper else "(harness config)",
    }


def registry_rows(family: str | None = None) -> list[dict[str, Any]]:
    return [entry_row(get_entry(name)) for name in list_models(family)]

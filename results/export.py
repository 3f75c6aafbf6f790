"""CSV export of store rows (the format ``results compare`` and committed baselines use)."""

from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = ["model", "resolution", "metric", "value", "unit", "batch", "dtype", "device", "backend", "status",
           "detail", "source", "run_id"]  # fmt: skip


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

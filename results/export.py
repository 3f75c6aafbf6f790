"""CSV export of store rows (the format ``results compare`` and committed baselines use).

``variant`` carries a row's identity beyond model and resolution (see ``results.compare.MATCH``) and
``config`` the JSON context it was measured in; a committed baseline may add a ``tolerance`` column."""

from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = [
    "model",
    "variant",
    "resolution",
    "metric",
    "value",
    "unit",
    "batch",
    "dtype",
    "device",
    "backend",
    "status",
    "detail",
    "source",
    "run_id",
    "config",
]


def write_csv(rows: list[dict], path: Path, extra: tuple[str, ...] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*COLUMNS, *extra], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

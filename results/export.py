"""Exports of store rows: the CSV that ``results compare`` and the committed baselines use, and whole frames
(``results.frame``) as CSV or Parquet.

``variant`` carries a row's identity beyond model and resolution (see ``results.compare.MATCH``) and
``config`` the JSON context it was measured in; a committed baseline may add a ``tolerance`` column. An export
of a frame writes these columns first, then the rest of the frame (family, commit, dirty flag, timestamp, ...):
``results compare`` reads the first and ignores the rest."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mambabench.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

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
FORMATS = ("csv", "parquet")
LINE_END = "\r\n"  # what the csv module writes, and so what the committed baselines hold


def write_csv(rows: list[dict], path: Path, extra: tuple[str, ...] = ()) -> None:
    """Store rows (dicts) as a CSV of ``COLUMNS`` plus ``extra``, byte for byte what ``csv.DictWriter`` wrote
    before: a missing key or None is an empty cell, keys beyond the columns are left out, every value is written
    as ``str`` writes it (object columns: an int stays ``1``, never ``1.0``) and lines end in CRLF."""
    import pandas as pd

    table = pd.DataFrame(rows, dtype=object).reindex(columns=[*COLUMNS, *extra])
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, na_rep="", lineterminator=LINE_END)


def export_table(df: pd.DataFrame) -> pd.DataFrame:
    """A frame's columns in export order: ``COLUMNS`` first (what ``results compare`` reads), then the rest."""
    return df[[*COLUMNS, *(c for c in df.columns if c not in COLUMNS)]]


def write_frame(df: pd.DataFrame, path: Path, fmt: str = "csv") -> Path:
    """Write a frame as ``csv`` or ``parquet`` (typed columns; needs pyarrow, the ``results`` extra)."""
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    table = export_table(df)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UserError(
                "Parquet needs pyarrow: pip install 'mambabench[results]' (or export with --format csv)"
            ) from None
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False, na_rep="", lineterminator=LINE_END)
    return path

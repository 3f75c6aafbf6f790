"""The references of the site's verdicts: the committed baselines (``results/baselines/*.csv``) read as the gate
reads them, and the newest row of each series in the store, the candidate the gate would judge."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from results.compare import MATCH, CompareError, load

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "baselines"


@dataclass(frozen=True)
class Baseline:
    """One baseline file: its name and its rows (the gate's CSV rows, strings)."""

    name: str
    rows: list[dict]


@dataclass(frozen=True)
class Reference:
    """What a series is judged against: a value, the tolerance to use (None: the metric's rule) and where it
    came from (a baseline's file name, or ``first run``)."""

    value: float
    tolerance: float | None
    origin: str


def key(row: dict) -> tuple[str, ...]:
    """The gate's match key of a row (``results.compare.MATCH``)."""
    return tuple("" if row.get(k) is None else str(row.get(k)) for k in MATCH)


def load_baselines(paths: Iterable[Path]) -> list[Baseline]:
    """Every CSV among ``paths`` (files, or folders of ``*.csv``), read by the gate's reader."""
    files = [f for p in paths for f in (sorted(Path(p).glob("*.csv")) if Path(p).is_dir() else [Path(p)])]
    return [Baseline(f.name, load(str(f))) for f in files]


def references(baselines: list[Baseline]) -> dict[tuple[str, ...], Reference]:
    """Match key -> the baseline's value (the last file that has the key wins; rows with no number are left
    out: a case that failed in its baseline has nothing to be judged against)."""
    out = {}
    for baseline in baselines:
        for row in baseline.rows:
            try:
                value = float(row.get("value") or "nan")
            except ValueError:
                raise CompareError(f"baseline {baseline.name}: value {row.get('value')!r} is not a number") from None
            if value != value or (row.get("status") or "ok") != "ok":
                continue
            tolerance = row.get("tolerance")
            out[key(row)] = Reference(value, float(tolerance) if tolerance not in (None, "") else None, baseline.name)
    return out


def latest(rows: list[dict]) -> list[dict]:
    """The newest row of each match key (rows oldest first, as ``results.frame`` gives them)."""
    return list({key(row): row for row in rows}.values())

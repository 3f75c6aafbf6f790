"""The results store as a pandas DataFrame: one row per measurement, with its run's context beside it.

Researchers work in pandas and notebooks; ``frame`` is the one way into the store from there (and what
``results export`` and ``results site`` read)::

    from results.frame import frame

    df = frame(metric="latency_median", device="cpu", since="2025-01-01")
    df.pivot_table(index="resolution", columns="model", values="value", aggfunc="median")

Columns, typed (text columns are pandas strings, counts nullable integers):

- the measurement: ``id``, ``model``, ``family``, ``variant``, ``resolution`` (as recorded: ``256``,
  ``3840x2160``, a clip ``16x256x256``), ``width``, ``height``, ``frames`` (parsed from ``resolution``; NA
  where it is no size), ``metric``, ``value`` (float, NaN where the case failed), ``unit``, ``batch``,
  ``dtype``, ``device``, ``backend``, ``status``, ``detail``, ``source``, ``config`` (the JSON context),
  ``timestamp`` (UTC, when the row was written);
- its run: ``run_id``, ``run_started`` (UTC), ``commit``, ``dirty`` (bool: uncommitted changes in the tree),
  ``host``, ``cpu``, ``gpu``, ``python``, ``torch``, ``command``.

What the store does not record, and so is not here: the CPU's ISA (``cpu`` is what Python's
``platform.processor()`` says, e.g. ``x86_64``, not AVX2 or AVX-512), and the model's family: the store
keeps rows and knows nothing of models, so ``family`` is filled only from the ``families`` mapping a caller
passes (the ``results`` CLI passes the registry's, ``zoo.registry``); a model it does not name (e.g. a
``paper:<table>`` row) has family NA.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING

from mambabench.errors import UserError
from results.store import ResultsStore

if TYPE_CHECKING:
    import pandas as pd

TEXT = (
    "model",
    "family",
    "variant",
    "resolution",
    "metric",
    "unit",
    "dtype",
    "device",
    "backend",
    "status",
    "detail",
    "source",
    "config",
    "commit",
    "host",
    "cpu",
    "gpu",
    "python",
    "torch",
    "command",
)
COLUMNS = (
    "id",
    "run_id",
    "model",
    "family",
    "variant",
    "resolution",
    "width",
    "height",
    "frames",
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
    "config",
    "timestamp",
    "run_started",
    "commit",
    "dirty",
    "host",
    "cpu",
    "gpu",
    "python",
    "torch",
    "command",
)

Patterns = str | Iterable[str] | None
Moment = datetime.datetime | datetime.date | str | float | None


def parse_resolution(resolution: str) -> tuple[int, int, int] | None:
    """(width, height, frames) of ``256`` (square), ``WxH`` or a clip ``TxWxH``; frames 0 for an image, None
    for anything that is no size (an empty resolution, a paper table's row label)."""
    parts = str(resolution or "").lower().split("x")
    if not all(p.strip().isdigit() for p in parts):
        return None
    values = [int(p) for p in parts]
    if len(values) == 1:
        return values[0], values[0], 0
    if len(values) == 2:
        return values[0], values[1], 0
    if len(values) == 3:
        return values[1], values[2], values[0]
    return None


def _patterns(value: Patterns, name: str) -> list[str] | None:
    if value is None:
        return None
    patterns = [value] if isinstance(value, str) else list(value)
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise UserError(f"{name} filter must be a non-empty name or glob pattern (or a list of them), got {value!r}")
    return patterns


def _match(value: str, patterns: list[str] | None) -> bool:
    return patterns is None or any(fnmatch(value or "", p) for p in patterns)


def to_epoch(moment: Moment, name: str = "since") -> float | None:
    """Seconds since the epoch of a datetime (naive: UTC), a date (its midnight UTC), an ISO string
    (``2025-01-31`` or ``2025-01-31T12:00``) or a number of seconds; a bad value is a ``UserError``."""
    if moment is None:
        return None
    if isinstance(moment, bool):
        raise UserError(f"--{name} must be a date or time, got {moment!r}")
    if isinstance(moment, int | float):
        return float(moment)
    if isinstance(moment, str):
        try:
            moment = datetime.datetime.fromisoformat(moment.strip())
        except ValueError:
            raise UserError(
                f"--{name} {moment!r} is not an ISO date or time (e.g. 2025-01-31 or 2025-01-31T12:00)"
            ) from None
    if isinstance(moment, datetime.datetime):
        return (moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)).timestamp()
    if isinstance(moment, datetime.date):
        return datetime.datetime(moment.year, moment.month, moment.day, tzinfo=datetime.UTC).timestamp()
    raise UserError(f"--{name} must be a date or time, got {moment!r}")


def empty_frame() -> pd.DataFrame:
    """A frame with every column and no row (a filter that matches nothing)."""
    return _typed([], {})


def _typed(records: list[dict], families: Mapping[str, str]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame.from_records(records, columns=[c for c in COLUMNS if c not in ("width", "height", "frames")])
    sizes = [parse_resolution(r) for r in df["resolution"]]
    for i, column in enumerate(("width", "height", "frames")):
        df[column] = pd.array([s[i] if s else None for s in sizes], dtype="Int64")
    df["family"] = [families.get(m) for m in df["model"]]
    for column in TEXT:
        df[column] = df[column].astype("string")
    for column in ("id", "run_id", "batch"):
        df[column] = df[column].astype("Int64")
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype("float64")
    df["dirty"] = df["dirty"].astype("boolean")
    for column in ("timestamp", "run_started"):
        df[column] = pd.to_datetime(df[column].astype("float64"), unit="s", utc=True)
    return df[list(COLUMNS)]


def frame(
    store: str | Path | ResultsStore | None = None,
    *,
    run: int | Iterable[int] | None = None,
    model: Patterns = None,
    metric: Patterns = None,
    device: Patterns = None,
    source: Patterns = None,
    status: Patterns = None,
    since: Moment = None,
    until: Moment = None,
    families: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The store's measurements as a DataFrame (columns: the module's docstring), oldest first.

    ``store``: a path (the store rule of ``results.store`` when None) or an open ``ResultsStore``; it must
    exist (reading never creates a store). Filters, all optional and combined: ``run`` (an id or ids),
    ``model``, ``metric``, ``device``, ``source`` and ``status`` (a name, a glob such as ``latency_*``, or a
    list of them), ``since`` / ``until`` (on the row's timestamp: a datetime, date, ISO string or epoch
    seconds; ``until`` is exclusive). ``families`` maps model names to their family (the store has none).
    """
    db = store if isinstance(store, ResultsStore) else ResultsStore(store, create=False)
    runs_wanted = None if run is None else ({int(run)} if isinstance(run, int) else {int(r) for r in run})
    models, metrics = _patterns(model, "model"), _patterns(metric, "metric")
    devices, sources, statuses = _patterns(device, "device"), _patterns(source, "source"), _patterns(status, "status")
    start, end = to_epoch(since, "since"), to_epoch(until, "until")
    runs = {r["id"]: r for r in db.runs()}
    records = []
    for m in db.measurements():
        if runs_wanted is not None and m["run_id"] not in runs_wanted:
            continue
        if not (
            _match(m["model"], models)
            and _match(m["metric"], metrics)
            and _match(m["device"], devices)
            and _match(m["source"], sources)
            and _match(m["status"], statuses)
        ):
            continue
        created = m["created"] or 0.0
        if (start is not None and created < start) or (end is not None and created >= end):
            continue
        r = runs.get(m["run_id"], {})
        records.append(
            {
                **{k: m[k] for k in ("id", "run_id", "model", "variant", "resolution", "metric", "value", "unit")},
                **{k: m[k] for k in ("batch", "dtype", "device", "backend", "status", "detail", "source", "config")},
                "variant": m["variant"] or "",
                "timestamp": created,
                "run_started": r.get("started"),
                "commit": r.get("git_commit") or "",
                "dirty": bool(r.get("git_dirty")) if r else None,
                **{k: r.get(k) or "" for k in ("host", "cpu", "gpu", "python", "torch", "command")},
            }
        )
    return _typed(records, families or {})


def config_of(row: Mapping) -> dict:
    """A row's ``config`` column as a dict (``{}`` where it is empty or not JSON)."""
    text = row.get("config")
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def records(df: pd.DataFrame) -> list[dict]:
    """A frame's rows as plain dicts, NA as None (what ``results.compare`` and the site read)."""
    return df.astype(object).where(df.notna(), None).to_dict("records")

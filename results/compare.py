"""Compare a candidate set of measurements with a baseline, per-metric tolerances, as a regression gate.

Rows match on (model, resolution, metric, batch, dtype, device). Counted metrics (GMACs, GFLOPs, parameters)
must agree within 0.1% either way; latency may not grow, nor throughput drop, by more than 10%; FID may not
grow by more than 0.5; other metrics may not grow by more than 5%.
A baseline or candidate is a run id in the store or a CSV as written by ``results export``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from results.store import ResultsStore

MATCH = ("model", "resolution", "metric", "batch", "dtype", "device")
# metric -> (kind, tolerance, direction): "both" = any change beyond tolerance fails, "higher" = only growth
# fails, "lower" = only a drop fails
TOLERANCES = {
    "gmacs": ("relative", 0.001, "both"),
    "gflops": ("relative", 0.001, "both"),
    "params_m": ("relative", 0.001, "both"),
    "latency_median": ("relative", 0.10, "higher"),
    "latency_iqr": ("relative", float("inf"), "higher"),  # spread: reported, never gated
    "throughput": ("relative", 0.10, "lower"),
    "fid": ("absolute", 0.5, "higher"),
}
DEFAULT_TOLERANCE = ("relative", 0.05, "higher")


@dataclass
class Comparison:
    key: tuple
    baseline: float | None
    candidate: float | None
    verdict: str  # "ok", "regression", "missing" (in the baseline, not the candidate), "new"


def load(source: str, store: ResultsStore | None = None) -> list[dict]:
    """Rows of a run id (digits) in the store, or of a CSV file."""
    if source.isdigit():
        return (store or ResultsStore()).measurements(int(source))
    with Path(source).open(newline="") as handle:
        return list(csv.DictReader(handle))


def _key(row: dict) -> tuple:
    return tuple(str(row.get(k, "")) for k in MATCH)


def _value(row: dict) -> float | None:
    value = row.get("value")
    status = row.get("status") or "ok"
    return None if value in (None, "") or status != "ok" else float(value)


def compare(baseline: list[dict], candidate: list[dict]) -> list[Comparison]:
    base = {_key(r): _value(r) for r in baseline}
    cand = {_key(r): _value(r) for r in candidate}
    out = []
    for key, b in base.items():
        if key not in cand:
            out.append(Comparison(key, b, None, "missing"))
            continue
        c = cand[key]
        kind, tol, direction = TOLERANCES.get(key[2], DEFAULT_TOLERANCE)
        if b is None or c is None:
            verdict = "ok" if b is None and c is None else ("regression" if c is None else "ok")
        else:
            diff = (c - b) / abs(b) if kind == "relative" and b else c - b
            worse = {"both": abs(diff) > tol, "higher": diff > tol, "lower": -diff > tol}[direction]
            verdict = "regression" if worse else "ok"
        out.append(Comparison(key, b, c, verdict))
    out += [Comparison(key, None, c, "new") for key, c in cand.items() if key not in base]
    return out

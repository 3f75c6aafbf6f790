"""Compare a candidate set of measurements with a baseline, per-metric tolerances, as a regression gate.

Rows match on ``MATCH``: (model, variant, resolution, metric, batch, dtype, device), where ``variant`` is
what else identifies a row (an ablation row's table, variant, checkpoint, seed, sampling and configuration
hash; a timing's thread count). Every metric the harness writes has a rule in ``RULES`` (direction and
tolerance); a metric without one is refused, never waved through:

- counts (GMACs, GFLOPs, parameters, meta-device memory estimates): equal within 0.1% either way;
- times (latency, profile, training seconds): may grow by 10%; throughput may drop by 10%;
- measured peak memory: may grow by 10%;
- FID, sFID: may grow by 0.5; KID by 0.001 (lower is better);
- IS: may drop by 2%; precision, recall: by 0.01 (higher is better);
- GenEval scores (``geneval_<task>``, ``geneval_overall``): may drop by 0.02 (higher is better);
- spreads (IQR, FID standard deviation over seeds): reported, never gated.

A baseline row may carry its own ``tolerance`` (a CSV column, in the rule's unit), e.g. the FID baseline of a
smoke table whose tolerance is measured from the run-to-run spread. Verdicts: ``ok``, ``better`` (beyond
the tolerance the good way), ``regression``, ``not a number``, ``failed`` (the candidate's case failed),
``missing`` (in the baseline, not the candidate) and ``new``; the first two pass.

A baseline or candidate is a run id in the store, a CSV written by ``results export``, or a ``bench sweep``
CSV (its wide rows are read as the store rows the sweep writes). Anything else is a ``CompareError``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from mambabench.errors import UserError, message
from results.store import ResultsStore
from results.sweep_csv import latest_rows, row_measurements

MATCH = ("model", "variant", "resolution", "metric", "batch", "dtype", "device")


@dataclass(frozen=True)
class Rule:
    kind: str  # "relative" | "absolute"
    tolerance: float
    worse: str  # "both" (any change), "higher" (growth is worse), "lower" (a drop is worse), "never" (not gated)


_COUNT, _TIME = Rule("relative", 0.001, "both"), Rule("relative", 0.10, "higher")
RULES: tuple[tuple[str, Rule], ...] = (  # first matching pattern wins
    ("gemm_gmacs_per_s", Rule("relative", 0.10, "lower")),  # a rate measured beside a timing (bench paper)
    ("*gmacs*", _COUNT),  # gmacs, and the counted columns of `bench paper` (dit_gmacs_no_attention, ...)
    ("gflops", _COUNT),
    ("*params_m", _COUNT),
    ("*ratio*", _COUNT),  # counted MAC ratios (bench paper)
    ("*_over_*", _COUNT),
    ("memory_*_estimate", _COUNT),
    ("memory_*", Rule("relative", 0.10, "higher")),
    ("latency_iqr", Rule("relative", 0.0, "never")),
    ("train_step_iqr", Rule("relative", 0.0, "never")),
    ("train_step_*", _TIME),
    ("train_throughput", Rule("relative", 0.10, "lower")),
    ("gemm_share", Rule("relative", 0.10, "lower")),  # a unit's counted MACs at the GEMM peak over its time
    ("latency_*", _TIME),
    ("*_latency_ms", _TIME),
    ("*_block_s", _TIME),
    ("*speedup", Rule("relative", 0.10, "lower")),
    ("profile_*_s", _TIME),
    ("train_seconds", _TIME),
    ("throughput", Rule("relative", 0.10, "lower")),
    ("train_loss_final", Rule("relative", 0.05, "higher")),
    ("fid_std", Rule("absolute", 0.0, "never")),
    ("fid", Rule("absolute", 0.5, "higher")),
    ("sfid", Rule("absolute", 0.5, "higher")),
    ("fvd", Rule("relative", 0.02, "higher")),  # FVD: hundreds at the paper scale (Mo & Tian Table 3)
    ("kid", Rule("absolute", 0.001, "higher")),
    ("is", Rule("relative", 0.02, "lower")),
    ("precision", Rule("absolute", 0.01, "lower")),
    ("recall", Rule("absolute", 0.01, "lower")),
    # GenEval task and overall scores (fractions of images correct; higher is better): a task of ~400 images
    # at p ~ 0.5 has a binomial standard error of 0.025, a rescoring of the same images moves by far less
    ("geneval_*", Rule("absolute", 0.02, "lower")),
)
PASSING = ("ok", "better", "new")


class CompareError(UserError, ValueError):
    """A source that cannot be compared: the message says which and why."""


def rule_for(metric: str) -> Rule:
    for pattern, rule in RULES:
        if fnmatch(metric, pattern):
            return rule
    raise CompareError(f"metric {metric!r} has no direction and tolerance in results.compare.RULES; add one there")


def higher_is_better(metric: str) -> bool:
    """A quality metric's direction, from its rule (the one place directions live): True when a drop is what
    is worse (IS, precision, GenEval), False when growth is (FID, FVD, KID); a metric gated both ways or never
    has no better side (a ``CompareError``)."""
    worse = rule_for(metric).worse
    if worse not in ("higher", "lower"):
        raise CompareError(f"metric {metric!r} has no better direction in results.compare.RULES (worse: {worse})")
    return worse == "lower"


@dataclass
class Comparison:
    key: tuple
    baseline: float | None
    candidate: float | None
    verdict: str
    tolerance: float | None = None


def load(source: str, store: str | Path | None = None) -> list[dict]:
    """Rows of a run id (digits) in the store, or of a CSV the harness wrote."""
    if source.isdigit():
        db = ResultsStore(store, create=False)
        if not db.has_run(int(source)):
            raise CompareError(f"run {source} is not in the store {db.path} (`results list` shows its runs)")
        rows = db.measurements(int(source))
        if not rows:
            raise CompareError(f"run {source} in {db.path} has no rows")
        return rows
    path = Path(source)
    if not path.is_file():
        raise CompareError(f"{source}: no such file (a baseline or candidate is a run id or a CSV)")
    header, rows = _read_csv(path)
    if {"model", "metric", "value"} <= header:
        return rows
    if {"model", "resolution", "metric", "status", "median_ms"} <= header:
        return _sweep_rows(rows)
    raise CompareError(
        f"{source} is neither a `results export` CSV (model, metric, value, ...) nor a `bench sweep` CSV; "
        "export a run with `results export --run N --csv FILE`"
    )


def _read_csv(path: Path) -> tuple[set[str], list[dict]]:
    """(header, rows) of a CSV, every cell a string (an empty cell ``""``, never NaN: the rows read as the store
    writes them); a line with more cells than the header (a torn write) is skipped."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, on_bad_lines="skip", encoding="utf-8")
    except pd.errors.EmptyDataError:
        return set(), []
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        raise CompareError(f"{path}: cannot be read as a CSV ({message(error)})") from None
    return set(table.columns), table.to_dict("records")


def _sweep_rows(rows: list[dict]) -> list[dict]:
    """A sweep CSV's wide rows as the store's long rows; a case run again (a retried failure) counts once,
    by its last row."""
    return [dataclasses.asdict(m) for row in latest_rows(rows) for m in row_measurements(row)]


def _key(row: dict) -> tuple:
    return tuple(str(row.get(k) or "") for k in MATCH)


def _value(row: dict) -> float | None:
    value, status = row.get("value"), row.get("status") or "ok"
    if value in (None, "") or status != "ok":
        return None
    try:
        return float(value)
    except ValueError:
        raise CompareError(f"{_describe(_key(row))}: value {value!r} is not a number") from None


def _describe(key: tuple) -> str:
    return " ".join(f"{name}={value}" for name, value in zip(MATCH, key, strict=True) if value)


def _index(rows: list[dict], label: str) -> dict[tuple, dict]:
    out = {}
    for row in rows:
        key = _key(row)
        if key in out:
            raise CompareError(
                f"the {label} has two rows for {_describe(key)}: compare single runs (`results export --run N`)"
            )
        out[key] = row
    return out


def _verdict(b: float, c: float, rule: Rule, tolerance: float) -> str:
    if math.isnan(c) or math.isnan(b):
        return "not a number"
    if rule.worse == "never":
        return "ok"
    change = (c - b) / abs(b) if rule.kind == "relative" and b else c - b
    if rule.worse == "both":
        return "regression" if abs(change) > tolerance else "ok"
    growth_is_worse = rule.worse == "higher"
    if abs(change) <= tolerance:
        return "ok"
    return "regression" if (change > 0) == growth_is_worse else "better"


def judge(reference: float, value: float, metric: str, tolerance: float | None = None) -> str:
    """The gate's verdict on one value against a reference (``ok``, ``better``, ``regression`` or ``not a
    number``), by the metric's rule and its tolerance (or ``tolerance``, a baseline's own)."""
    rule = rule_for(metric)
    return _verdict(reference, value, rule, rule.tolerance if tolerance is None else tolerance)


def band(reference: float, metric: str, tolerance: float | None = None) -> tuple[float, float] | None:
    """The values the gate passes as ``ok`` around a reference, (low, high), by the metric's rule (or a
    baseline's own ``tolerance``); None for a metric that is never gated."""
    rule = rule_for(metric)
    if rule.worse == "never":
        return None
    t = rule.tolerance if tolerance is None else tolerance
    spread = abs(reference) * t if rule.kind == "relative" else t
    return reference - spread, reference + spread


def compare(baseline: list[dict], candidate: list[dict]) -> list[Comparison]:
    base, cand = _index(baseline, "baseline"), _index(candidate, "candidate")
    out = []
    for key, row in base.items():
        rule = rule_for(key[3])
        tolerance = float(row["tolerance"]) if row.get("tolerance") not in (None, "") else rule.tolerance
        b = _value(row)
        if key not in cand:
            out.append(Comparison(key, b, None, "missing", tolerance))
            continue
        c = _value(cand[key])
        if b is None:
            verdict = "ok" if c is None else "better"  # a case that failed in the baseline and runs now
        elif c is None:
            verdict = "failed"
        else:
            verdict = _verdict(b, c, rule, tolerance)
        out.append(Comparison(key, b, c, verdict, tolerance))
    for key, row in cand.items():
        if key not in base:
            rule_for(key[3])
            value = _value(row)
            nan = value is not None and math.isnan(value)
            out.append(Comparison(key, None, value, "not a number" if nan else "new"))
    return out

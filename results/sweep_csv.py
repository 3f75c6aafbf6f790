"""The CSV a ``bench sweep`` writes: its columns, reading it back, and its wide rows as the store's
measurements. It lives in ``results`` because ``results compare`` reads sweep CSVs as well as the
store's own exports; ``bench.sweep`` writes it."""

from __future__ import annotations

import csv
from pathlib import Path

from results.store import Measurement

KEY = ("model", "resolution", "metric", "batch", "device", "dtype", "threads")
COLUMNS = [
    *KEY,
    "pixels",
    "frames",
    "status",
    "detail",
    "tokens",
    "seq_len",
    "params_m",
    "gmacs",
    "gflops",
    "median_ms",
    "iqr_ms",
    "min_ms",
    "samples_per_s",
    "runs",
    "backends",
    "baseline_mb",
    "inference_peak_mb",
    "train_peak_mb",
    "inference_delta_mb",
    "train_delta_mb",
    "inference_estimate_mb",
    "train_estimate_mb",
    "source",
]


def case_key(row: dict) -> tuple[str, ...]:
    return tuple(str(row[k]) for k in KEY)


def read_rows(path: Path) -> list[dict]:
    """Every whole row of a sweep CSV (a line cut short by a kill is dropped)."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("status") and None not in row]


def latest_rows(rows: list[dict]) -> list[dict]:
    """One row per case: the last one written (a retried case supersedes its failure)."""
    return list({case_key(row): row for row in rows}.values())


_VALUES = {  # sweep column -> (store metric, unit)
    "flops": [("gmacs", "gmacs", "GMAC"), ("gflops", "gflops", "GFLOP"), ("params_m", "params_m", "M params")],
    "latency": [
        ("median_ms", "latency_median", "ms"),
        ("iqr_ms", "latency_iqr", "ms"),
        ("samples_per_s", "throughput", "samples/s"),
    ],
    "train": [
        ("median_ms", "train_step_median", "ms"),
        ("iqr_ms", "train_step_iqr", "ms"),
        ("samples_per_s", "train_throughput", "samples/s"),
    ],
    "memory": [
        ("inference_peak_mb", "memory_inference_peak", "MiB"),
        ("train_peak_mb", "memory_train_peak", "MiB"),
        ("inference_delta_mb", "memory_inference_delta", "MiB"),
        ("train_delta_mb", "memory_train_delta", "MiB"),
        ("inference_estimate_mb", "memory_inference_estimate", "MiB"),
        ("train_estimate_mb", "memory_train_estimate", "MiB"),
    ],
}


def row_measurements(row: dict) -> list[Measurement]:
    """A sweep row as store measurements (one per value; a failed case as one row with its status). A timing
    or measured memory is identified by its thread count too; a count on the meta device is not."""
    variant = "" if row["metric"] == "flops" else f"threads={row['threads']}"
    common = dict(
        model=row["model"],
        resolution=str(row["resolution"]),
        batch=int(row["batch"]),
        variant=variant,
        dtype=row["dtype"],
        device=row["device"] if row["metric"] != "flops" else "meta",
        backend=row.get("backends", "") or "",
        source="bench sweep",
        config={
            "threads": row["threads"],
            "tokens": row.get("tokens"),
            "seq_len": row.get("seq_len"),
            "frames": int(row.get("frames") or 0),
            "memory_source": row.get("source"),
        },
    )
    values = [
        Measurement(metric=metric, value=float(row[column]), unit=unit, **common)
        for column, metric, unit in _VALUES[row["metric"]]
        if row.get(column) not in (None, "")
    ]
    if row["status"] != "ok":  # the failure, and what was counted regardless (a memory estimate on meta)
        failure = Measurement(
            metric=row["metric"], value=None, unit="", status=row["status"], detail=row["detail"], **common
        )
        return [failure, *(m for m in values if m.metric.endswith("_estimate"))]
    return values

"""Sweeps: models x resolutions x metrics, each case in its own subprocess with a time limit.

A case that runs out of memory (a MemoryError, CUDA's out-of-memory error, or the process killed by the
kernel) becomes an ``OOM`` row, one that runs too long a ``timeout`` row, any other failure an ``error`` row
with the last line of its stderr; the larger resolutions of that model and metric are then recorded as
``skipped`` without running. Rows are appended to the CSV as each case finishes (one write per row, so a
killed sweep leaves whole rows), and a sweep run again skips every case the CSV already holds (``force`` to
redo), so an interrupted sweep resumes. Error and timeout rows (and the sizes skipped after a timeout) are
run again on a rerun; the newer row of a case supersedes the older (``latest_rows``). Two sweeps writing one
CSV claim each case with a lock (``<csv>.lock``, one byte per case), so no case runs twice at once.

A clip of a video entry is the resolution ``TxWxH`` (frames, width, height; ``bench.inputs``): the frame
count is part of a case's key and of every store row's resolution, and the ``frames`` column repeats it
(0 for an image); ``pixels`` is one frame's, ``tokens`` the whole clip's.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.inputs import parse_resolution
from mambabench.files import claim, claim_byte
from results.sweep_csv import COLUMNS, case_key, latest_rows, read_rows, row_measurements

METRICS = ("flops", "latency", "train", "memory")  # train: one training step (bench latency --train)
_OOM_MARKERS = ("out of memory", "memoryerror", "cannot allocate memory", "defaultcpuallocator: can't allocate")


@dataclass(frozen=True)
class SweepSettings:
    batch: int = 1
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    min_time: float = 1.0
    timeout_s: float = 600.0


def _settings_key(settings: SweepSettings) -> dict:
    return dict(batch=settings.batch, device=settings.device, dtype=settings.dtype, threads=settings.threads)


RETRIED = ("error", "timeout")  # statuses a rerun measures again (OOM is a result: the case does not fit)


def _retried(row: dict) -> bool:
    return row["status"] in RETRIED or (row["status"] == "skipped" and row.get("detail", "").startswith("timeout"))


def finished_keys(path: Path) -> set[tuple[str, ...]]:
    """The cases a rerun skips: those whose latest row is not a failure worth retrying."""
    return {case_key(row) for row in latest_rows(read_rows(path)) if not _retried(row)}


def _append(path: Path, row: dict) -> None:
    new = not path.exists()
    if not new:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        if header != COLUMNS:  # a CSV from an older version: rewrite it with today's columns first
            rows = read_rows(path)
            with path.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore")
    if new:
        writer.writeheader()
    writer.writerow(row)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, text.getvalue().encode())  # one append: a kill leaves no half row behind
    finally:
        os.close(descriptor)


def _case_byte(key: tuple[str, ...]) -> int:
    return int.from_bytes(hashlib.sha1("|".join(key).encode()).digest()[:4], "big")


def classify_failure(returncode: int, stderr: str) -> tuple[str, str]:
    """(status, detail) of a failed case."""
    text = stderr.lower()
    if returncode in (-9, 137) or any(marker in text for marker in _OOM_MARKERS):
        return "OOM", "killed (out of memory)" if returncode in (-9, 137) else "out of memory"
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return "error", (last[-1] if last else f"exit code {returncode}")[:300]


def run_case_subprocess(model: str, resolution: str, metric: str, settings: SweepSettings) -> tuple[str, str, dict]:
    """Run one case in a fresh Python process: (status, detail, measured values)."""
    command = [
        sys.executable,
        "-m",
        "bench.case",
        "--model",
        model,
        "--res",
        resolution,
        "--metric",
        metric,
        "--batch",
        str(settings.batch),
        "--device",
        settings.device,
        "--dtype",
        settings.dtype,
        "--threads",
        str(settings.threads),
        "--min-time",
        str(settings.min_time),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=settings.timeout_s)
    except subprocess.TimeoutExpired:
        return "timeout", f"over {settings.timeout_s:g} s", {}
    if done.returncode != 0:
        status, detail = classify_failure(done.returncode, done.stderr)
        return status, detail, {}
    return "ok", "", json.loads(done.stdout.strip().splitlines()[-1])


def run_flops_batch(model: str, resolutions: list[str], settings: SweepSettings) -> dict[str, tuple[str, str, dict]]:
    """FLOP counts of one model at several sizes in one process (counting on the meta device cannot run out of
    memory, and one import instead of one per size makes the quick sweep minutes faster). Sizes whose count
    did not come back are left out, so the caller runs them one by one."""
    command = [
        sys.executable,
        "-m",
        "bench.case",
        "--model",
        model,
        "--res",
        *resolutions,
        "--metric",
        "flops",
        "--batch",
        str(settings.batch),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=settings.timeout_s)
    except subprocess.TimeoutExpired:
        return {}
    results = {}
    for resolution, line in zip(resolutions, done.stdout.strip().splitlines(), strict=False):
        values = json.loads(line)
        error = values.pop("_error", None)
        results[resolution] = ("error", error, {}) if error else ("ok", "", values)
    return results


def run_sweep(
    models: Iterable[str],
    resolutions: Iterable[str],
    metrics: Iterable[str],
    out_csv: Path,
    settings: SweepSettings = SweepSettings(),
    force: bool = False,
    run_case: Callable[[str, str, str, SweepSettings], tuple[str, str, dict]] = run_case_subprocess,
    on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run the missing cases (all with ``force``), smallest resolution first; returns the new rows."""
    ordered = sorted(resolutions, key=lambda r: max((p := parse_resolution(r)).frames, 1) * p.width * p.height)
    done = finished_keys(out_csv) if not force else set()
    lock = out_csv.with_name(out_csv.name + ".lock")
    new_rows = []
    for model in models:
        for metric in metrics:
            failed_at = None
            batch = {}
            if metric == "flops" and run_case is run_case_subprocess:
                pending = [str(parse_resolution(r)) for r in ordered]
                pending = [
                    r
                    for r in pending
                    if case_key(dict(model=model, resolution=r, metric=metric, **_settings_key(settings))) not in done
                ]
                batch = run_flops_batch(model, pending, settings) if pending else {}
            for resolution in ordered:
                res = parse_resolution(resolution)
                row = dict(
                    model=model,
                    resolution=str(res),
                    metric=metric,
                    batch=settings.batch,
                    device=settings.device,
                    dtype=settings.dtype,
                    threads=settings.threads,
                    pixels=res.width * res.height,
                    frames=res.frames,
                )
                if case_key(row) in done:
                    continue
                with claim_byte(lock, _case_byte(case_key(row))) as mine:
                    if not mine or (not force and case_key(row) in finished_keys(out_csv)):
                        continue  # another sweep on this CSV is running it, or has just run it
                    if failed_at is not None:
                        row.update(status="skipped", detail=f"{failed_at} at a smaller resolution")
                    else:
                        status, detail, values = batch.get(str(res)) or run_case(model, str(res), metric, settings)
                        row.update(values, status=status, detail=detail)
                        if status in ("OOM", "timeout"):
                            failed_at = status
                    _append(out_csv, row)
                new_rows.append(row)
                if on_row:
                    on_row(row)
    return new_rows


# ---------------------------------------------------------------- on a cluster: one job per case


def sweep_case_job(model: str, resolution: str, metric: str, settings: SweepSettings, job_folder: Path) -> None:
    """One case as a cluster job: its row in the job's own CSV and results store (merged by the driver)."""
    from results.store import ResultsStore

    recorder = ResultsStore(job_folder / "results.sqlite").recorder()
    run_sweep(
        [model],
        [resolution],
        [metric],
        job_folder / "sweep.csv",
        settings,
        force=True,
        on_row=lambda row: recorder.add(row_measurements(row)),
    )


def sweep_cases(
    models: Iterable[str], resolutions: Iterable[str], metrics: Iterable[str], settings: SweepSettings
) -> dict[str, tuple]:
    """job key -> (model, resolution, metric) for every case of a sweep."""
    from mambabench.cluster import job_key

    cases = {}
    for model in models:
        for metric in metrics:
            for resolution in resolutions:
                res = str(parse_resolution(resolution))
                key = job_key(
                    model, res, metric, f"b{settings.batch}", settings.device, settings.dtype, f"t{settings.threads}"
                )
                cases[key] = (model, res, metric)
    return cases


def run_sweep_on_cluster(
    models: Iterable[str],
    resolutions: Iterable[str],
    metrics: Iterable[str],
    out_csv: Path,
    settings: SweepSettings,
    options,
    jobs_dir: Path,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[list[dict], dict[str, str]]:
    """Every case the CSV does not hold (all with ``force``) as a job; waits; appends the jobs' rows to the CSV
    (a case once: what the CSV already finished is not appended again). Returns (new rows, job states).
    Unlike the in-process sweep, larger sizes are not skipped after an OOM: the cases run side by side."""
    from mambabench.cluster import run_jobs

    cases = sweep_cases(models, resolutions, metrics, settings)
    done = finished_keys(out_csv) if not force else set()

    def key_of(case):
        model, res, metric = case
        return case_key(dict(model=model, resolution=res, metric=metric, **_settings_key(settings)))

    todo = {key: case for key, case in cases.items() if key_of(case) not in done}
    if force:
        for key in todo:
            (jobs_dir / key / "done.json").unlink(missing_ok=True)
    states = run_jobs(
        {key: (sweep_case_job, (*case, settings)) for key, case in todo.items()},
        jobs_dir,
        options,
        "mambabench-sweep",
        log=log,
    )
    new = []
    with claim(out_csv.with_name(out_csv.name + ".merge.lock")):
        finished = finished_keys(out_csv)
        for key in todo:
            for row in latest_rows(read_rows(jobs_dir / key / "sweep.csv")):
                if case_key(row) not in finished or force:
                    _append(out_csv, row)
                    new.append(row)
    return new, states

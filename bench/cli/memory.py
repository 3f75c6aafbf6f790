"""``bench memory``: peak memory of a forward and a training step, each case in a fresh process."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from bench.cli.common import FRAMES, NO_STORE, PX, STORE, app, check_counts, console, model_cases, record_rows
from bench.sweep import SweepSettings, run_case_subprocess
from mambabench.device import resolve_device
from results.sweep_csv import row_measurements


@app.command("memory")
def memory_command(
    model: list[str] = typer.Option(..., "--model", "-m", help="Registry name(s); repeat for several."),
    res: list[str] = typer.Option(["256"], "--res", "-r", help="Image size: 256 or WxH."),
    batch: int = typer.Option(1, help="Batch size."),
    device: str = typer.Option("cpu", help="cpu, cuda, ..."),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16."),
    threads: int = typer.Option(1, help="torch intra-op threads."),
    timeout: float = typer.Option(600.0, help="Seconds per case."),
    frames: list[int] = FRAMES,
    as_json: bool = typer.Option(False, "--json"),
    store: Path = STORE,
    no_store: bool = NO_STORE,
) -> None:
    """Peak memory of inference and of one training step (each case in a fresh process), beside an estimate.
    Exits 1 when a case failed (error or timeout; an OOM is a result)."""
    from bench.memory import estimate_row

    check_counts(threads=threads, batch=batch)
    resolve_device(device)
    cases = model_cases(model, res, frames)
    settings = SweepSettings(batch, device, dtype, threads, 1.0, timeout)
    rows = []
    for name, size in cases:
        resolution = str(size)
        status, detail, values = run_case_subprocess(name, resolution, "memory", settings)
        if status != "ok":  # the estimate is counted on meta: shown whatever the measurement did
            values = estimate_row(name, resolution, batch, dtype)
        rows.append(
            {
                "model": name,
                "resolution": resolution,
                "batch": batch,
                "device": device,
                "dtype": dtype,
                "threads": threads,
                "metric": "memory",
                "status": status,
                "detail": detail,
                **values,
            }
        )
    record_rows(store, no_store, [m for row in rows for m in row_measurements(row)], quiet=as_json)
    failed = [r for r in rows if r["status"] in ("error", "timeout")]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        raise typer.Exit(1 if failed else 0)
    table = Table(title=f"Peak memory (MiB), batch {batch}, {dtype} on {device}: measured, and estimated on meta")
    for col in ("model", PX, "status", "inference", "train step", "inf. est.", "train est.", "baseline"):
        left = col in ("model", PX, "status")
        table.add_column(col, justify="left" if left else "right", no_wrap=col == "model")

    def mib(row: dict, key: str) -> str:
        return f"{row[key]:.0f}" if isinstance(row.get(key), float | int) else "-"

    for r in rows:
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['detail']}"
        keys = ("inference_peak_mb", "train_peak_mb", "inference_estimate_mb", "train_estimate_mb", "baseline_mb")
        table.add_row(r["model"], r["resolution"], status, *(mib(r, k) for k in keys))
    console.print(table)
    if device == "cpu":
        console.print(
            "Measured: peak RSS of a fresh process per case, interpreter and torch included (baseline: RSS "
            "before the model is built). Estimates: weights + largest activations; training adds gradients, "
            "AdamW moments and the tensors saved for backward."
        )
    else:
        console.print("Measured: the CUDA caching allocator's peak, reset before each phase.")
    if failed:
        console.print(f"[red]{len(failed)} case(s) failed (error or timeout); a longer --timeout may help[/]")
        raise typer.Exit(1)

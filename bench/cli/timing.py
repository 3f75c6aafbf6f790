"""``bench latency`` and ``bench profile``: timed forwards, beside the counted MACs and this CPU's GEMM rate."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import typer
from rich.table import Table

from bench.cli.common import FRAMES, NO_STORE, PX, STORE, app, check_counts, console, model_cases, record_rows
from bench.inputs import parse_resolution
from bench.latency import TRAIN_MAC_FACTOR, measure_latency
from mambabench.device import resolve_device
from mambabench.errors import UserError
from results.store import Measurement


@app.command("latency")
def latency_command(
    model: list[str] = typer.Option(..., "--model", "-m", help="Registry name(s); repeat for several."),
    res: list[str] = typer.Option(["256"], "--res", "-r", help="Image size: 256 or WxH like 3840x2160."),
    batch: int = typer.Option(1, help="Batch size."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16."),
    threads: int = typer.Option(1, help="torch intra-op threads (1 is the reliable choice on shared CPUs)."),
    steps: int = typer.Option(None, help="Time a whole sampling loop of this many steps instead of one forward."),
    cfg: bool = typer.Option(False, "--cfg", help="With --steps: classifier-free guidance (batch doubled)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model (compile time not counted)."),
    train: bool = typer.Option(
        False, "--train", help="Time a training step (forward, backward, AdamW) at this shape instead of a forward."
    ),
    min_time: float = typer.Option(1.0, help="Repeat until this many seconds (and at least 5 runs)."),
    frames: list[int] = FRAMES,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
    store: Path = STORE,
    no_store: bool = NO_STORE,
) -> None:
    """Median latency (with IQR and minimum) and throughput, after warm-up, synchronised on GPUs.

    On a CPU, each case first prints its counted MACs and the time a forward would take at this CPU's GEMM
    peak; a case estimated at over 30 s runs once (warm-up at the model's small native size) with a
    progress bar and ETA per block. Ctrl-C stops cleanly and reports nothing partial."""
    import torch

    check_counts(threads=threads, batch=batch, **({"steps": steps} if steps is not None else {}))
    if train and (steps is not None or cfg):
        raise UserError("--train times one training step: drop --steps and --cfg (they time sampling)")
    resolve_device(device)
    cases = model_cases(model, res, frames)
    torch.set_num_threads(threads)
    results = []
    try:
        for name, resolution in cases:
            measure = partial(
                measure_latency,
                name,
                resolution,
                batch,
                device,
                dtype,
                threads,
                steps,
                cfg,
                compile,
                min_time,
                train=train,
            )
            estimate = device == "cpu" and not compile
            results.append(
                _measure_case(measure, name, resolution, batch, cfg, steps, threads, estimate, as_json, train)
            )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: the case in progress was dropped, nothing partial is reported[/]")
        record_rows(store, no_store, _latency_rows(results), quiet=as_json)  # the finished cases are kept
        raise typer.Exit(130) from None
    record_rows(store, no_store, _latency_rows(results), quiet=as_json)
    if as_json:
        for result in results:
            print(json.dumps(result.as_dict()))
        return
    console.print(_latency_table(results, device, dtype, threads))


def _measure_case(
    measure: Callable,
    name: str,
    resolution,
    batch: int,
    cfg: bool,
    steps: int | None,
    threads: int,
    estimate: bool,
    quiet: bool,
    train: bool = False,
):
    """One latency case. ``estimate`` (a CPU, no compile): first the counted MACs and the time at this CPU's GEMM
    peak, printed unless ``quiet``; a case over 30 s by that floor runs once, with a per-block progress bar. The
    result carries its share of the GEMM peak (the floor over the median)."""
    from bench.latency import estimate_seconds

    single, floor_s = False, None
    if estimate:
        macs, gemm, floor_s = estimate_seconds(name, resolution, batch, cfg, train)
        floor_s *= steps or 1
        single = floor_s > 30
        if not quiet:
            note = "; timing one run (warm-up at the model's native size)" if single else ""
            per = f"training step ({TRAIN_MAC_FACTOR}x the forward's)" if train else "forward"
            console.print(
                f"{name} @ {resolution}: {macs / 1e12:.3f} TMAC counted per {per}; at "
                f"this CPU's fp32 GEMM peak ({gemm:.1f} GMAC/s, {threads} thread(s), "
                f"measured now) the timed unit takes at least {floor_s:.1f} s{note}"
            )
    if not single or quiet:
        result = measure(single_run=single)
    else:
        result = _with_progress(measure, name, resolution)
    if floor_s is not None:
        result.gemm_share = floor_s / result.median_s
    return result


def _with_progress(measure: Callable, name: str, resolution):
    """A single timed run with a per-block progress bar and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("blocks"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"{name} {resolution}", total=None)
        return measure(single_run=True, on_block=lambda done, total: progress.update(task, completed=done, total=total))


def _latency_table(results: list, device: str, dtype: str, threads: int) -> Table:
    table = Table(title=f"Latency on {device} ({dtype}, {threads} thread(s)): median of repeated runs after warm-up")
    for col in (
        "model",
        PX,
        "unit",
        "batch",
        "median ms",
        "IQR ms",
        "min ms",
        "samples/s",
        "GEMM share",
        "runs",
        "backends",
    ):
        table.add_column(col, no_wrap=col == "model")
    for r in results:
        table.add_row(
            r.model,
            r.resolution,
            r.unit,
            str(r.batch),
            f"{1e3 * r.median_s:.1f}",
            f"{1e3 * r.iqr_s:.1f}",
            f"{1e3 * r.min_s:.1f}",
            f"{r.samples_per_s:.2f}",
            "-" if r.gemm_share is None else f"{100 * r.gemm_share:.1f}%",
            str(r.runs),
            ", ".join(f"{k}={v}" for k, v in sorted(r.backends.items())) or "-",
        )
    return table


def _latency_rows(results: list) -> list[Measurement]:
    rows = []
    for r in results:
        variant = f"threads={r.threads}" + ("" if r.unit == "forward" else f" unit={r.unit}")
        common = dict(
            model=r.model,
            resolution=r.resolution,
            batch=r.batch,
            dtype=r.dtype,
            device=r.device,
            backend=",".join(f"{k}={v}" for k, v in sorted(r.backends.items())),
            source="bench latency",
            variant=variant,
            config={"runs": r.runs, "unit": r.unit, "threads": r.threads},
        )
        rows += [
            Measurement(metric="latency_median", value=1e3 * r.median_s, unit="ms", **common),
            Measurement(metric="latency_iqr", value=1e3 * r.iqr_s, unit="ms", **common),
            Measurement(metric="latency_min", value=1e3 * r.min_s, unit="ms", **common),
            Measurement(metric="throughput", value=r.samples_per_s, unit="samples/s", **common),
        ]
        if r.gemm_share is not None:
            rows.append(
                Measurement(metric="gemm_share", value=r.gemm_share, unit="fraction of fp32 GEMM peak", **common)
            )
    return rows


@app.command("profile")
def profile_command(
    model: str = typer.Option(..., "--model", "-m", help="Registry name."),
    res: str = typer.Option("256", "--res", "-r", help="Image size: 256 or WxH."),
    batch: int = typer.Option(1, help="Batch size."),
    threads: int = typer.Option(1, help="torch intra-op threads (1 is the reliable choice on shared CPUs)."),
    store: Path = STORE,
    no_store: bool = NO_STORE,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per row instead of tables."),
) -> None:
    """Time per op category and per block type of one CPU forward, beside the counted MACs, the achieved
    GMAC/s and the share of this CPU's fp32 GEMM rate measured in the same run."""
    from bench.profile import profile_model

    check_counts(threads=threads, batch=batch)
    result = profile_model(model, parse_resolution(res), batch, threads)
    record_rows(
        store,
        no_store,
        [
            Measurement(
                model,
                f"profile_{r.kind}_s",
                r.seconds,
                "s",
                result.resolution,
                batch,
                "float32",
                "cpu",
                detail=r.name,
                source="bench profile",
                variant=f"threads={threads} {r.kind}={r.name}",
                config={
                    "threads": threads,
                    "macs": r.macs,
                    "share_of_gemm": r.share_of_gemm,
                    "gemm_gmacs_per_s": result.gemm_gmacs_per_s,
                    "calls": r.calls,
                },
            )
            for r in result.rows
        ],
        quiet=as_json,
    )
    if as_json:
        for r in result.rows:
            print(
                json.dumps(
                    {
                        "model": model,
                        "resolution": result.resolution,
                        "threads": threads,
                        "device": "cpu",
                        "dtype": "float32",
                        **r.as_dict(),
                    }
                )
            )
        return
    gemm, rate = result.gemm_gmacs_per_s, result.total_macs / result.total_s / 1e9
    console.print(
        f"{model} @ {result.resolution}, batch {batch}, CPU {threads} thread(s): one forward "
        f"{result.total_s:.3f} s, {result.total_macs / 1e9:.2f} GMACs counted ({rate:.1f} GMAC/s = "
        f"{100 * rate / gemm:.0f}% of this CPU's fp32 GEMM peak, {gemm:.1f} GMAC/s measured now)"
    )
    for kind, title in (("category", "op category"), ("block", "block type")):
        table = Table(title=f"Time per {title} (MAC = multiply-add, counted on meta; GMAC/s achieved)")
        for col in (title, "calls", "s", "% of time", "GMACs", "GMAC/s", "% of GEMM"):
            table.add_column(col, justify="left" if col == title else "right")
        for r in (r for r in result.rows if r.kind == kind):
            rate, share = r.gmacs_per_s, r.share_of_gemm
            table.add_row(
                r.name,
                str(r.calls or "-"),
                f"{r.seconds:.3f}",
                f"{100 * r.share_of_time:.1f}",
                "-" if r.macs is None else f"{r.macs / 1e9:.2f}",
                "-" if rate is None else f"{rate:.1f}",
                "-" if share is None else f"{100 * share:.0f}",
            )
        console.print(table)
    console.print(
        "Scan MACs follow the counting convention of zoo/ops/flops.py (Mamba-1: 9/2 per state update; "
        "SSD: its chunked matmuls at chunk 256), so a scan's share of GEMM compares implementations, "
        "not hardware peaks."
    )

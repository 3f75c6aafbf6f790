"""``bench``: what a registry entry costs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from bench.flops import FlopCount, count_flops
from bench.fvcore_counter import fvcore_macs
from bench.inputs import Resolution, case_resolution, parse_resolution
from bench.latency import measure_latency
from bench.sweep import METRICS, RETRIED, SweepSettings, row_measurements, run_case_subprocess, run_sweep
from results.cli_errors import run_app
from results.cluster import cli_options as cluster_cli_options
from results.store import STORE_RULE, Measurement, ResultsStore

app = typer.Typer(help="Cost of any registry entry at any resolution: FLOPs, latency, memory, sweeps, paper tables.",
                  no_args_is_help=True)  # fmt: skip
console = Console(width=max(Console().width, 120))  # a video row of `bench flops` needs ~120


def _check_device(device: str) -> None:
    """A one-line error and exit 2 for a device torch does not know or that is not here."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        console.print(f"[red]unknown device {device!r}: use cpu, cuda or cuda:N[/]")
        raise typer.Exit(2) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        console.print(f"[red]--device {device}: no CUDA GPU is visible to torch on this machine; use --device cpu[/]")
        raise typer.Exit(2)
    if dev.type not in ("cpu", "cuda"):
        console.print(f"[red]--device {device}: only cpu and cuda are supported[/]")
        raise typer.Exit(2)


STORE = typer.Option(None, "--store", help=f"Results store ({STORE_RULE}).")
_CLUSTER = cluster_cli_options()
NO_STORE = typer.Option(False, "--no-store", help="Do not record the rows in the results store.")
FRAMES = typer.Option([], "--frames", help="Video entries: frames per clip, repeat for several (default: the "
                      "entry's own clip length, 16 for the XL entries). Rows name a clip TxWxH.")  # fmt: skip


def _record(store: Path | None, no_store: bool, rows: list[Measurement], quiet: bool = False) -> None:
    """Every bench command's rows go to the store (one run per command, none when nothing was measured)."""
    if no_store or not rows:
        return
    recorder = ResultsStore(store).recorder()
    recorder.add(rows)
    if not quiet:
        console.print(f"{len(rows)} row(s) -> results store {recorder.store.path} (run {recorder.run_id})",
                      style="dim", highlight=False)  # fmt: skip


def _check_model(name: str) -> None:
    """An unknown registry name: one line listing the closest names (before any process starts)."""
    import zoo

    zoo.get_entry(name)


def _cases(models: list[str], res: list[str], frames: list[int]) -> list[tuple[str, Resolution]]:
    """Every (model, size) case, a video entry's sizes as clips (``case_resolution``), checked before any runs:
    an unknown model, a bad size or a frame count for an image entry is one line and exit 2."""
    import zoo

    try:
        return [(name, case_resolution(zoo.get_entry(name), parse_resolution(r, f)))
                for name in models for r in res for f in (frames or [None])]  # fmt: skip
    except (KeyError, ValueError) as exc:
        console.print(f"[red]{exc.args[0]}[/]", highlight=False)
        raise typer.Exit(2) from exc


def _check_counts(**values: int) -> None:
    bad = [f"--{k} {v}" for k, v in values.items() if v is None or v < 1]
    if bad:
        raise ValueError(f"{', '.join(bad)}: must be a whole number >= 1")


def _share(count: FlopCount, category: str) -> str:
    return f"{100 * count.by_category.get(category, 0) / count.flops:.0f}%" if count.flops else "-"


_PX = "px"  # WxH, or TxWxH for a clip of T frames


@app.callback()
def main() -> None:
    """Benchmarks of registry entries."""


@app.command("flops")
def flops_command(
    model: list[str] = typer.Option(..., "--model", "-m", help="Registry name(s); repeat for several."),
    res: list[str] = typer.Option(["256"], "--res", "-r", help="Image size: 256 or WxH like 3840x2160."),
    batch: int = typer.Option(1, help="Batch size."),
    counter: str = typer.Option("meta", help="meta (ours) or fvcore (also fvcore: a real CPU forward, <= 1 TMAC)."),
    frames: list[int] = FRAMES,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
    store: Path = STORE,
    no_store: bool = NO_STORE,
) -> None:
    """Parameters, MACs and FLOPs of one forward pass, counted on the meta device (seconds, no memory)."""
    if counter not in ("meta", "fvcore"):
        raise ValueError(f"--counter must be meta or fvcore, got {counter!r}")
    _check_counts(batch=batch)
    rows, fvcore = [], {}
    for name, resolution in _cases(model, res, frames):
        try:
            rows.append(count_flops(name, resolution, batch))
            if counter == "fvcore":
                fvcore[len(rows) - 1] = fvcore_macs(name, resolution, batch, rows[-1].macs)[0]
        except (KeyError, ValueError) as exc:
            console.print(f"[red]{exc.args[0]}[/]")
            raise typer.Exit(2) from exc
    _record(store, no_store, [
        Measurement(c.model, metric, value, unit, c.resolution, batch, device="meta", source="bench flops",
                    config={"seq_len": c.seq_len, "input_shape": list(c.input_shape)})
        for c in rows
        for metric, value, unit in (("gmacs", c.macs / 1e9, "GMAC"), ("gflops", c.flops / 1e9, "GFLOP"),
                                    ("params_m", c.params / 1e6, "M params"))
    ], quiet=as_json)  # fmt: skip
    if as_json:
        for c in rows:
            print(json.dumps({"model": c.model, "resolution": c.resolution, "input_shape": c.input_shape,
                              "seq_len": c.seq_len, "params": c.params, "macs": c.macs, "flops": c.flops,
                              "by_category": c.by_category,
                              "device": "meta (counted)", "batch": batch,
                              "fvcore_macs": fvcore.get(rows.index(c))}))  # fmt: skip
        return
    table = Table(title=f"Forward cost, batch {batch}, counted on the meta device (MAC = multiply-add; FLOPs = 2 MACs)")
    for col in ("model", _PX, "input", "seq", "params (M)", "GMACs", "GFLOPs", "attn", "scan", "linear",
                "conv"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("model", _PX, "input") else "right",
                         no_wrap=col in ("model", _PX, "input"), overflow="fold")  # fmt: skip
    for c in rows:
        share = partial(_share, c)
        shares = (share("attention"), share("scan"), share("linear"), share("conv"))
        table.add_row(
            c.model,
            c.resolution,
            "x".join(map(str, c.input_shape[1:])),
            str(c.seq_len),
            f"{c.params / 1e6:.2f}",
            f"{c.macs / 1e9:.2f}",
            f"{c.flops / 1e9:.2f}",
            *shares,
        )
    console.print(table)
    for index, macs in fvcore.items():
        c = rows[index]
        delta = 100 * (macs - c.macs) / c.macs
        console.print(f"fvcore cross-check {c.model} @ {c.resolution}: {macs / 1e9:.2f} GMACs ({delta:+.2f}% vs ours; "
                      "fvcore also counts layer norms)")  # fmt: skip


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

    _check_counts(threads=threads, batch=batch, **({"steps": steps} if steps is not None else {}))
    _check_device(device)
    cases = _cases(model, res, frames)
    torch.set_num_threads(threads)
    results = []
    try:
        for name, resolution in cases:
            try:
                measure = partial(measure_latency, name, resolution, batch, device, dtype, threads, steps, cfg,
                                  compile, min_time)  # fmt: skip
                estimate = device == "cpu" and not compile
                results.append(_measure_case(measure, name, resolution, batch, cfg, steps, threads, estimate, as_json))
            except (KeyError, ValueError) as exc:
                console.print(f"[red]{exc.args[0]}[/]")
                raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: the case in progress was dropped, nothing partial is reported[/]")
        _record(store, no_store, _latency_rows(results), quiet=as_json)  # the finished cases are kept
        raise typer.Exit(130) from None
    _record(store, no_store, _latency_rows(results), quiet=as_json)
    if as_json:
        for result in results:
            print(json.dumps(result.as_dict()))
        return
    console.print(_latency_table(results, device, dtype, threads))


def _measure_case(measure: Callable, name: str, resolution, batch: int, cfg: bool, steps: int | None, threads: int,
                  estimate: bool, quiet: bool):  # fmt: skip
    """One latency case. ``estimate`` (a CPU, no compile): first the counted MACs and the time at this CPU's GEMM
    peak, printed unless ``quiet``; a case over 30 s by that floor runs once, with a per-block progress bar."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from bench.latency import estimate_seconds

    single = False
    if estimate:
        macs, gemm, floor_s = estimate_seconds(name, resolution, batch, cfg)
        floor_s *= steps or 1
        single = floor_s > 30
        if not quiet:
            note = "; timing one run (warm-up at the model's native size)" if single else ""
            console.print(
                f"{name} @ {resolution}: {macs / 1e12:.3f} TMAC counted per forward; at "
                f"this CPU's fp32 GEMM peak ({gemm:.1f} GMAC/s, {threads} thread(s), "
                f"measured now) the timed unit takes at least {floor_s:.1f} s{note}"
            )
    if not single or quiet:
        return measure(single_run=single)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("blocks"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as progress:  # fmt: skip
        task = progress.add_task(f"{name} {resolution}", total=None)
        return measure(single_run=True, on_block=lambda done, total: progress.update(task, completed=done, total=total))


def _latency_table(results: list, device: str, dtype: str, threads: int) -> Table:
    table = Table(title=f"Latency on {device} ({dtype}, {threads} thread(s)): median of repeated runs after warm-up")
    for col in ("model", _PX, "unit", "batch", "median ms", "IQR ms", "min ms", "samples/s", "runs",
                "backends"):  # fmt: skip
        table.add_column(col, no_wrap=col == "model")
    for r in results:
        table.add_row(r.model, r.resolution, r.unit, str(r.batch), f"{1e3 * r.median_s:.1f}", f"{1e3 * r.iqr_s:.1f}",
                      f"{1e3 * r.min_s:.1f}", f"{r.samples_per_s:.2f}", str(r.runs),
                      ", ".join(f"{k}={v}" for k, v in sorted(r.backends.items())) or "-")  # fmt: skip
    return table


def _latency_rows(results: list) -> list[Measurement]:
    rows = []
    for r in results:
        variant = f"threads={r.threads}" + ("" if r.unit == "forward" else f" unit={r.unit}")
        common = dict(model=r.model, resolution=r.resolution, batch=r.batch, dtype=r.dtype, device=r.device,
                      backend=",".join(f"{k}={v}" for k, v in sorted(r.backends.items())), source="bench latency",
                      variant=variant, config={"runs": r.runs, "unit": r.unit, "threads": r.threads})  # fmt: skip
        rows += [Measurement(metric="latency_median", value=1e3 * r.median_s, unit="ms", **common),
                 Measurement(metric="latency_iqr", value=1e3 * r.iqr_s, unit="ms", **common),
                 Measurement(metric="latency_min", value=1e3 * r.min_s, unit="ms", **common),
                 Measurement(metric="throughput", value=r.samples_per_s, unit="samples/s", **common)]  # fmt: skip
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

    _check_counts(threads=threads, batch=batch)
    try:
        result = profile_model(model, parse_resolution(res), batch, threads)
    except (KeyError, ValueError) as exc:
        console.print(f"[red]{exc.args[0]}[/]")
        raise typer.Exit(2) from exc
    _record(store, no_store, [
        Measurement(model, f"profile_{r.kind}_s", r.seconds, "s", result.resolution, batch, "float32", "cpu",
                    detail=r.name, source="bench profile", variant=f"threads={threads} {r.kind}={r.name}",
                    config={"threads": threads, "macs": r.macs, "share_of_gemm": r.share_of_gemm,
                            "gemm_gmacs_per_s": result.gemm_gmacs_per_s, "calls": r.calls})
        for r in result.rows
    ], quiet=as_json)  # fmt: skip
    if as_json:
        for r in result.rows:
            print(json.dumps({"model": model, "resolution": result.resolution, "threads": threads,
                              "device": "cpu", "dtype": "float32", **r.as_dict()}))  # fmt: skip
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
            table.add_row(r.name, str(r.calls or "-"), f"{r.seconds:.3f}", f"{100 * r.share_of_time:.1f}",
                          "-" if r.macs is None else f"{r.macs / 1e9:.2f}", "-" if rate is None else f"{rate:.1f}",
                          "-" if share is None else f"{100 * share:.0f}")  # fmt: skip
        console.print(table)
    console.print("Scan MACs follow the counting convention of zoo/ops/flops.py (Mamba-1: 9/2 per state update; "
                  "SSD: its chunked matmuls at chunk 256), so a scan's share of GEMM compares implementations, "
                  "not hardware peaks.")  # fmt: skip


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

    _check_counts(threads=threads, batch=batch)
    _check_device(device)
    cases = _cases(model, res, frames)
    settings = SweepSettings(batch, device, dtype, threads, 1.0, timeout)
    rows = []
    for name, size in cases:
        resolution = str(size)
        status, detail, values = run_case_subprocess(name, resolution, "memory", settings)
        if status != "ok":  # the estimate is counted on meta: shown whatever the measurement did
            values = estimate_row(name, resolution, batch, dtype)
        rows.append({"model": name, "resolution": resolution, "batch": batch, "device": device, "dtype": dtype,
                     "threads": threads, "metric": "memory", "status": status, "detail": detail,
                     **values})  # fmt: skip
    _record(store, no_store, [m for row in rows for m in row_measurements(row)], quiet=as_json)
    failed = [r for r in rows if r["status"] in ("error", "timeout")]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        raise typer.Exit(1 if failed else 0)
    table = Table(title=f"Peak memory (MiB), batch {batch}, {dtype} on {device}: measured, and estimated on meta")
    for col in ("model", _PX, "status", "inference", "train step", "inf. est.", "train est.", "baseline"):
        left = col in ("model", _PX, "status")
        table.add_column(col, justify="left" if left else "right", no_wrap=col == "model")

    def mib(row: dict, key: str) -> str:
        return f"{row[key]:.0f}" if isinstance(row.get(key), float | int) else "-"

    for r in rows:
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['detail']}"
        keys = ("inference_peak_mb", "train_peak_mb", "inference_estimate_mb", "train_estimate_mb", "baseline_mb")
        table.add_row(r["model"], r["resolution"], status, *(mib(r, k) for k in keys))
    console.print(table)
    if device == "cpu":
        console.print("Measured: peak RSS of a fresh process per case, interpreter and torch included (baseline: RSS "
                      "before the model is built). Estimates: weights + largest activations; training adds gradients, "
                      "AdamW moments and the tensors saved for backward.")  # fmt: skip
    else:
        console.print("Measured: the CUDA caching allocator's peak, reset before each phase.")
    if failed:
        console.print(f"[red]{len(failed)} case(s) failed (error or timeout); a longer --timeout may help[/]")
        raise typer.Exit(1)


@app.command("paper")
def paper_command(
    name: str = typer.Argument(..., help="t2md-table3 | mo-table4 | teng-table1 | teng-fig3"),
    measure: bool = typer.Option(False, "--measure", help="Also time the forwards (t2md-table3, teng-fig3)."),
    device: str = typer.Option("cpu", help="Device for --measure."),
    dtype: str = typer.Option("float32", help="dtype for --measure."),
    threads: int = typer.Option(1, help="CPU threads for --measure."),
    as_json: bool = typer.Option(False, "--json"),
    store: Path = STORE,
    no_store: bool = NO_STORE,
) -> None:
    """A paper's cost table, ours beside theirs (counted on the meta device; measured with --measure)."""
    from bench.paper import COMPARISONS, NOTES, paper_measurements

    _check_counts(threads=threads)
    if name not in COMPARISONS:
        console.print(f"[red]unknown comparison {name!r}; choose one of {', '.join(COMPARISONS)}[/]")
        raise typer.Exit(2)
    run, title = COMPARISONS[name]
    if measure:
        _check_device(device)
    rows = run(measure=measure, device=device, dtype=dtype, threads=threads)
    _record(store, no_store, paper_measurements(name, rows, device if measure else "meta", dtype, threads),
            quiet=as_json)  # fmt: skip
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"{title}\nours: MACs counted on the meta device (1 MAC = 1 multiply-add = 2 FLOPs)")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    for col in columns:
        table.add_column(col.replace("_", " "), justify="right", overflow="fold")
    for row in rows:
        table.add_row(*("-" if row.get(c) is None else str(row[c]) for c in columns))
    console.print(table)
    console.print(NOTES[name])
    if not measure and name in ("t2md-table3", "teng-fig3"):
        console.print("Latency: add --measure (on a GPU: --device cuda --dtype bfloat16; on a CPU t2md-table3 times "
                      "one full-width block of each kind and composes them, ~10 minutes at one thread).")  # fmt: skip


@app.command("sweep")
def sweep_command(
    model: list[str] = typer.Option([], "--model", "-m", help="Registry name(s); repeat. None: the --preset."),
    res: list[str] = typer.Option([], "--res", "-r", help="Image sizes (256 or WxH); repeat for several."),
    metric: list[str] = typer.Option(["flops", "latency"], "--metric", help="flops, latency and/or memory."),
    preset: str = typer.Option("quick", "--preset", help="Named sweep used when no --model is given: quick, video."),
    out: Path = typer.Option(
        None,
        help="CSV to append rows to (and resume from); default bench-sweep.csv, or the "
        "preset's results/sweeps/<preset>/sweep.csv.",
    ),
    plot_dir: Path = typer.Option(None, help="Write PNG plots here (default: next to the CSV)."),
    pair: list[str] = typer.Option([], help="MAMBA:ATTENTION models whose crossover to mark."),
    batch: int = typer.Option(1, help="Batch size."),
    device: str = typer.Option("cpu", help="cpu, cuda, ..."),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16."),
    threads: int = typer.Option(1, help="torch intra-op threads per case."),
    min_time: float = typer.Option(None, help="Latency: repeat until this many seconds (default 1, quick 0.5)."),
    timeout: float = typer.Option(600.0, help="Seconds per case before it becomes a timeout row."),
    force: bool = typer.Option(False, "--force", help="Redo cases the CSV already holds."),
    frames: list[int] = FRAMES,
    store: Path = STORE,
    no_store: bool = NO_STORE,
    as_json: bool = typer.Option(False, "--json", help="Print the new rows as JSON lines (no progress bar)."),
    executor: str = _CLUSTER["executor"],
    cluster_config: Path = _CLUSTER["cluster_config"],
    partition: str = _CLUSTER["partition"],
    account: str = _CLUSTER["account"],
    time: int = _CLUSTER["time"],
    gpus_per_node: int = _CLUSTER["gpus_per_node"],
    parallel: int = _CLUSTER["parallel"],
    jobs_dir: Path = _CLUSTER["jobs_dir"],
    status: bool = _CLUSTER["status"],
) -> None:
    """Models x resolutions x metrics, each case in its own process; OOM/timeout/error rows; resumable
    (a rerun also retries error and timeout rows). Exits 1 when a case failed (error or timeout).
    With no --model, runs the named --preset (quick: FLOPs of every family 256..3840x2160, latency and
    memory of small twins; a few minutes on 2 CPU cores; video: FLOPs of the XL video entries on 16- and
    64-frame clips, seconds)."""
    groups, pairs, out, min_time = _sweep_plan(model, res, metric, preset, frames, pair, out, min_time, as_json)
    _check_counts(batch=batch, threads=threads)
    _check_device(device)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = SweepSettings(batch, device, dtype, threads, min_time, timeout)
    if executor or cluster_config or status:
        _sweep_on_cluster(groups, out, settings, pairs, plot_dir, force, store, no_store, as_json, status,
                          jobs_dir or out.parent / "jobs", cluster_config, executor=executor, partition=partition,
                          account=account, time=time, gpus_per_node=gpus_per_node, parallel=parallel)  # fmt: skip
        return
    recorder = None if no_store else ResultsStore(store).recorder()

    def record(row: dict) -> None:
        if recorder is not None:
            recorder.add(row_measurements(row))

    new = _run_groups(groups, out, settings, force, record, show_progress=not as_json)
    total = sum(len(g.models) * len(g.resolutions) * len(g.metrics) for g in groups)
    if as_json:
        from bench.plots import plot_sweep  # matplotlib: imported only where a plot is drawn

        plot_sweep(out, plot_dir or out.parent, pairs)
        for row in new:
            print(json.dumps(row))
        raise typer.Exit(1 if any(r["status"] in RETRIED for r in new) else 0)
    stored = "" if recorder is None else f"; store run {recorder.run_id} in {recorder.store.path}"
    console.print(f"{len(new)} new row(s), {total - len(new)} already in {out}{stored}")
    _report_plots(out, plot_dir, pairs)
    failed = [r for r in new if r["status"] in RETRIED]
    if failed:
        console.print(f"[red]{len(failed)} case(s) failed (error or timeout): fix the cause and run the same command "
                      "again; it retries only those[/]")  # fmt: skip
        raise typer.Exit(1)


def _sweep_plan(model, res, metric, preset, frames, pair, out, min_time, as_json):
    """(groups, pairs, CSV, min_time) of a sweep: the --model/--res cases, or the named --preset's; bad input is a
    one-line error (exit 2)."""
    from bench.presets import PRESETS, SweepGroup, resolve_groups

    if model:
        if not res:
            console.print("[red]--model needs --res (one or more sizes)[/]")
            raise typer.Exit(2)
        groups = [SweepGroup(tuple(model), tuple(res), tuple(metric))]
        pairs = [tuple(p.split(":", 1)) for p in pair]
        out = out or Path("bench-sweep.csv")
        min_time = min_time or 1.0
    elif frames:
        console.print("[red]--frames goes with --model: a preset sets its own clip lengths (--preset video)[/]")
        raise typer.Exit(2)
    elif preset in PRESETS:
        chosen = PRESETS[preset]
        groups, pairs = list(chosen.groups), list(chosen.pairs) + [tuple(p.split(":", 1)) for p in pair]
        out = out or chosen.out
        min_time = min_time or chosen.min_time
        if not as_json:
            console.print(f"preset {preset}: {chosen.cases} cases -> {out}")
    else:
        console.print(f"[red]unknown preset {preset!r}; presets: {', '.join(PRESETS)}[/]")
        raise typer.Exit(2)
    bad = sorted({m for g in groups for m in g.metrics} - set(METRICS))
    if bad or any(len(p) != 2 for p in pairs):
        console.print(f"[red]--metric takes {'/'.join(METRICS)} (got {bad}); --pair takes MAMBA:ATTENTION[/]")
        raise typer.Exit(2)
    try:  # one group per model, a video entry's sizes as clips; unknown names and bad sizes stop here
        groups = resolve_groups(groups, frames)
    except (KeyError, ValueError) as exc:
        console.print(f"[red]{exc.args[0]}[/]", highlight=False)
        raise typer.Exit(2) from exc
    return groups, pairs, out, min_time


def _run_groups(groups, out: Path, settings, force: bool, record, show_progress: bool) -> list[dict]:
    """Every case of ``groups`` not yet in ``out`` (each row goes to ``record``), with a progress bar and one
    line per case when ``show_progress``; the new rows."""
    if not show_progress:
        return [row for g in groups for row in run_sweep(g.models, g.resolutions, g.metrics, out, settings, force,
                                                           on_row=record)]  # fmt: skip
    from rich.progress import Progress

    total = sum(len(g.models) * len(g.resolutions) * len(g.metrics) for g in groups)
    with Progress(console=console) as progress:
        task = progress.add_task("sweep", total=total)

        def report(row: dict) -> None:
            record(row)
            progress.advance(task)
            colour = "green" if row["status"] == "ok" else "yellow"
            progress.console.print(f"[{colour}]{row['status']:>7}[/] {row['model']} {row['resolution']} {row['metric']}"
                                   f" {row.get('detail', '')}")  # fmt: skip

        new = [row for g in groups for row in run_sweep(g.models, g.resolutions, g.metrics, out, settings, force,
                                                          on_row=report)]  # fmt: skip
        progress.update(task, completed=total)
    return new


def _report_plots(out: Path, plot_dir: Path | None, pairs) -> None:
    """Draw the sweep's plots next to its CSV (or in ``plot_dir``) and print their paths and crossovers."""
    from bench.plots import crossovers, plot_sweep  # matplotlib: imported only where a plot is drawn

    for path in plot_sweep(out, plot_dir or out.parent, pairs):
        console.print(f"plot: {path}")
    for c in crossovers(out, pairs):
        clip = f" on {c['frames']}-frame clips" if c["frames"] else ""
        side = f" (≈{c['side_px']:.0f}² px {'frames' if c['frames'] else 'images'})" if c["unit"] != "px" else ""
        console.print(f"crossover ({c['plot']}): {c['mamba']} cheaper than {c['attention']}{clip} beyond "
                      f"≈{c['x']:.0f} {c['unit']}{side}", highlight=False)  # fmt: skip


def _sweep_on_cluster(groups, out: Path, settings, pairs, plot_dir, force: bool, store, no_store: bool,
                      as_json: bool, status: bool, jobs_dir: Path, config: Path | None, **given) -> None:  # fmt: skip
    """``bench sweep --executor local|slurm``: every case a job (results.cluster), rows merged on return."""
    from bench.sweep import run_sweep_on_cluster, sweep_cases
    from results.cluster import cluster_options, merge_stores, print_status

    options = cluster_options(config, **given)
    if status:
        keys = [k for g in groups for k in sweep_cases(g.models, g.resolutions, g.metrics, settings)]
        print_status(jobs_dir, keys, console)
        return
    new, states = [], {}
    for g in groups:
        rows, group_states = run_sweep_on_cluster(g.models, g.resolutions, g.metrics, out, settings, options,
                                                  jobs_dir, force, log=console.print)  # fmt: skip
        new, states = new + rows, {**states, **group_states}
    if not no_store:
        runs, rows = merge_stores(jobs_dir, ResultsStore(store))
        console.print(f"merged {rows} row(s) of {runs} job(s) into {ResultsStore(store).path}")
    if as_json:
        for row in new:
            print(json.dumps(row))
    failed = sorted(k for k, s in states.items() if s != "done")
    console.print(f"{len(new)} new row(s) in {out}; jobs: {len(states) - len(failed)} done, {len(failed)} not")
    _report_plots(out, plot_dir, pairs)
    if failed or any(r["status"] in RETRIED for r in new):
        console.print(f"[red]failed: {', '.join(failed) or 'cases with error/timeout rows'}; `--status` shows why; "
                      "the same command resubmits them[/]")  # fmt: skip
        raise typer.Exit(1)


def run() -> None:
    """Console entry point (``bench``): the app, then an exit that skips the interpreter's teardown.

    Tearing down a process that imported torch takes 0.7-1 s here (module finalisers), a fifth of a
    ``bench flops`` call. Everything is finished by then: output is flushed below, store writes are
    committed as they happen and subprocesses have been waited for."""
    try:
        run_app(app)  # failures: one line and exit 2 (--debug: the traceback)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

"""``bench``: what a registry entry costs."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from bench.flops import FlopCount, count_flops
from bench.fvcore_counter import fvcore_macs
from bench.inputs import parse_resolution
from bench.latency import measure_latency
from bench.plots import plot_sweep
from bench.sweep import SweepSettings, row_measurements, run_sweep
from results.store import ResultsStore

app = typer.Typer(help="Cost of any registry entry at any resolution: FLOPs, latency and sweeps (memory to come).",
                  no_args_is_help=True)  # fmt: skip
console = Console(width=max(Console().width, 110))


def _share(count: FlopCount, category: str) -> str:
    return f"{100 * count.by_category.get(category, 0) / count.flops:.0f}%" if count.flops else "-"


@app.callback()
def main() -> None:
    """Benchmarks of registry entries."""


@app.command("flops")
def flops_command(
    model: list[str] = typer.Option(..., "--model", "-m", help="Registry name(s); repeat for several."),
    res: list[str] = typer.Option(["256"], "--res", "-r", help="Image size: 256 or WxH like 3840x2160."),
    batch: int = typer.Option(1, help="Batch size."),
    counter: str = typer.Option("meta", help="meta (ours) or fvcore (also run fvcore on the CPU as a cross-check)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
) -> None:
    """Parameters, MACs and FLOPs of one forward pass, counted on the meta device (seconds, no memory)."""
    if counter not in ("meta", "fvcore"):
        console.print(f"[red]--counter must be meta or fvcore, got {counter!r}[/]")
        raise typer.Exit(2)
    rows, fvcore = [], {}
    for name in model:
        for r in res:
            try:
                rows.append(count_flops(name, parse_resolution(r), batch))
                if counter == "fvcore":
                    fvcore[len(rows) - 1] = fvcore_macs(name, parse_resolution(r), batch)[0]
            except (KeyError, ValueError) as exc:
                console.print(f"[red]{exc.args[0]}[/]")
                raise typer.Exit(2) from exc
    if as_json:
        for c in rows:
            print(json.dumps({"model": c.model, "resolution": c.resolution, "input_shape": c.input_shape,
                              "params": c.params, "macs": c.macs, "flops": c.flops, "by_category": c.by_category,
                              "device": "meta (counted)", "batch": batch,
                              "fvcore_macs": fvcore.get(rows.index(c))}))  # fmt: skip
        return
    table = Table(title=f"Forward cost, batch {batch}, counted on the meta device (MAC = multiply-add; FLOPs = 2 MACs)")
    for col in ("model", "image px (WxH)", "input", "params (M)", "GMACs", "GFLOPs", "attention", "scan", "linear",
                "conv"):  # fmt: skip
        table.add_column(
            col, justify="left" if col in ("model", "image px (WxH)", "input") else "right", no_wrap=col == "model"
        )
    for c in rows:
        share = partial(_share, c)
        table.add_row(c.model, c.resolution, "x".join(map(str, c.input_shape[1:])), f"{c.params / 1e6:.2f}",
                      f"{c.macs / 1e9:.2f}", f"{c.flops / 1e9:.2f}", share("attention"), share("scan"), share("linear"),
                      share("conv"))  # fmt: skip
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
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
) -> None:
    """Median latency (with IQR and minimum) and throughput, after warm-up, synchronised on GPUs."""
    results = []
    for name in model:
        for r in res:
            try:
                results.append(
                    measure_latency(name, parse_resolution(r), batch, device, dtype, threads, steps, cfg, compile,
                                    min_time)
                )  # fmt: skip
            except (KeyError, ValueError) as exc:
                console.print(f"[red]{exc.args[0]}[/]")
                raise typer.Exit(2) from exc
    if as_json:
        for result in results:
            print(json.dumps(result.as_dict()))
        return
    table = Table(title=f"Latency on {device} ({dtype}, {threads} thread(s)): median of repeated runs after warm-up")
    for col in ("model", "image px (WxH)", "unit", "batch", "median ms", "IQR ms", "min ms", "samples/s", "runs",
                "backends"):  # fmt: skip
        table.add_column(col, no_wrap=col == "model")
    for r in results:
        table.add_row(r.model, r.resolution, r.unit, str(r.batch), f"{1e3 * r.median_s:.1f}", f"{1e3 * r.iqr_s:.1f}",
                      f"{1e3 * r.min_s:.1f}", f"{r.samples_per_s:.2f}", str(r.runs),
                      ", ".join(f"{k}={v}" for k, v in sorted(r.backends.items())) or "-")  # fmt: skip
    console.print(table)


@app.command("sweep")
def sweep_command(
    model: list[str] = typer.Option(..., "--model", "-m", help="Registry name(s); repeat for several."),
    res: list[str] = typer.Option(..., "--res", "-r", help="Image sizes (256 or WxH); repeat for several."),
    metric: list[str] = typer.Option(["flops", "latency"], "--metric", help="flops and/or latency."),
    out: Path = typer.Option(Path("bench-sweep.csv"), help="CSV to append rows to (and resume from)."),
    plot_dir: Path = typer.Option(None, help="Write PNG plots here (default: next to the CSV)."),
    pair: list[str] = typer.Option([], help="MAMBA:ATTENTION models whose latency crossover to mark."),
    batch: int = typer.Option(1, help="Batch size."),
    device: str = typer.Option("cpu", help="cpu, cuda, ..."),
    dtype: str = typer.Option("float32", help="float32, bfloat16 or float16."),
    threads: int = typer.Option(1, help="torch intra-op threads per case."),
    min_time: float = typer.Option(1.0, help="Latency: repeat until this many seconds."),
    timeout: float = typer.Option(600.0, help="Seconds per case before it becomes a timeout row."),
    force: bool = typer.Option(False, "--force", help="Redo cases the CSV already holds."),
    store: Path = typer.Option(None, help="Results store (default $MAMBABENCH_RESULTS or ./mambabench-results)."),
) -> None:
    """Models x resolutions x metrics, each case in its own process; OOM/timeout/error rows; resumable."""
    bad = sorted(set(metric) - {"flops", "latency"})
    pairs = [tuple(p.split(":", 1)) for p in pair]
    if bad or any(len(p) != 2 for p in pairs):
        console.print(f"[red]--metric takes flops/latency (got {bad}); --pair takes MAMBA:ATTENTION[/]")
        raise typer.Exit(2)
    try:
        for r in res:
            parse_resolution(r)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    settings = SweepSettings(batch, device, dtype, threads, min_time, timeout)
    results_store = ResultsStore(store)
    run_id = results_store.start_run()
    total = len(model) * len(res) * len(metric)
    from rich.progress import Progress

    with Progress(console=console) as progress:
        task = progress.add_task("sweep", total=total)

        def report(row: dict) -> None:
            results_store.add(run_id, row_measurements(row))
            progress.advance(task)
            colour = "green" if row["status"] == "ok" else "yellow"
            progress.console.print(f"[{colour}]{row['status']:>7}[/] {row['model']} {row['resolution']} {row['metric']}"
                                   f" {row.get('detail', '')}")  # fmt: skip

        new = run_sweep(model, res, metric, out, settings, force, on_row=report)
        progress.update(task, completed=total)
    console.print(f"{len(new)} new row(s), {total - len(new)} already in {out}; store run {run_id} in "
                  f"{results_store.path}")  # fmt: skip
    for path in plot_sweep(out, plot_dir or out.parent, pairs):
        console.print(f"plot: {path}")

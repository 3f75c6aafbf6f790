"""``results``: the store from the command line."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from results.compare import compare, load
from results.export import write_csv
from results.store import ResultsStore

app = typer.Typer(help="The results store: every bench and ablations measurement.", no_args_is_help=True)
console = Console(width=max(Console().width, 110))
STORE = typer.Option(None, "--store", help="SQLite file (default $MAMBABENCH_RESULTS or ./mambabench-results).")


@app.command("list")
def list_command(store: Path = STORE, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every run: when, commit, host, how many rows."""
    runs = ResultsStore(store).runs()
    if as_json:
        for run in runs:
            print(json.dumps(run))
        return
    table = Table(title="Runs")
    for col in ("id", "started (UTC)", "commit", "host", "gpu", "rows", "command"):
        table.add_column(col)
    for r in runs:
        started = datetime.datetime.fromtimestamp(r["started"], datetime.UTC).strftime("%Y-%m-%d %H:%M")
        commit = (r["git_commit"] or "-")[:10] + ("+dirty" if r["git_dirty"] else "")
        table.add_row(str(r["id"]), started, commit, r["host"], r["gpu"] or "-", str(r["rows"]), r["command"][:60])
    console.print(table)


@app.command("show")
def show_command(run: int, store: Path = STORE, as_json: bool = typer.Option(False, "--json")) -> None:
    """The measurements of one run."""
    rows = ResultsStore(store).measurements(run)
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"Run {run}")
    for col in ("model", "resolution", "metric", "value", "unit", "device", "status", "detail"):
        table.add_column(col)
    for r in rows:
        value = "-" if r["value"] is None else f"{r['value']:.4g}"
        table.add_row(r["model"], r["resolution"], r["metric"], value, r["unit"], r["device"], r["status"],
                      r["detail"][:40])  # fmt: skip
    console.print(table)


@app.command("export")
def export_command(
    csv_path: Path = typer.Option(..., "--csv", help="Where to write."),
    run: int = typer.Option(None, help="Only this run (default: every run)."),
    store: Path = STORE,
) -> None:
    """Write measurements to CSV."""
    rows = ResultsStore(store).measurements(run)
    write_csv(rows, csv_path)
    console.print(f"{len(rows)} row(s) -> {csv_path}")


@app.command("plot")
def plot_command(
    metric: str = typer.Option(..., "--metric", help="e.g. gmacs, latency_median, memory_train_peak, fid."),
    out: Path = typer.Option(Path("results-plot.png"), "--out", help="PNG to write."),
    model: list[str] = typer.Option([], "--model", "-m", help="Only these models (repeatable)."),
    run: int = typer.Option(None, help="Only this run (default: every run)."),
    store: Path = STORE,
) -> None:
    """A metric against resolution, one line per model (log-log), from the store."""
    from results.plot import plot_metric

    try:
        path = plot_metric(ResultsStore(store).measurements(run), metric, out, model or None)
    except ValueError as error:
        console.print(f"[red]{error}[/]")
        raise typer.Exit(2) from error
    console.print(f"plot: {path}")


@app.command("compare")
def compare_command(
    baseline: str = typer.Argument(..., help="Run id or CSV (e.g. results/baselines/cpu-gmacs.csv)."),
    candidate: str = typer.Argument(..., help="Run id or CSV."),
    store: Path = STORE,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Match rows and apply per-metric tolerances; exit code 1 on any regression or missing row (a CI gate)."""
    db = ResultsStore(store) if (baseline.isdigit() or candidate.isdigit()) else None
    results = compare(load(baseline, db), load(candidate, db))
    failed = [c for c in results if c.verdict in ("regression", "missing")]
    if as_json:
        for c in results:
            print(json.dumps({"key": c.key, "baseline": c.baseline, "candidate": c.candidate, "verdict": c.verdict}))
    else:
        table = Table(title=f"{baseline} -> {candidate}: {len(failed)} regression(s) or missing row(s)")
        for col in ("model", "resolution", "metric", "baseline", "candidate", "verdict"):
            table.add_column(col)
        for c in sorted(results, key=lambda c: c.verdict == "ok"):
            fmt = lambda v: "-" if v is None else f"{v:.6g}"  # noqa: E731
            colour = {"ok": "green", "new": "cyan"}.get(c.verdict, "red")
            table.add_row(c.key[0], c.key[1], c.key[2], fmt(c.baseline), fmt(c.candidate), f"[{colour}]{c.verdict}[/]")
        console.print(table)
    raise typer.Exit(1 if failed else 0)

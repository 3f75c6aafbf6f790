"""``results``: the store from the command line."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mambabench.errors import UserError, cli_app, run_app
from results.compare import PASSING, compare, load
from results.export import write_csv
from results.store import STORE_RULE, ResultsStore

app = cli_app("The results store: every bench and ablations measurement.")
console = Console(width=max(Console().width, 110))
STORE = typer.Option(None, "--store", help=f"SQLite file (rule: {STORE_RULE}).")


@app.command("list")
def list_command(store: Path = STORE, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every run: when, commit, host, how many rows; and where the store is."""
    db = ResultsStore(store, create=False)
    runs = db.runs()
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
    console.print(f"store: {db.path} ({db.origin}; rule: {STORE_RULE})", highlight=False)


@app.command("show")
def show_command(run: int, store: Path = STORE, as_json: bool = typer.Option(False, "--json")) -> None:
    """The measurements of one run."""
    db = ResultsStore(store, create=False)
    if not db.has_run(run):
        raise UserError(f"run {run} is not in the store {db.path} (`results list` shows its runs)")
    rows = db.measurements(run)
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"Run {run}")
    for col in ("model", "variant", "resolution", "metric", "value", "unit", "device", "status", "detail"):
        table.add_column(col)
    for r in rows:
        value = "-" if r["value"] is None else f"{r['value']:.4g}"
        table.add_row(
            r["model"],
            r["variant"] or "",
            r["resolution"],
            r["metric"],
            value,
            r["unit"],
            r["device"],
            r["status"],
            r["detail"][:40],
        )
    console.print(table)


@app.command("export")
def export_command(
    csv_path: Path = typer.Option(..., "--csv", help="Where to write."),
    run: int = typer.Option(None, help="Only this run (default: every run)."),
    store: Path = STORE,
) -> None:
    """Write measurements to CSV (with each row's identity and configuration: what `results compare` reads)."""
    db = ResultsStore(store, create=False)
    if run is not None and not db.has_run(run):
        raise UserError(f"run {run} is not in the store {db.path} (`results list` shows its runs)")
    rows = db.measurements(run)
    write_csv(rows, csv_path)
    console.print(f"{len(rows)} row(s) -> {csv_path}")


@app.command("import")
def import_command(
    sources: list[Path] = typer.Argument(
        ..., help="Store files, or folders searched for */results.sqlite (a cluster run's jobs folder)."
    ),
    store: Path = STORE,
) -> None:
    """Merge other stores' runs into this one (idempotent: a run already imported is skipped)."""
    db = ResultsStore(store)
    files = [p for s in sources for p in ([s] if s.is_file() else sorted(s.glob("**/results.sqlite")))]
    if not files:
        raise UserError(f"no results store in {', '.join(map(str, sources))}")
    for path in files:
        runs, rows = db.import_from(path)
        console.print(f"{path}: {runs} run(s), {rows} row(s) added", highlight=False)
    console.print(f"store: {db.path}", highlight=False)


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

    path = plot_metric(ResultsStore(store, create=False).measurements(run), metric, out, model or None)
    console.print(f"plot: {path}")


@app.command("compare")
def compare_command(
    baseline: str = typer.Argument(..., help="Run id or CSV (e.g. results/baselines/cpu-gmacs.csv)."),
    candidate: str = typer.Argument(..., help="Run id or CSV."),
    store: Path = STORE,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Match rows and apply per-metric tolerances; exit code 1 on any regression, failed, NaN or missing row
    (a CI gate), 2 when a source cannot be read."""
    results = compare(load(baseline, store), load(candidate, store))
    failed = [c for c in results if c.verdict not in PASSING]
    if as_json:
        for c in results:
            print(
                json.dumps(
                    {
                        "key": c.key,
                        "baseline": c.baseline,
                        "candidate": c.candidate,
                        "verdict": c.verdict,
                        "tolerance": c.tolerance,
                    }
                )
            )
    else:
        table = Table(title=f"{baseline} -> {candidate}: {len(failed)} regression(s), failed, NaN or missing row(s)")
        for col in ("model", "variant", "resolution", "metric", "baseline", "candidate", "verdict"):
            table.add_column(col, overflow="fold")
        for c in sorted(results, key=lambda c: c.verdict in PASSING):
            fmt = lambda v: "-" if v is None else f"{v:.6g}"  # noqa: E731
            colour = {"ok": "green", "better": "green", "new": "cyan"}.get(c.verdict, "red")
            table.add_row(
                c.key[0], c.key[1], c.key[2], c.key[3], fmt(c.baseline), fmt(c.candidate), f"[{colour}]{c.verdict}[/]"
            )
        console.print(table)
    raise typer.Exit(1 if failed else 0)


def run() -> None:
    """Console entry point (``results``)."""
    run_app(app)


if __name__ == "__main__":
    run()

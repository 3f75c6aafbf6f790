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
from results.export import FORMATS, write_frame
from results.frame import frame
from results.site.baselines import DEFAULT_DIR as DEFAULT_BASELINES
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


def _families() -> dict[str, str]:
    """Model name -> family, from the registry: the store records no family (``results.frame``). The CLI sits
    on top of every layer, so it may ask the zoo; the ``results`` modules below it never do."""
    from zoo.registry import get_entry, list_models

    return {name: get_entry(name).family for name in list_models()}


MODEL = typer.Option([], "--model", "-m", help="Only these models (repeatable; globs such as 'dit-*').")
METRIC = typer.Option([], "--metric", help="Only these metrics (repeatable; globs such as 'latency_*').")
DEVICE = typer.Option([], "--device", help="Only rows measured on these devices (repeatable: cpu, cuda, meta).")
SINCE = typer.Option(None, "--since", help="Only rows written at or after this UTC date or time (ISO: 2025-01-31).")


def _frame(db: ResultsStore, run: int | None, model: list[str], metric: list[str], device: list[str], since):
    if run is not None and not db.has_run(run):
        raise UserError(f"run {run} is not in the store {db.path} (`results list` shows its runs)")
    return frame(
        db, run=run, model=model or None, metric=metric or None, device=device or None, since=since,
        families=_families(),
    )  # fmt: skip


@app.command("export")
def export_command(
    csv_path: Path = typer.Option(None, "--csv", help="Write CSV here (the same as --out PATH --format csv)."),
    out: Path = typer.Option(None, "--out", help="Where to write (the format from --format)."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet (parquet needs the [results] extra)."),
    run: int = typer.Option(None, help="Only this run (default: every run)."),
    model: list[str] = MODEL,
    metric: list[str] = METRIC,
    device: list[str] = DEVICE,
    since: str = SINCE,
    store: Path = STORE,
) -> None:
    """Write measurements, one row each, as CSV or Parquet: each row's identity and configuration first (what
    `results compare` reads), then its family, run, commit, dirty flag and timestamp (`results.frame`)."""
    if (csv_path is None) == (out is None):
        raise UserError("give one of --csv PATH or --out PATH (with --format csv or parquet)")
    if csv_path is not None and fmt != "csv":
        raise UserError(f"--csv writes CSV; for {fmt} use --out PATH --format {fmt}")
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    db = ResultsStore(store, create=False)
    df = _frame(db, run, model, metric, device, since)
    path = write_frame(df, csv_path or out, fmt)
    console.print(f"{len(df)} row(s) -> {path}", highlight=False)


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


@app.command("site")
def site_command(
    out: Path = typer.Argument(..., help="Folder to write the site into (index.html, pages, plotly.min.js)."),
    store: Path = STORE,
    baselines: list[Path] = typer.Option(
        [DEFAULT_BASELINES], "--baseline", help="Baseline CSVs or folders of them (repeatable; default: the committed)."
    ),
    runs: Path = typer.Option(
        None, "--runs", help="Where `ablations run` keeps tables (their report.csv: the paper's values)."
    ),
    pair: list[str] = typer.Option(
        [], "--pair", help="MODEL_A:MODEL_B: mark only these crossovers (repeatable; default: every crossing)."
    ),
    model: list[str] = MODEL,
    metric: list[str] = METRIC,
    device: list[str] = DEVICE,
    since: str = SINCE,
    open_: bool = typer.Option(False, "--open", help="Open the landing page in the default browser."),
) -> None:
    """A static site of the store (no server, no network): every metric over commits with the gate's verdicts
    and tolerance bands, cost against resolution per family with crossovers, the paper tables, and the landing
    page of what regressed since the last baseline."""
    from mambabench import settings
    from results.site import build_site
    from results.site.baselines import load_baselines

    pairs = []
    for text in pair:
        a, sep, b = text.partition(":")
        if not (sep and a and b):
            raise UserError(f"--pair {text!r}: give MODEL_A:MODEL_B, e.g. dim-mo-s/2:dit-s/2")
        pairs.append((a, b))
    missing = [str(p) for p in baselines if not p.exists()]
    if missing:
        raise UserError(f"--baseline {', '.join(missing)}: no such file or folder")
    db = ResultsStore(store, create=False)
    df = _frame(db, None, model, metric, device, since)
    site = build_site(
        df, out, load_baselines(baselines), settings.runs_dir(runs), pairs or None, store=str(db.path.resolve())
    )
    console.print(
        f"{len(site.pages)} page(s), {site.failing_rows} row(s) failing a baseline, {site.failing_points} failing "
        f"point(s) over runs: {site.index}",
        highlight=False,
    )
    if open_:
        import webbrowser

        webbrowser.open(site.index.resolve().as_uri())


def run() -> None:
    """Console entry point (``results``)."""
    run_app(app)


if __name__ == "__main__":
    run()

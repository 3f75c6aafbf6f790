"""``bench sweep``: models x resolutions x metrics, each case in its own process, to CSV, plots and the store."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from bench.cli.common import CLUSTER, FRAMES, NO_STORE, STORE, app, check_counts, console
from bench.sweep import METRICS, RETRIED, SweepSettings, run_sweep
from mambabench.device import resolve_device
from mambabench.errors import UserError
from results.store import ResultsStore
from results.sweep_csv import row_measurements


@app.command("sweep")
def sweep_command(
    model: list[str] = typer.Option([], "--model", "-m", help="Registry name(s); repeat. None: the --preset."),
    res: list[str] = typer.Option([], "--res", "-r", help="Image sizes (256 or WxH); repeat for several."),
    metric: list[str] = typer.Option(
        ["flops", "latency"], "--metric", help="flops, latency, train (a training step) and/or memory."
    ),
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
    executor: str = CLUSTER["executor"],
    cluster_config: Path = CLUSTER["cluster_config"],
    partition: str = CLUSTER["partition"],
    account: str = CLUSTER["account"],
    time: int = CLUSTER["time"],
    gpus_per_node: int = CLUSTER["gpus_per_node"],
    parallel: int = CLUSTER["parallel"],
    jobs_dir: Path = CLUSTER["jobs_dir"],
    status: bool = CLUSTER["status"],
    cancel: bool = CLUSTER["cancel"],
) -> None:
    """Models x resolutions x metrics, each case in its own process; OOM/timeout/error rows; resumable
    (a rerun also retries error and timeout rows). Exits 1 when a case failed (error or timeout).
    With no --model, runs the named --preset (quick: FLOPs of every family 256..3840x2160, latency and
    memory of small twins; a few minutes on 2 CPU cores; video: FLOPs of the XL video entries on 16- and
    64-frame clips, seconds)."""
    groups, pairs, out, min_time = _sweep_plan(model, res, metric, preset, frames, pair, out, min_time, as_json)
    check_counts(batch=batch, threads=threads)
    resolve_device(device)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = SweepSettings(batch, device, dtype, threads, min_time, timeout)
    if executor or cluster_config or status or cancel:
        _sweep_on_cluster(
            groups,
            out,
            settings,
            pairs,
            plot_dir,
            force,
            store,
            no_store,
            as_json,
            status,
            jobs_dir or out.parent / "jobs",
            cluster_config,
            cancel=cancel,
            executor=executor,
            partition=partition,
            account=account,
            time=time,
            gpus_per_node=gpus_per_node,
            parallel=parallel,
        )
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
        console.print(
            f"[red]{len(failed)} case(s) failed (error or timeout): fix the cause and run the same command "
            "again; it retries only those[/]"
        )
        raise typer.Exit(1)


def _sweep_plan(model, res, metric, preset, frames, pair, out, min_time, as_json):
    """(groups, pairs, CSV, min_time) of a sweep: the --model/--res cases, or the named --preset's; bad input is a
    one-line error (exit 2)."""
    from bench.presets import PRESETS, SweepGroup, resolve_groups

    if model:
        if not res:
            raise UserError("--model needs --res (one or more sizes)")
        groups = [SweepGroup(tuple(model), tuple(res), tuple(metric))]
        pairs = [tuple(p.split(":", 1)) for p in pair]
        out = out or Path("bench-sweep.csv")
        min_time = min_time or 1.0
    elif frames:
        raise UserError("--frames goes with --model: a preset sets its own clip lengths (--preset video)")
    elif preset in PRESETS:
        chosen = PRESETS[preset]
        groups, pairs = list(chosen.groups), list(chosen.pairs) + [tuple(p.split(":", 1)) for p in pair]
        out = out or chosen.out
        min_time = min_time or chosen.min_time
        if not as_json:
            console.print(f"preset {preset}: {chosen.cases} cases -> {out}")
    else:
        raise UserError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    bad = sorted({m for g in groups for m in g.metrics} - set(METRICS))
    if bad or any(len(p) != 2 for p in pairs):
        raise UserError(f"--metric takes {'/'.join(METRICS)} (got {bad}); --pair takes MAMBA:ATTENTION")
    groups = resolve_groups(groups, frames)  # one group per model, a video entry's sizes as clips
    return groups, pairs, out, min_time


def _run_groups(groups, out: Path, settings, force: bool, record, show_progress: bool) -> list[dict]:
    """Every case of ``groups`` not yet in ``out`` (each row goes to ``record``), with a progress bar and one
    line per case when ``show_progress``; the new rows."""
    if not show_progress:
        return [
            row
            for g in groups
            for row in run_sweep(g.models, g.resolutions, g.metrics, out, settings, force, on_row=record)
        ]
    from rich.progress import Progress

    total = sum(len(g.models) * len(g.resolutions) * len(g.metrics) for g in groups)
    with Progress(console=console) as progress:
        task = progress.add_task("sweep", total=total)

        def report(row: dict) -> None:
            record(row)
            progress.advance(task)
            colour = "green" if row["status"] == "ok" else "yellow"
            progress.console.print(
                f"[{colour}]{row['status']:>7}[/] {row['model']} {row['resolution']} {row['metric']}"
                f" {row.get('detail', '')}"
            )

        new = [
            row
            for g in groups
            for row in run_sweep(g.models, g.resolutions, g.metrics, out, settings, force, on_row=report)
        ]
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
        console.print(
            f"crossover ({c['plot']}): {c['mamba']} cheaper than {c['attention']}{clip} beyond "
            f"≈{c['x']:.0f} {c['unit']}{side}",
            highlight=False,
        )


def _sweep_on_cluster(
    groups,
    out: Path,
    settings,
    pairs,
    plot_dir,
    force: bool,
    store,
    no_store: bool,
    as_json: bool,
    status: bool,
    jobs_dir: Path,
    config: Path | None,
    cancel: bool = False,
    **given,
) -> None:
    """``bench sweep --executor local|slurm``: every case a job (mambabench.cluster), rows merged on return."""
    from bench.sweep import run_sweep_on_cluster, sweep_cases
    from mambabench.cluster import cancel_jobs, cluster_options, merge_stores, print_status, report_failures

    options = cluster_options(config, **given)
    if status or cancel:
        keys = [k for g in groups for k in sweep_cases(g.models, g.resolutions, g.metrics, settings)]
        if cancel:
            cancelled = cancel_jobs(jobs_dir, keys, log=lambda line: console.print(line, highlight=False))
            console.print(f"cancelled {len(cancelled)} job(s) in {jobs_dir}")
        else:
            print_status(jobs_dir, keys, console)
        return
    new, states = [], {}
    for g in groups:
        rows, group_states = run_sweep_on_cluster(
            g.models, g.resolutions, g.metrics, out, settings, options, jobs_dir, force, log=console.print
        )
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
        report_failures(jobs_dir, failed, log=lambda line: console.print(line, highlight=False, markup=False))
        console.print(
            f"[red]failed: {', '.join(failed) or 'cases with error/timeout rows'}; `--status` shows why; "
            "the same command resubmits them[/]"
        )
        raise typer.Exit(1)

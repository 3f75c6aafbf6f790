"""``ablations list``, ``run`` and ``report``: the papers' tables, run by local processes or cluster jobs and
reported beside the papers' numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.table import Table

from ablations.cli.common import CLUSTER, RUNS, app, console
from mambabench.errors import UserError


@app.command("list")
def list_command(
    data_root: Path = typer.Option(None, "--data-root"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The papers' tables: variants, presets, data each preset needs and whether it is present here."""
    from ablations.data import dataset_present
    from ablations.tables import TABLES

    rows = []
    for table in TABLES.values():
        for preset in table.presets.values():
            present = dataset_present(preset.data, data_root)
            rows.append(
                {
                    "table": table.id,
                    "aliases": list(table.aliases),
                    "paper": table.paper,
                    "variants": [v.key for v in table.variants],
                    "preset": preset.name,
                    "data": preset.data,
                    "res": preset.res,
                    "data_present": present,
                    "needs_vae": preset.needs_vae,
                    "cost": preset.cost,
                }
            )
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title="Tables (`ablations run TABLE --preset P`)")
    for col in ("table", "variants", "preset", "data", "present", "expected cost"):
        table.add_column(col)
    for r in rows:
        name = r["table"] + (f" ({', '.join(r['aliases'])})" if r["aliases"] else "")
        data = f"{r['data']} {r['res']}px" + (" + VAE" if r["needs_vae"] else "")
        present = "[green]yes[/green]" if r["data_present"] else "[red]no[/red]"
        table.add_row(name, " ".join(r["variants"]), r["preset"], data, present, r["cost"] or "-")
    console.print(table)
    console.print(
        "Missing data: `ablations data download cifar10`; CelebA, ImageNet and UCF-101 need a manual download "
        "(the error of `ablations run` says where to put them)."
    )


@app.command("run")
def run_command(
    table_name: str = typer.Argument(..., metavar="TABLE", help="Table id or alias (`ablations list`)."),
    preset: str = typer.Option("smoke", "--preset", help="A preset of the table (`ablations list`)."),
    variants: list[str] = typer.Option([], "--variants", "--variant", help="Only these variant keys (repeatable)."),
    seeds: int = typer.Option(1, "--seeds", help="Seeds 0..N-1 per variant; the report gives mean and spread."),
    retry_diverged: bool = typer.Option(
        False,
        "--retry-diverged",
        help="Train again the runs whose loss became NaN/inf in an earlier `ablations run` (kept as results, "
        "never retrained, without it), from their last good checkpoint.",
    ),
    jobs: int = typer.Option(1, "--jobs", help="Processes working through the runs side by side (one per free core)."),
    data_root: Path = typer.Option(None, "--data-root"),
    vae: Path = typer.Option(None, "--vae", help="Local diffusers AutoencoderKL folder (latent presets)."),
    runs: Path = RUNS,
    device: str = typer.Option("cpu", "--device"),
    i3d: Path = typer.Option(None, "--i3d", help="Video tables: StyleGAN-V's i3d_torchscript.pt ($MAMBABENCH_I3D)."),
    teacher: Path = typer.Option(
        None, "--teacher", help="Presets that distil from a released teacher: its checkpoint ($MAMBABENCH_TEACHER)."
    ),
    text_encoder: Path = typer.Option(
        None, "--text-encoder", help="Caption presets: the T5 folder ($MAMBABENCH_TEXT_ENCODER)."
    ),
    geneval_metadata: Path = typer.Option(
        None,
        "--geneval-metadata",
        help="Tables whose paper scores GenEval: GenEval's evaluation_metadata.jsonl; the text rows are scored with "
        "GenEval too ($MAMBABENCH_GENEVAL_METADATA).",
    ),
    detector: Path = typer.Option(
        None, "--detector", help="GenEval's Mask2Former folder ($MAMBABENCH_GENEVAL_DETECTOR; default in the cache)."
    ),
    clip: Path = typer.Option(
        None, "--clip", help="GenEval's CLIP file or folder ($MAMBABENCH_GENEVAL_CLIP; default in the cache)."
    ),
    threads: int = typer.Option(1, "--threads", help="CPU threads per job (1: a busy 2-core box is slow with 2)."),
    store: Path = typer.Option(None, "--store", help="Results store (default $MAMBABENCH_RESULTS)."),
    executor: str = CLUSTER["executor"],
    cluster_config: Path = CLUSTER["cluster_config"],
    partition: str = CLUSTER["partition"],
    account: str = CLUSTER["account"],
    time: int = CLUSTER["time"],
    nodes: int = CLUSTER["nodes"],
    gpus_per_node: int = CLUSTER["gpus_per_node"],
    procs_per_node: int = CLUSTER["procs_per_node"],
    parallel: int = CLUSTER["parallel"],
    jobs_dir: Path = CLUSTER["jobs_dir"],
    status: bool = CLUSTER["status"],
    cancel: bool = CLUSTER["cancel"],
) -> None:
    """Train and score every variant of a table (finished variants are reused), then print the report.
    With --executor local|slurm every (variant, seed) is a submitit job (students after their teacher).
    A run whose loss turns NaN/inf is recorded as diverged (NaN scores) and the others go on; the command then
    lists them and exits with code 3."""
    import time as clock

    from ablations.tables import get_table

    if i3d is not None:  # read where FVD is scored, also by --jobs helpers and cluster jobs (they inherit it)
        os.environ["MAMBABENCH_I3D"] = str(i3d.resolve())
    given = (
        (teacher, "MAMBABENCH_TEACHER"),
        (text_encoder, "MAMBABENCH_TEXT_ENCODER"),
        (geneval_metadata, "MAMBABENCH_GENEVAL_METADATA"),
        (detector, "MAMBABENCH_GENEVAL_DETECTOR"),
        (clip, "MAMBABENCH_GENEVAL_CLIP"),
    )
    for option, variable in given:
        if option is not None:  # read when the runs are configured, also by --jobs helpers and cluster jobs
            os.environ[variable] = str(option.resolve() if option.exists() else option)  # tiny-t5 stays a name
    table = get_table(table_name)
    if jobs < 1 or threads < 1:
        raise UserError(f"--jobs and --threads must be at least 1 (got --jobs {jobs} --threads {threads})")
    job = dict(table_id=table.id, preset=preset, variants=variants or None, seeds=seeds, device=device,
               data_root=str(data_root) if data_root else None, vae=str(vae) if vae else None,
               runs=str(runs) if runs else None, store=str(store) if store else None, threads=threads,
               retry_diverged=clock.time() if retry_diverged else None)  # fmt: skip
    _check_table_job(table, **job)
    if executor or cluster_config or status or cancel:
        _table_on_cluster(table, job, status, jobs_dir, cluster_config, cancel=cancel, executor=executor,
                          partition=partition, account=account, time=time, nodes=nodes, gpus_per_node=gpus_per_node,
                          procs_per_node=procs_per_node, parallel=parallel)  # fmt: skip
        if status or cancel:
            return
        _print_report(table, preset, runs, as_json=False)
        _say_diverged(table, job)
        return
    helpers = _start_helpers(job, jobs - 1)
    _table_job(**job, prefix="[job 1] " if jobs > 1 else "")
    failed = [p.exitcode for p in helpers if (p.join() or p.exitcode)]
    if failed:
        console.print(f"[red]{len(failed)} of {jobs} jobs failed (their errors are printed above)[/red]")
        raise typer.Exit(1)
    _print_report(table, preset, runs, as_json=False)
    _say_diverged(table, job)


DIVERGED_EXIT = 3  # the table ran; some of its runs diverged (recorded as results with NaN scores)


def _say_diverged(table, job: dict) -> None:
    """The runs of this command's variants and seeds whose results say they diverged, one line each, and exit
    code 3 when there is any."""
    from ablations.tables.runner import diverged_runs

    found = diverged_runs(table, job["preset"], job["variants"], job["seeds"], job["runs"])
    if not found:
        return
    console.print(
        f"[red]{len(found)} run(s) diverged[/red] (loss NaN/inf; recorded with NaN scores, listed in the report and "
        "left out of its means; `--retry-diverged` trains them again):",
        highlight=False,
    )
    for run in found:
        console.print(
            f"  {run['label']} ({run['variant']}) seed {run['seed']}: step {run['step']}, loss {run['loss']}",
            highlight=False,
            markup=False,
        )
    raise typer.Exit(DIVERGED_EXIT)


def _table_on_cluster(table, job: dict, status: bool, jobs_dir: Path | None, config: Path | None,
                      cancel: bool = False, **given) -> None:  # fmt: skip
    """``ablations run --executor local|slurm``: one submitit job per (variant, seed); rows merged on return."""
    from ablations.tables.cluster_jobs import run_table_on_cluster, variant_jobs
    from ablations.tables.layout import runs_root
    from mambabench.cluster import cancel_jobs, cluster_options, print_status, report_failures
    from results.store import ResultsStore

    options = cluster_options(config, **given)
    root = runs_root(job["runs"]).resolve()
    jobs_dir = Path(jobs_dir or root / "jobs" / f"{table.id}-{job['preset']}")
    seeds = range(job["seeds"])
    if status or cancel:
        keys = list(variant_jobs(table, job["preset"], job["variants"], seeds, root, job["data_root"], job["vae"])[0])
        if cancel:
            cancelled = cancel_jobs(jobs_dir, keys, log=lambda line: console.print(line, highlight=False))
            console.print(f"cancelled {len(cancelled)} job(s) in {jobs_dir}")
        else:
            print_status(jobs_dir, keys, console)
        return
    states = run_table_on_cluster(table, job["preset"], job["variants"], seeds, options, jobs_dir, job["data_root"],
                                  job["vae"], root, job["device"], job["threads"], ResultsStore(job["store"]),
                                  log=lambda line: console.print(line, highlight=False),
                                  retry_diverged=job["retry_diverged"])  # fmt: skip
    failed = sorted(key for key, state in states.items() if state != "done")
    if failed:
        report_failures(jobs_dir, failed, log=lambda line: console.print(line, highlight=False, markup=False))
        not_done = ", ".join(failed)
        console.print(f"[red]jobs not done: {not_done} (`--status` shows why; the same command resubmits)[/red]")
        raise typer.Exit(1)


def _check_table_job(table, preset: str, variants, seeds: int, **_) -> None:
    """The errors a job would hit, raised before any process starts."""
    if preset not in table.presets:
        raise UserError(f"{table.id} has no preset {preset!r}; presets: {', '.join(table.presets)}")
    for key in variants or ():
        table.variant(key)
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")


def _start_helpers(job: dict, count: int) -> list:
    """``count`` more processes running the same table; the runs' lock files keep them from colliding."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    helpers = [context.Process(target=_helper_job, kwargs={**job, "prefix": f"[job {i + 2}] "}) for i in range(count)]
    for helper in helpers:
        helper.start()
    return helpers


def _table_job(table_id: str, preset: str, variants, seeds: int, device: str, data_root, vae, runs, store,
               threads: int, retry_diverged: float | None = None, prefix: str = "") -> None:  # fmt: skip
    import torch

    from ablations.tables import get_table
    from ablations.tables.runner import run_table
    from results.store import ResultsStore

    torch.set_num_threads(threads)
    run_table(
        get_table(table_id),
        preset,
        variants,
        data_root,
        vae,
        runs,
        device,
        ResultsStore(store),
        log=lambda line: console.print(prefix + line, highlight=False),
        seeds=seeds,
        retry_diverged=retry_diverged or False,  # the command's start: a run diverging again now is kept
    )


def _helper_job(**job) -> None:
    """A helper process: its error is one line and a non-zero exit code, like the command's."""
    try:
        _table_job(**job)
    except UserError as error:
        console.print(f"{job['prefix']}[red]error:[/red] {error}", soft_wrap=True, highlight=False)
        raise SystemExit(2) from None


@app.command("report")
def report_command(
    table_name: str = typer.Argument(..., metavar="TABLE"),
    preset: str = typer.Option("smoke", "--preset"),
    runs: Path = RUNS,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Ours beside the paper's (CSV, Markdown and a bar plot next to the runs), with effect directions."""
    from ablations.tables import get_table

    table = get_table(table_name)
    if preset not in table.presets:
        raise UserError(f"{table.id} has no preset {preset!r}; presets: {', '.join(table.presets)}")
    _print_report(table, preset, runs, as_json)


def _print_report(table, preset: str, runs: Path | None, as_json: bool) -> None:
    from ablations.tables.report import fid_cell, header, metric_label, write_report

    rows, folder = write_report(table, preset, runs)
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    out = Table(title="\n".join(header(table, preset, rows)), title_justify="left")
    primary, metric = table.paper_metrics[0], rows[0]["ours_metric"]
    geneval = metric.startswith("geneval_")
    image_only = ("sFID", "KID", "prec.", "recall") if metric == "fid" else ("status",)
    image_only = (table.our_metric.upper(), "status") if geneval else image_only
    out.add_column("variant", min_width=24)
    for col in ("ckpt", f"our {metric_label(metric)}", *image_only, "vs ref: 95% CI", "pairs", "verdict",
                f"paper {primary}", "paper vs ref", "agrees"):  # fmt: skip
        out.add_column(col)
    for r in rows:
        fmt = lambda v: "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
        image_cells = [fmt(r[f"ours_{k}"]) for k in ("sfid", "kid", "precision", "recall")] if metric == "fid" else []
        cells = [fid_cell(r, table.our_metric), r["status"]] if geneval else image_cells or [r["status"]]
        out.add_row(
            r["label"],
            r["checkpoint"],
            fid_cell(r, metric),
            *cells,
            _interval_cell(r),
            fmt(r["n_pairs"]),
            r["verdict"],
            f"{r[f'paper_{primary}']:.5g}" if isinstance(r[f"paper_{primary}"], float) else fmt(r[f"paper_{primary}"]),
            r["paper_effect"],
            r["agrees"],
        )
    console.print(out)
    console.print(f"report: {folder / 'report.md'}, {folder / 'report.csv'}, {folder / 'report.png'}")


def _interval_cell(row: dict) -> str:
    """The 95% interval of the row's mean paired difference from the reference, or its one difference, or "-"."""
    if row["ci_low"] is not None:
        return f"[{row['ci_low']:+.3g}, {row['ci_high']:+.3g}]"
    return "-" if row["mean_diff"] is None else f"{row['mean_diff']:+.3g} (1 pair)"

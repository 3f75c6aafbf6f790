"""``ablations``: train, sample and score any registry model; run and report the papers' tables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mambabench.cluster import cli_options as cluster_cli_options
from mambabench.device import resolve_device
from mambabench.errors import UserError, cli_app, request_debug, run_app

app = cli_app("Train, sample, score; run and report the papers' ablation tables.")
data_app = cli_app("Data sets: download where there is internet.")
app.add_typer(data_app, name="data")
console = Console(width=max(Console().width, 110), soft_wrap=True)


@app.callback()
def _main(
    debug: bool = typer.Option(
        False, "--debug", help="Show the Python traceback of an error instead of one line (or MAMBABENCH_DEBUG=1)."
    ),
) -> None:
    """Train, sample, score; run and report the papers' ablation tables."""
    if debug:
        request_debug()


def _set_threads(threads: int) -> None:
    import torch

    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


@app.command("train")
def train_command(
    model: str = typer.Option(..., "--model", "-m", help="Registry name (`zoo list`)."),
    sets: list[str] = typer.Option([], "--set", help="Model override key=value (repeatable), e.g. --set depth=4."),
    data: str = typer.Option(
        "builtin", "--data", help="builtin | cifar10 | celeba | imagenet | latents:DIR; video: videoshapes | ucf101."
    ),
    data_root: Path = typer.Option(
        None, "--data-root", help="Where data sets live (default $MAMBABENCH_DATA or ./data)."
    ),
    res: int = typer.Option(None, "--res", help="Training image size in pixels (default: the entry's)."),
    space: str = typer.Option("auto", "--space", help="auto | pixel (train a latent model on pixels) | latent."),
    vae: Path = typer.Option(None, "--vae", help="Local diffusers AutoencoderKL folder (latent models)."),
    steps: int = typer.Option(1000, "--steps"),
    batch: int = typer.Option(16, "--batch", help="Global batch (split over torchrun processes)."),
    lr: float = typer.Option(1e-4, "--lr"),
    ema: float = typer.Option(0.9999, "--ema", help="EMA decay."),
    ema_warmup: bool = typer.Option(True, "--ema-warmup/--no-ema-warmup", help="decay_t = min(ema, (1+t)/(10+t))."),
    schedule: str = typer.Option("linear", "--schedule", help="linear | scaled_linear | quadratic."),
    ckpt_every: int = typer.Option(500, "--ckpt-every"),
    seed: int = typer.Option(0, "--seed"),
    frames: int = typer.Option(None, "--frames", help="Video models: frames per clip (default: the entry's)."),
    frame_interval: int = typer.Option(
        None, "--frame-interval", help="Video data: every k-th frame (default: UCF-101 3, Latte's; shapes 1)."
    ),
    image_joint: int = typer.Option(
        0, "--image-joint", help="Video models: frames of other videos appended to each clip (Latte's IMG: 8)."
    ),
    init_from: Path = typer.Option(None, "--init-from", help="Start from another run's weights (any resolution)."),
    out: Path = typer.Option(..., "--out", help="Run folder."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its newest good checkpoint (--steps may grow)."
    ),
    device: str = typer.Option("auto", "--device", help="auto (a GPU when there is one) | cpu | cuda | cuda:N."),
    threads: int = typer.Option(1, "--threads", help="CPU threads (torch.set_num_threads)."),
    store: Path = typer.Option(None, "--store", help="Results store (default $MAMBABENCH_RESULTS)."),
) -> None:
    """Train a registry model with the diffusion loss; checkpoints in OUT/checkpoints, log in OUT/log.jsonl.

    A failed start leaves nothing in the way of the corrected command; a killed run continues with --resume
    (a damaged newest checkpoint is skipped, naming it); --resume with a larger --steps extends a finished run."""
    from ablations.experiment import RunConfig, check_run_config, parse_overrides
    from ablations.train import train

    _set_threads(threads)
    config = RunConfig(
        model=model,
        overrides=parse_overrides(sets),
        data=data,
        data_root=str(data_root) if data_root else None,
        res=res,
        space=space,
        vae=str(vae) if vae else None,
        steps=steps,
        batch=batch,
        lr=lr,
        ema=ema,
        ema_warmup=ema_warmup,
        schedule=schedule,
        ckpt_every=ckpt_every,
        seed=seed,
        init_from=str(init_from.resolve()) if init_from else None,  # found from any working directory
        frames=frames,
        frame_interval=frame_interval,
        image_joint=image_joint,
    )
    check_run_config(config)
    if not ema_warmup and ema**steps > 0.1:  # the initialisation's share left in the EMA weights at the end
        console.print(
            f"[yellow]warning:[/yellow] with EMA decay {ema} the initialisation still makes up "
            f"{100 * ema**steps:.0f}% of the EMA weights (used for sampling) after {steps} steps; for a run this "
            f"short pass e.g. --ema {0.01 ** (1 / steps):.4g} (1%)"
        )
    summary = train(config, out, resume=resume, progress=True, device=None if device == "auto" else device)
    if int(os.environ.get("RANK", "0")) == 0:  # one row per run, also under torchrun
        _store_training(store, config, summary, out)
    loss = "-" if summary["final_loss"] is None else f"{summary['final_loss']:.4f}"  # None: nothing left to train
    console.print(
        f"trained {model} for {summary['steps']} steps in {summary['seconds']} s; final loss {loss}; run folder {out}"
    )


def _store_training(store: Path | None, config, summary: dict, out: Path) -> None:
    """Final training loss and speed of a run as results-store rows."""
    from results.store import Measurement, ResultsStore

    context = {"run": str(out), "config_hash": summary["config_hash"], "data": config.data, "steps": config.steps,
               "world": summary["world"], "overrides": config.overrides}  # fmt: skip
    common = dict(model=config.model, resolution=str(config.res or ""), batch=config.batch, source="ablations train",
                  config=context)  # fmt: skip
    rows = [Measurement(metric="train_loss_final", value=summary["final_loss"], unit="loss", **common),
            Measurement(metric="train_seconds", value=summary["seconds"], unit="s", **common)]  # fmt: skip
    db = ResultsStore(store)
    db.add(db.start_run(), rows)


@app.command("sample")
def sample_command(
    run: Path = typer.Option(..., "--run", help="Run folder from `ablations train`."),
    sampler: str = typer.Option("ddim", "--sampler", help="ddpm | ddim | dpm-solver."),
    steps: int = typer.Option(50, "--steps"),
    n: int = typer.Option(64, "--n", help="How many images."),
    cfg: float = typer.Option(1.0, "--cfg", help="Classifier-free guidance w (1 = off; DiM/U-ViT 'scale' = w - 1)."),
    res: int = typer.Option(None, "--res", help="Image size in pixels (default: the training size)."),
    upsample_guidance: bool = typer.Option(False, "--upsample-guidance", help="DiM's training-free higher res."),
    batch: int = typer.Option(32, "--batch"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    threads: int = typer.Option(1, "--threads", help="CPU threads (torch.set_num_threads)."),
    out: Path = typer.Option(None, "--out", help="Default: RUN/samples/<sampler>-<steps>steps-...."),
) -> None:
    """Sample a trained run (EMA weights): PNG files in OUT/images and a grid in OUT/grid.png; a video run: .npy
    clips in OUT/clips, OUT/samples.gif, OUT/samples.mp4 (when PyAV has an encoder) and a frame grid OUT/grid.png."""
    from ablations.experiment import RunConfig, model_setup
    from ablations.generate import generate
    from ablations.generate_video import generate_video

    _set_threads(threads)
    resolve_device(device)
    for option, value in (("--steps", steps), ("--n", n), ("--batch", batch)):
        if value < 1:
            raise UserError(f"{option} must be at least 1, got {value}")
    if model_setup(RunConfig.load(run)).frames:
        if upsample_guidance:
            raise UserError("--upsample-guidance is for image runs; this run trained a video model")
        folder = generate_video(run, sampler, steps, n, cfg, res, batch, seed, device, out)
        console.print(f"{n} clips in {folder / 'clips'}; {folder / 'samples.gif'}; frames {folder / 'grid.png'}")
        return
    folder = generate(run, sampler, steps, n, cfg, res, batch, seed, upsample_guidance, device, out)
    console.print(f"{n} samples in {folder / 'images'}; grid {folder / 'grid.png'}")


@app.command("fid")
def fid_command(
    run: Path = typer.Option(None, "--run", help="Score a run's newest sample folder."),
    images: Path = typer.Option(None, "--images", help="Score a folder of PNG/JPEG images."),
    ref: str = typer.Option(None, "--ref", help="Data set name or a mu/sigma .npz (default: the run's data set)."),
    ref_n: int = typer.Option(None, "--ref-n", help="Reference images (default: as many as generated)."),
    data_root: Path = typer.Option(None, "--data-root"),
    inception: Path = typer.Option(None, "--inception", help="torch-fidelity Inception weights (.pth)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    threads: int = typer.Option(1, "--threads", help="CPU threads (torch.set_num_threads)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """FID (+ KID, precision/recall) of generated images against a data set or precomputed statistics."""
    from ablations.evaluate import score
    from ablations.experiment import RunConfig, model_setup

    _set_threads(threads)
    resolve_device(device)
    size = None
    if run is not None:
        config = RunConfig.load(run)
        ref = ref or config.data
        size = model_setup(config).image_size
        if images is None:
            images = _newest_samples(run, "images")
    if images is None or ref is None:
        raise UserError("give --run RUN, or --images DIR with --ref DATASET|STATS.npz")
    result = score(images, ref, size, ref_n, data_root, device, str(inception) if inception else None)
    result["images"] = str(images)
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"{images} vs {result['reference']} (Inception pool3, {device})")
    for col in ("metric", "value", "note"):
        table.add_column(col)
    for key in ("fid", "kid", "precision", "recall", "is", "sfid"):
        value = result.get(key)
        table.add_row(key, "-" if value is None else f"{value:.4f}", result["unavailable"].get(key, ""))
    table.add_row(
        "images",
        f"{result['n_generated']} generated / {result['n_reference']} reference",
        "FID is biased at small counts: compare equal counts only",
    )
    console.print(table)


def _newest_samples(run: Path, kind: str) -> Path:
    """A run's newest ``samples/*/<kind>`` folder (``images``, or ``clips`` of a video run)."""
    folders = sorted((run / "samples").glob(f"*/{kind}"), key=lambda p: p.stat().st_mtime)
    if not folders:
        raise FileNotFoundError(f"{run} has no samples yet: run `ablations sample --run {run}` first")
    return folders[-1]


@app.command("fvd")
def fvd_command(
    run: Path = typer.Option(None, "--run", help="Score a video run's newest sample folder."),
    clips: Path = typer.Option(None, "--clips", help="Score a folder of .npy clips (uint8 (3, T, H, W))."),
    ref: str = typer.Option(None, "--ref", help="Video data set (default: the run's): videoshapes | ucf101."),
    ref_n: int = typer.Option(None, "--ref-n", help="Reference clips (default: as many as generated)."),
    data_root: Path = typer.Option(None, "--data-root"),
    i3d: Path = typer.Option(None, "--i3d", help="StyleGAN-V's i3d_torchscript.pt (or $MAMBABENCH_I3D)."),
    ref_interval: int = typer.Option(
        None,
        "--ref-interval",
        help="Every k-th frame for the reference clips (default: the run's, else the data "
        "set's; StyleGAN-V's protocol takes consecutive frames: 1).",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    threads: int = typer.Option(1, "--threads", help="CPU threads (torch.set_num_threads)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """FVD (StyleGAN-V's protocol) of generated clips against a video data set's clips."""
    from ablations.experiment import RunConfig, model_setup
    from ablations.fvd import score_videos

    _set_threads(threads)
    resolve_device(device)
    size = interval = None
    if run is not None:
        config = RunConfig.load(run)
        ref, size, interval = ref or config.data, model_setup(config).image_size, config.frame_interval
        clips = clips or _newest_samples(run, "clips")
    if clips is None or ref is None:
        raise UserError("give --run RUN, or --clips DIR with --ref videoshapes|ucf101")
    if ref_interval is not None:
        if ref_interval < 1:
            raise UserError(f"--ref-interval {ref_interval}: every k-th frame needs k >= 1 (1: consecutive)")
        interval = ref_interval
    result = score_videos(clips, ref, size, ref_n, data_root, device, str(i3d) if i3d else None, interval)
    if as_json:
        print(json.dumps(result))
        return
    console.print(f"FVD {result['fvd']:.4f}: {result['n_generated']} clips of {result['frames']} frames vs "
                  f"{result['n_reference']} of {result['reference']} (I3D {result['i3d']}; FVD is biased at small "
                  "counts: compare equal counts only)", highlight=False)  # fmt: skip


@app.command("latents")
def latents_command(
    data: str = typer.Option(..., "--data", help="cifar10 | celeba | imagenet | builtin."),
    vae: Path = typer.Option(..., "--vae", help="Local diffusers AutoencoderKL folder."),
    res: int = typer.Option(256, "--res", help="Image size in pixels."),
    out: Path = typer.Option(..., "--out"),
    data_root: Path = typer.Option(None, "--data-root"),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Encode a data set once into latent shards for `--data latents:OUT` (resumes if interrupted)."""
    from ablations.data import open_dataset
    from ablations.latents import load_vae, write_latent_shards

    folder = write_latent_shards(open_dataset(data, data_root, size=res), load_vae(vae, device), out)
    console.print(f"latents in {folder}")


@data_app.command("download")
def download_command(name: str, root: Path = typer.Option(None, "--root")) -> None:
    """Download a data set that has a public direct link (cifar10)."""
    from ablations.data import default_data_root, download_cifar10

    if name != "cifar10":
        raise UserError(f"{name} has no direct download; `ablations list` says where to get it")
    folder = download_cifar10(root or default_data_root())
    console.print(f"CIFAR-10 in {folder}")


_CLUSTER = cluster_cli_options()
RUNS = typer.Option(None, "--runs", help="Where table runs live (default $MAMBABENCH_RUNS or ./mambabench-runs).")


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
    jobs: int = typer.Option(1, "--jobs", help="Processes working through the runs side by side (one per free core)."),
    data_root: Path = typer.Option(None, "--data-root"),
    vae: Path = typer.Option(None, "--vae", help="Local diffusers AutoencoderKL folder (latent presets)."),
    runs: Path = RUNS,
    device: str = typer.Option("cpu", "--device"),
    i3d: Path = typer.Option(None, "--i3d", help="Video tables: StyleGAN-V's i3d_torchscript.pt ($MAMBABENCH_I3D)."),
    threads: int = typer.Option(1, "--threads", help="CPU threads per job (1: a busy 2-core box is slow with 2)."),
    store: Path = typer.Option(None, "--store", help="Results store (default $MAMBABENCH_RESULTS)."),
    executor: str = _CLUSTER["executor"],
    cluster_config: Path = _CLUSTER["cluster_config"],
    partition: str = _CLUSTER["partition"],
    account: str = _CLUSTER["account"],
    time: int = _CLUSTER["time"],
    nodes: int = _CLUSTER["nodes"],
    gpus_per_node: int = _CLUSTER["gpus_per_node"],
    procs_per_node: int = _CLUSTER["procs_per_node"],
    parallel: int = _CLUSTER["parallel"],
    jobs_dir: Path = _CLUSTER["jobs_dir"],
    status: bool = _CLUSTER["status"],
) -> None:
    """Train and score every variant of a table (finished variants are reused), then print the report.
    With --executor local|slurm every (variant, seed) is a submitit job (students after their teacher)."""
    from ablations.tables import get_table

    if i3d is not None:  # read where FVD is scored, also by --jobs helpers and cluster jobs (they inherit it)
        os.environ["MAMBABENCH_I3D"] = str(i3d.resolve())
    table = get_table(table_name)
    if jobs < 1 or threads < 1:
        raise UserError(f"--jobs and --threads must be at least 1 (got --jobs {jobs} --threads {threads})")
    job = dict(table_id=table.id, preset=preset, variants=variants or None, seeds=seeds, device=device,
               data_root=str(data_root) if data_root else None, vae=str(vae) if vae else None,
               runs=str(runs) if runs else None, store=str(store) if store else None, threads=threads)  # fmt: skip
    _check_table_job(table, **job)
    if executor or cluster_config or status:
        _table_on_cluster(table, job, status, jobs_dir, cluster_config, executor=executor, partition=partition,
                          account=account, time=time, nodes=nodes, gpus_per_node=gpus_per_node,
                          procs_per_node=procs_per_node, parallel=parallel)  # fmt: skip
        if status:
            return
        _print_report(table, preset, runs, as_json=False)
        return
    helpers = _start_helpers(job, jobs - 1)
    _table_job(**job, prefix="[job 1] " if jobs > 1 else "")
    failed = [p.exitcode for p in helpers if (p.join() or p.exitcode)]
    if failed:
        raise UserError(f"{len(failed)} of {jobs} jobs failed (their errors are printed above)")
    _print_report(table, preset, runs, as_json=False)


def _table_on_cluster(table, job: dict, status: bool, jobs_dir: Path | None, config: Path | None, **given) -> None:
    """``ablations run --executor local|slurm``: one submitit job per (variant, seed); rows merged on return."""
    from ablations.tables.cluster_jobs import run_table_on_cluster, variant_jobs
    from ablations.tables.layout import runs_root
    from mambabench.cluster import cluster_options, print_status
    from results.store import ResultsStore

    options = cluster_options(config, **given)
    root = runs_root(job["runs"]).resolve()
    jobs_dir = Path(jobs_dir or root / "jobs" / f"{table.id}-{job['preset']}")
    seeds = range(job["seeds"])
    if status:
        keys = list(variant_jobs(table, job["preset"], job["variants"], seeds, root, job["data_root"], job["vae"])[0])
        print_status(jobs_dir, keys, console)
        return
    states = run_table_on_cluster(table, job["preset"], job["variants"], seeds, options, jobs_dir, job["data_root"],
                                  job["vae"], root, job["device"], job["threads"], ResultsStore(job["store"]),
                                  log=lambda line: console.print(line, highlight=False))  # fmt: skip
    failed = sorted(key for key, state in states.items() if state != "done")
    if failed:
        raise UserError(f"jobs not done: {', '.join(failed)} (`--status` shows why; the same command resubmits)")


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
               threads: int, prefix: str = "") -> None:  # fmt: skip
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
    from ablations.tables.report import fid_cell, header, write_report

    rows, folder = write_report(table, preset, runs)
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    out = Table(title="\n".join(header(table, preset, rows)), title_justify="left")
    primary, metric = table.paper_metrics[0], table.our_metric
    image_only = ("sFID", "KID", "prec.", "recall") if metric == "fid" else ("status",)
    out.add_column("variant", min_width=30)
    for col in ("ckpt", f"our {metric.upper()}", *image_only, "ours vs ref", f"paper {primary}", "paper vs ref",
                "agrees"):  # fmt: skip
        out.add_column(col)
    for r in rows:
        fmt = lambda v: "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
        image_cells = [fmt(r[f"ours_{k}"]) for k in ("sfid", "kid", "precision", "recall")] if metric == "fid" else []
        cells = image_cells or [r["status"]]
        out.add_row(
            r["label"],
            r["checkpoint"],
            fid_cell(r, metric),
            *cells,
            r["ours_effect"],
            f"{r[f'paper_{primary}']:.5g}" if isinstance(r[f"paper_{primary}"], float) else fmt(r[f"paper_{primary}"]),
            r["paper_effect"],
            r["agrees"],
        )
    console.print(out)
    console.print(f"report: {folder / 'report.md'}, {folder / 'report.csv'}, {folder / 'report.png'}")


def run() -> None:
    """Console entry point (``ablations``)."""
    run_app(app)


if __name__ == "__main__":  # `torchrun --nproc_per_node N -m ablations.cli train ...`
    run()

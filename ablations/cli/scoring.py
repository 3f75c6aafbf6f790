"""``ablations fid`` and ``ablations fvd``: a run's samples scored against a data set."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ablations.cli.common import app, console, set_threads
from mambabench.device import resolve_device
from mambabench.errors import UserError


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

    set_threads(threads)
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

    set_threads(threads)
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

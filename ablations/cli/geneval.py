"""``ablations geneval``: a folder of images generated from GenEval's prompts scored as GenEval scores it
(``ablations.geneval``), with a progress bar, the six task scores and overall as a table (or ``--json``) and
one results-store row per score."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from ablations.cli.common import app, console, set_threads
from mambabench import settings
from mambabench.device import resolve_device
from mambabench.errors import UserError


def _default(name: str) -> Path:
    return settings.cache_dir() / "geneval" / name


def _run_images(run: Path) -> Path:
    """The newest folder in GenEval's layout (``<index>/metadata.jsonl``) under a run's ``prompts/`` (where
    ``ablations sample --prompts`` writes) or ``samples/``."""
    if not (run / "config.json").is_file():
        raise UserError(f"{run} is not a training run (no config.json); make one with `ablations train`")
    lines = [p for top in ("prompts", "samples") for p in (run / top).glob("**/metadata.jsonl")]
    found = {p.parent.parent for p in lines if p.parent.name.isdigit()}
    if not found:
        raise UserError(
            f"{run} has no images in GenEval's layout under prompts/ or samples/: sample them with "
            f"`ablations sample --run {run} --prompts evaluation_metadata.jsonl`, or pass --images DIR"
        )
    return max(found, key=lambda p: p.stat().st_mtime)


@app.command("geneval")
def geneval_command(
    images: Path = typer.Option(None, "--images", help="Images in GenEval's layout: <index>/samples/NNNN.png."),
    run: Path = typer.Option(None, "--run", help="Score a run's newest GenEval folder (`sample --prompts`)."),
    metadata: Path = typer.Option(
        None, "--metadata", help="GenEval's evaluation_metadata.jsonl: every prompt must be there (default: off)."
    ),
    detector: Path = typer.Option(
        None,
        "--detector",
        help="transformers Mask2Former folder (default $MAMBABENCH_CACHE/geneval/mask2former-swin-small-coco-"
        "instance), or an mmdet config .py with --detector-checkpoint.",
    ),
    detector_checkpoint: Path = typer.Option(
        None, "--detector-checkpoint", help="mmdet checkpoint (.pth): the official backend, with mmdet installed."
    ),
    clip: Path = typer.Option(
        None,
        "--clip",
        help="open_clip ViT-L-14 openai weights file, or a transformers CLIP folder (default "
        "$MAMBABENCH_CACHE/geneval/clip-vit-large-patch14).",
    ),
    per_prompt: int = typer.Option(4, "--per-prompt", help="Images per prompt, at least (GenEval's default 4)."),
    out: Path = typer.Option(None, "--out", help="Where results.jsonl and summary.json go (default IMAGES/geneval)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    threads: int = typer.Option(1, "--threads", help="CPU threads (torch.set_num_threads)."),
    store: Path = typer.Option(None, "--store", help="Results store (default $MAMBABENCH_RESULTS)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """GenEval (object, count, colour and position correctness) of images generated from GenEval's prompts."""
    from ablations.geneval.colour import load_clip
    from ablations.geneval.detectors import load_detector
    from ablations.geneval.metadata import read_folder, read_metadata
    from ablations.geneval.score import check_images, score_folder, summarise, write_summary

    set_threads(threads)
    torch_device = resolve_device(device)
    if per_prompt < 1:
        raise UserError(f"--per-prompt must be at least 1, got {per_prompt}")
    if (images is None) == (run is None):
        raise UserError("give --images DIR or --run RUN (one of them)")
    if run is not None:
        images = _run_images(run)
    prompts = read_folder(images, read_metadata(metadata) if metadata else None, per_prompt)
    check_images(prompts)
    out = out or images / "geneval"
    with _quiet_loading():
        scorer = load_detector(
            detector or _default("mask2former-swin-small-coco-instance"), detector_checkpoint, device
        )
        colours = load_clip(clip or _default("clip-vit-large-patch14"), torch_device)
    total = sum(len(p.samples) for p in prompts)
    with _progress(total) as advance:
        rows = score_folder(prompts, images, scorer, colours, out, advance)
    summary = summarise(rows) | {"images_folder": str(images), "results": str(out / "results.jsonl")}
    write_summary(out, summary)
    _store(store, summary, run, images, device, scorer, colours)
    if as_json:
        print(json.dumps(summary))
        return
    console.print(_table(summary))


@contextmanager
def _quiet_loading():
    """transformers' weight-loading bars off while the models load: stderr keeps to the progress bar and errors."""
    try:
        from transformers.utils import logging
    except ImportError:  # the mmdet + open_clip path runs without transformers
        yield
        return
    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


class _progress:
    """A rich progress bar over the images on stderr (stdout keeps to the table or the JSON); the context value
    advances it by one."""

    def __init__(self, total: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = (TextColumn("geneval"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        self.bar = Progress(*bar, console=Console(stderr=True))
        self.task = self.bar.add_task("geneval", total=total)

    def __enter__(self):
        self.bar.start()
        return lambda: self.bar.advance(self.task)

    def __exit__(self, *_):
        self.bar.stop()


def _table(summary: dict) -> Table:
    table = Table(
        title=f"GenEval of {summary['images_folder']}: {summary['images']} images, {summary['prompts']} "
        f"prompts ({summary['detector']}; CLIP {summary['clip']})"
    )
    for column in ("task", "score"):
        table.add_column(column)
    for task, value in summary["tasks"].items():
        table.add_row(task, f"{value:.4f}")
    for task in summary["missing_tasks"]:
        table.add_row(task, "- (no prompts)")
    overall = summary["overall"]
    table.add_row("overall", "-" if overall is None else f"{overall:.4f}", style="bold")
    return table


def _store(store, summary: dict, run: Path | None, images: Path, device: str, detector, colours) -> None:
    """One row per task score and one for overall (unit: fraction of images correct)."""
    from ablations.experiment import RunConfig
    from results.store import Measurement, ResultsStore

    model = RunConfig.load(run).model if run is not None else images.resolve().name
    context = {
        "images": str(images),
        "run": str(run) if run else None,
        "detector": summary["detector"],
        "clip": summary["clip"],
        "n_images": summary["images"],
        "n_prompts": summary["prompts"],
    }
    common = dict(
        model=model,
        unit="fraction",
        device=device,
        backend=f"{detector.backend}+{colours.backend}",
        detail=f"detector {summary['detector']}; CLIP {summary['clip']}",
        source="ablations geneval",
        config=context,
        variant=f"images={summary['images']}",
    )
    values = {**summary["tasks"], "overall": summary["overall"]}
    rows = [Measurement(metric=f"geneval_{name}", value=value, **common) for name, value in values.items()]
    db = ResultsStore(store)
    db.add(db.start_run(), rows)

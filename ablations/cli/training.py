"""``ablations train``: a registry model trained with the diffusion loss into a run folder."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ablations.cli.common import app, console, set_threads


@app.command("train")
def train_command(
    model: str = typer.Option(..., "--model", "-m", help="Registry name (`zoo list`)."),
    sets: list[str] = typer.Option([], "--set", help="Model override key=value (repeatable), e.g. --set depth=4."),
    data: str = typer.Option(
        "builtin",
        "--data",
        help="builtin | cifar10 | celeba | imagenet | latents:DIR; video: videoshapes | ucf101; captions (text "
        "models): captions:DIR | wds:PATTERN | captioned-shapes.",
    ),
    text_encoder: Path = typer.Option(
        None,
        "--text-encoder",
        help="Caption data: T5 folder that encodes the captions once (or $MAMBABENCH_TEXT_ENCODER).",
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

    set_threads(threads)
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
        text_encoder=str(text_encoder.resolve() if text_encoder.exists() else text_encoder) if text_encoder else None,
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

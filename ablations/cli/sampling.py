"""``ablations sample``: images or clips from a run's EMA model."""

from __future__ import annotations

from pathlib import Path

import typer

from ablations.cli.common import app, console, set_threads
from mambabench.device import resolve_device
from mambabench.errors import UserError


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

    set_threads(threads)
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

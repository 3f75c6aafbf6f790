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
    n: int = typer.Option(None, "--n", help="How many images (default 64); with --prompts: per prompt (default 4)."),
    cfg: float = typer.Option(1.0, "--cfg", help="Classifier-free guidance w (1 = off; DiM/U-ViT 'scale' = w - 1)."),
    res: int = typer.Option(None, "--res", help="Image size in pixels (default: the training size)."),
    upsample_guidance: bool = typer.Option(False, "--upsample-guidance", help="DiM's training-free higher res."),
    batch: int = typer.Option(32, "--batch"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    threads: int = typer.Option(1, "--threads", help="CPU threads (torch.set_num_threads)."),
    out: Path = typer.Option(None, "--out", help="Default: RUN/samples/<sampler>-<steps>steps-...."),
    prompts: Path = typer.Option(
        None, "--prompts", help="Text runs: a prompt a line, or GenEval's evaluation_metadata.jsonl; GenEval's layout."
    ),
    text_encoder: Path = typer.Option(
        None, "--text-encoder", help="With --prompts: the T5 folder (default: the run's, or $MAMBABENCH_TEXT_ENCODER)."
    ),
) -> None:
    """Sample a trained run (EMA weights): PNG files in OUT/images and a grid in OUT/grid.png; a video run: .npy
    clips in OUT/clips, OUT/samples.gif, OUT/samples.mp4 (when PyAV has an encoder) and a frame grid OUT/grid.png;
    a text run with --prompts FILE: N images per prompt in GenEval's OUT/<index>/samples/NNNNN.png layout."""
    from ablations.experiment import RunConfig, model_setup
    from ablations.generate import generate
    from ablations.generate_video import generate_video

    set_threads(threads)
    resolve_device(device)
    n = n if n is not None else (4 if prompts else 64)
    for option, value in (("--steps", steps), ("--n", n), ("--batch", batch)):
        if value < 1:
            raise UserError(f"{option} must be at least 1, got {value}")
    if prompts is not None:
        from ablations.generate_prompts import generate_from_prompts

        folder = generate_from_prompts(
            run, prompts, n, sampler, steps, cfg, res, batch, seed, device, out, text_encoder, log=console.print
        )
        console.print(f"{n} images per prompt in {folder}/<index>/samples (GenEval's layout)")
        return
    if model_setup(RunConfig.load(run)).frames:
        if upsample_guidance:
            raise UserError("--upsample-guidance is for image runs; this run trained a video model")
        folder = generate_video(run, sampler, steps, n, cfg, res, batch, seed, device, out)
        console.print(f"{n} clips in {folder / 'clips'}; {folder / 'samples.gif'}; frames {folder / 'grid.png'}")
        return
    folder = generate(run, sampler, steps, n, cfg, res, batch, seed, upsample_guidance, device, out)
    console.print(f"{n} samples in {folder / 'images'}; grid {folder / 'grid.png'}")

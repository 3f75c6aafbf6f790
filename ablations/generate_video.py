"""Sampling a trained video run: one ``.npy`` per clip (uint8 (3, T, H, W), what FVD reads) in ``clips/``, and
``samples.gif``, ``samples.mp4`` (when an encoder is available) and a frame-grid ``grid.png`` to look at.

As for images (``ablations.generate``): clip i has class i mod K and noise from a generator seeded by
(seed, batch), clips already on disk are skipped (a rerun resumes), the EMA weights sample, and latent clips
are decoded by the VAE frame by frame.
"""

from __future__ import annotations

from pathlib import Path

from ablations.diffusion import GaussianDiffusion
from ablations.generate import class_count, sample_batch, sample_folder_name, to_uint8
from ablations.latents import decode, load_vae
from ablations.run_folder import load_run_model
from ablations.video_io import load_clip_folder, save_clip, save_previews
from mambabench.allocator import retain_freed_memory
from mambabench.errors import UserError
from mambabench.files import atomic_write_json


def generate_video(
    run: str | Path,
    sampler: str = "ddim",
    steps: int = 50,
    n: int = 16,
    cfg: float = 1.0,
    res: int | None = None,
    batch: int = 8,
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
    step: int | None = None,
    frames: int | None = None,
) -> Path:
    """Write ``n`` clips of a video run's EMA model to ``out/clips/*.npy`` plus previews; returns ``out``."""
    config, setup, model = load_run_model(run, ema=True, device=device, step=step)
    if not setup.frames:
        raise UserError(f"{run} trained the image model {config.model}: sample it with images (ablations.generate)")
    retain_freed_memory()  # each denoising step reuses the last one's memory instead of faulting it in
    diffusion = GaussianDiffusion.from_name(config.schedule, config.num_timesteps)
    res = res or setup.image_size
    factor = 8 if setup.latent else 1
    if res % factor:
        raise UserError(f"--res {res}: a latent model needs a multiple of 8")
    frames = frames or setup.frames
    folder = sample_folder_name(sampler, steps, n, cfg, res, False) + f"-{frames}f"
    out = Path(out) if out else Path(run) / "samples" / folder
    clips_dir = out / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    vae = load_vae(config.vae, device) if setup.latent else None
    size = res // factor
    classes = class_count(run, setup)
    for first in range(0, n, batch):
        count = min(batch, n - first)
        if all((clips_dir / f"{first + i:06d}.npy").exists() for i in range(count)):
            continue
        shape = (setup.channels, frames, size, size)
        x = sample_batch(model, setup, diffusion, first, count, shape, classes, cfg, seed, sampler, steps, device)
        clips = decode(vae, x) if vae is not None else to_uint8(x)
        for i, clip in enumerate(clips):
            save_clip(clip.contiguous(), clips_dir / f"{first + i:06d}.npy")
    save_previews(load_clip_folder(clips_dir, limit=16), out)
    meta = {
        "run": str(run),
        "sampler": sampler,
        "steps": steps,
        "n": n,
        "cfg": cfg,
        "res": res,
        "frames": frames,
        "seed": seed,
        "model": config.model,
    }
    atomic_write_json(out / "meta.json", meta, indent=2)
    return out

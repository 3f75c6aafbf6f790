"""Sampling a trained run into an image folder (one PNG per sample) and a PNG grid.

Samples are written one file each as they are made, and a rerun skips indices already on disk, so an
interrupted sampling job resumes. Sample i uses class i mod K (balanced classes) and noise from a generator
seeded by (seed, batch), so the same command makes the same images. A text model trained on a caption data
set conditions sample i on caption i mod N of its training captions (the caption cache its ``data.json``
names, with their masks) instead of class captions; ``ablations sample --prompts`` takes any prompts
(``ablations.generate_prompts``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ablations.diffusion import GaussianDiffusion
from ablations.latents import decode, load_vae
from ablations.run_folder import load_run_model
from ablations.samplers import guided, sample, with_upsample_guidance
from mambabench.allocator import retain_freed_memory
from mambabench.errors import UserError
from mambabench.files import atomic_write_json


def sample_folder_name(sampler: str, steps: int, n: int, cfg: float, res: int, upsample: bool) -> str:
    return f"{sampler}-{steps}steps-cfg{cfg:g}-{res}px-n{n}" + ("-ug" if upsample else "")


def to_uint8(x: Tensor) -> Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def save_grid(images: Tensor, path: Path, columns: int | None = None) -> None:
    """uint8 (N, 3, H, W) as one PNG, ``columns`` wide (default: square-ish)."""
    n, _, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = torch.zeros(3, rows * (h + 2), columns * (w + 2), dtype=torch.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[:, r * (h + 2) + 1 : r * (h + 2) + 1 + h, c * (w + 2) + 1 : c * (w + 2) + 1 + w] = image
    Image.fromarray(canvas.permute(1, 2, 0).numpy()).save(path)


def load_image_folder(folder: str | Path, limit: int | None = None) -> Tensor:
    """uint8 (N, 3, H, W) of the PNG/JPEG files in ``folder`` (sorted by name)."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:limit]
    if not files:
        raise UserError(f"no PNG/JPEG images in {folder}")
    arrays = []
    for path in files:
        with Image.open(path) as f:
            arrays.append(np.asarray(f.convert("RGB")))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def class_count(run: str | Path, setup) -> int:
    """How many classes sample labels cycle through: the run's data set's (``data.json``), at most the model's."""
    data_info = Path(run) / "data.json"
    classes = json.loads(data_info.read_text())["num_classes"] if data_info.is_file() else setup.num_classes
    if setup.conditioning == "class":
        classes = min(classes or setup.num_classes, setup.num_classes)
    return classes


def run_captions(run: str | Path):
    """The caption cache a text run trained on (``data.json``'s ``caption_cache``), or None."""
    data_info = Path(run) / "data.json"
    folder = json.loads(data_info.read_text()).get("caption_cache") if data_info.is_file() else None
    if not folder:
        return None
    from ablations.text_encoder import CaptionCache

    if not (Path(folder) / "manifest.json").is_file():
        raise UserError(
            f"{run} trained on the captions cached in {folder}, which is gone: resume the run once "
            "(`ablations train ... --resume`) to rebuild it"
        )
    return CaptionCache(folder)


def sample_batch(
    model,
    setup,
    diffusion: GaussianDiffusion,
    first: int,
    count: int,
    shape: tuple[int, ...],
    classes: int,
    cfg: float,
    seed: int,
    sampler: str,
    steps: int,
    device: str,
    wrap: Callable | None = None,
    captions=None,
) -> Tensor:
    """x_0 of samples ``first .. first + count - 1`` of ``shape`` (an image's or a clip's, without the batch):
    sample i has class i mod ``classes``, the noise comes from a generator seeded by (seed, first); ``wrap``
    wraps the guided model function (upsample guidance); ``captions``: a caption cache (``CaptionCache``) that
    sample i takes caption i mod its size from, with its mask."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + first)
    noise = torch.randn(count, *shape, generator=g).to(device)
    labels = torch.arange(first, first + count, device=device) % max(classes, 1)
    mask = None
    if captions is not None:
        y, mask = (v.to(device) for v in captions.lookup(labels.cpu() % len(captions)))
    else:
        y = setup.condition(model, labels)
    null = setup.null_condition(model, count, torch.device(device))
    fn = guided(model, y, null, cfg, setup.channels, mask=mask)
    if wrap is not None:
        fn = wrap(fn)
    return sample(fn, noise, diffusion, sampler, steps, generator=g, clip=None if setup.latent else 1.0)


def _sample_size(res: int, setup, upsample_guidance: bool) -> tuple[int, int]:
    """(side of the sampled image or latent, upsample factor over the training size) for ``--res``; a size the
    model or upsample guidance cannot take is a ``UserError`` naming what it needs."""
    factor = 8 if setup.latent else 1
    if res % factor:
        raise UserError(f"--res {res}: a latent model needs a multiple of 8")
    m = res // setup.image_size
    if upsample_guidance and (res % setup.image_size or m < 2):
        raise UserError(
            f"upsample guidance needs --res an integer multiple (>= 2) of the training size {setup.image_size}"
        )
    return res // factor, m


def generate(
    run: str | Path,
    sampler: str = "ddim",
    steps: int = 50,
    n: int = 64,
    cfg: float = 1.0,
    res: int | None = None,
    batch: int = 32,
    seed: int = 0,
    upsample_guidance: bool = False,
    device: str = "cpu",
    out: str | Path | None = None,
    step: int | None = None,
) -> Path:
    """Write ``n`` samples of a run's EMA model to ``out/images/*.png`` and ``out/grid.png``; returns ``out``."""
    config, setup, model = load_run_model(run, ema=True, device=device, step=step)
    retain_freed_memory()  # each denoising step reuses the last one's memory instead of faulting it in
    diffusion = GaussianDiffusion.from_name(config.schedule, config.num_timesteps)
    res = res or setup.image_size
    size, m = _sample_size(res, setup, upsample_guidance)
    out = (
        Path(out) if out else Path(run) / "samples" / sample_folder_name(sampler, steps, n, cfg, res, upsample_guidance)
    )
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    vae = load_vae(config.vae, device) if setup.latent else None
    classes = class_count(run, setup)
    captions = run_captions(run)
    wrap = (lambda fn: with_upsample_guidance(fn, diffusion, setup.channels, m)) if upsample_guidance else None
    for first in range(0, n, batch):
        count = min(batch, n - first)
        if all((images_dir / f"{first + i:06d}.png").exists() for i in range(count)):
            continue
        shape = (setup.channels, size, size)
        x = sample_batch(
            model, setup, diffusion, first, count, shape, classes, cfg, seed, sampler, steps, device, wrap, captions
        )
        images = decode(vae, x) if vae is not None else to_uint8(x)
        for i, image in enumerate(images):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(images_dir / f"{first + i:06d}.png")
    save_grid(load_image_folder(images_dir, limit=64), out / "grid.png")
    meta = {
        "run": str(run),
        "sampler": sampler,
        "steps": steps,
        "n": n,
        "cfg": cfg,
        "res": res,
        "seed": seed,
        "upsample_guidance": upsample_guidance,
        "model": config.model,
    }
    atomic_write_json(out / "meta.json", meta, indent=2)
    return out

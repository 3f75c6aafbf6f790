"""VAE latents: a local diffusers ``AutoencoderKL``, and pre-extracted latent shards.

Latent models (DiT, DiM-Mo, T2MD at 256+) train on ``vae.encode(x).latent_dist.sample() * scaling_factor``
(0.18215 for the SD VAE DiT uses). Encoding every image every epoch is the slow part of training, so
``write_latent_shards`` stores each image's posterior moments (mean and log-variance, float16) once, also for
its mirror image when flips are on, and ``LatentShards`` draws a fresh latent from them at each step. Video
clips (B, 3, T, H, W) go through the same functions frame by frame. The VAE is only ever loaded from a local
folder: no download at run time.

A caption data set (``ablations.caption_data``) keeps each item's index as its label and its captions in
``captions.json``; its caption embeddings go beside, in ``captions/`` (``ablations.text_encoder``), so
training on ``latents:DIR`` finds both.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mambabench.errors import UserError
from mambabench.files import atomic_save, atomic_write_json


class VaeMissing(UserError, FileNotFoundError):
    """The VAE folder or the diffusers package is missing; the message says how to get them."""


def load_vae(path: str | Path, device: str | torch.device = "cpu"):
    """A diffusers ``AutoencoderKL`` from a local folder (``config.json`` + weights), in eval mode."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise VaeMissing(
            f"no VAE at {path} (expected config.json and diffusion_pytorch_model.safetensors). Download one where "
            "you have internet, e.g. `huggingface-cli download stabilityai/sd-vae-ft-ema --local-dir DIR` "
            "(DiT's VAE), and pass --vae DIR"
        )
    try:
        from diffusers import AutoencoderKL
    except ImportError as error:
        raise VaeMissing("the VAE needs diffusers: `pip install diffusers`") from error
    vae = AutoencoderKL.from_pretrained(path, local_files_only=True).to(device)
    vae.eval().requires_grad_(False)
    return vae


def scaling_factor(vae) -> float:
    return float(getattr(vae.config, "scaling_factor", 0.18215))


def _per_frame(fn, x: Tensor) -> Tensor:
    """``fn`` on the frames of clips (B, C, T, H, W) as one image batch, back to (B, C', T, H', W')."""
    b, c, t = x.shape[:3]
    out = fn(x.transpose(1, 2).reshape(b * t, c, *x.shape[3:]))
    return out.view(b, t, *out.shape[1:]).transpose(1, 2)


@torch.no_grad()
def encode_moments(vae, images: Tensor) -> Tensor:
    """Posterior moments (B, 2C, h, w) = (mean, logvar) of uint8 images (B, 3, H, W); clips (B, 3, T, H, W)
    are encoded frame by frame into (B, 2C, T, h, w) (Mo & Tian Sec. 3.5: each frame's latent)."""
    if images.dim() == 5:
        return _per_frame(lambda frames: encode_moments(vae, frames), images)
    x = images.to(next(vae.parameters()).device, torch.float32) / 127.5 - 1
    dist = vae.encode(x).latent_dist
    return torch.cat([dist.mean, dist.logvar], dim=1)


def sample_latent(moments: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """A scaled latent drawn from (mean, logvar) moments."""
    mean, logvar = moments.float().chunk(2, dim=1)
    noise = torch.randn(mean.shape, generator=generator).to(mean.device)
    return (mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * noise) * scale


@torch.no_grad()
def decode(vae, latents: Tensor) -> Tensor:
    """uint8 images (B, 3, H, W) from scaled latents; latent clips (B, C, T, h, w) frame by frame."""
    if latents.dim() == 5:
        return _per_frame(lambda frames: decode(vae, frames), latents)
    x = vae.decode(latents.to(next(vae.parameters()).device) / scaling_factor(vae)).sample
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def write_latent_shards(
    dataset: Dataset, vae, out: str | Path, flip: bool = True, shard_size: int = 1024, batch: int = 32
) -> Path:
    """Encode ``dataset`` into ``out/shard-NNNNN.pt`` ({"moments": float16, "labels": int64}); shards already
    written are kept, so an interrupted extraction resumes. ``out/manifest.json`` is written last."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    count = len(dataset)
    shards = (count + shard_size - 1) // shard_size
    for shard in range(shards):
        path = out / f"shard-{shard:05d}.pt"
        if path.exists():
            continue
        indices = range(shard * shard_size, min(count, (shard + 1) * shard_size))
        moments, labels = [], []
        for start in range(0, len(indices), batch):
            items = [dataset[i] for i in indices[start : start + batch]]
            images = torch.stack([image for image, _ in items])
            views = [images, images.flip(-1)] if flip else [images]
            moments.append(torch.stack([encode_moments(vae, v).half().cpu() for v in views], dim=1))
            labels += [label for _, label in items]
        atomic_save({"moments": torch.cat(moments), "labels": torch.tensor(labels)}, path)
    manifest = {
        "count": count,
        "shards": shards,
        "flip": flip,
        "scaling_factor": scaling_factor(vae),
        "num_classes": int(getattr(dataset, "num_classes", 0)),
    }
    captions = getattr(dataset, "captions", None)
    if captions is not None:  # written before the manifest: a finished folder has both
        atomic_write_json(out / "captions.json", list(captions))
    atomic_write_json(out / "manifest.json", manifest, indent=2)
    return out


class LatentShards(Dataset):
    """Items ``(moments (views, 2C, h, w) float16, label)`` from ``write_latent_shards``'s folder."""

    def __init__(self, folder: str | Path):
        self.folder = folder = Path(folder)
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            raise UserError(f"{folder}: no manifest.json; write latents with `ablations latents` first")
        self.manifest = json.loads(manifest.read_text())
        parts = [torch.load(folder / f"shard-{i:05d}.pt") for i in range(self.manifest["shards"])]
        self.moments = torch.cat([p["moments"] for p in parts])
        self.labels = torch.cat([p["labels"] for p in parts]).tolist()
        self.num_classes = self.manifest["num_classes"]
        self.scale = float(self.manifest["scaling_factor"])
        captions = folder / "captions.json"  # a caption data set's: labels are caption indices
        self.captions = json.loads(captions.read_text()) if captions.is_file() else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.moments[index], self.labels[index]

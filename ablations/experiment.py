"""A training run's configuration and what follows from it: the model, its conditioning, its input space.

``RunConfig`` is saved as ``config.json`` in the run folder; everything that changes the result is in it,
and its hash (``config_hash``) names a finished variant so ``ablations run`` never retrains it. The model
is built from the registry (``zoo.create_model(name, **overrides)``), never from a class directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import zoo
from zoo.layers.captions import class_captions
from zoo.registry import ModelEntry


@dataclass
class DistillConfig:
    """T2MD's stages (Sec. 3.4): a frozen teacher run, what the student starts from, and the loss weights."""

    teacher: str  # run folder of the teacher (a PixArt-style model trained by `ablations train`)
    transfer: bool = True  # copy every non-Mamba weight from the teacher ("non-Mamba weight init")
    mamba_init: str = "default"  # "default" | "attention" (Table 1's causal-to-causal init)
    teacher_forcing_steps: int = 0  # stage 1 (Eq. 5-7) for this many steps, then stage 2
    lambda_pseudo: float = 0.5  # L_soft weight (Eq. 11, lambda_1)
    lambda_mixer: float = 0.2  # L_feature weight (Eq. 11, lambda_2)


@dataclass
class RunConfig:
    model: str
    overrides: dict[str, Any] = field(default_factory=dict)
    data: str = "builtin"  # builtin | cifar10 | celeba | imagenet | latents:<dir>
    data_root: str | None = None
    res: int | None = None  # training image size in pixels; default: the entry's
    space: str = "auto"  # auto (the entry's) | pixel (a latent model trained on pixels, in_channels=3) | latent
    vae: str | None = None  # local diffusers AutoencoderKL folder (latent space)
    batch: int = 16  # global batch, split over DDP ranks
    steps: int = 1000
    lr: float = 1e-4
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0
    ema: float = 0.9999
    # decay_t = min(ema, (1 + t) / (10 + t)): the random initialisation leaves the average within a few hundred
    # steps instead of lingering (0.9999 ** 3000 = 74% of it after 3K steps). False: the constant decay of
    # DiT's and ADM's code, which the paper presets use.
    ema_warmup: bool = True
    schedule: str = "linear"
    num_timesteps: int = 1000
    cfg_dropout: float = 0.1  # label dropout for classifier-free guidance (DiT: 0.1)
    flip: bool = True  # random horizontal flips (every paper)
    ckpt_every: int = 500
    log_every: int = 10
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    workers: int = 0  # DataLoader workers
    init_from: str | None = None  # run folder whose (EMA) weights start this run, any resolution
    distill: DistillConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        data = dict(data)
        if data.get("distill"):
            data["distill"] = DistillConfig(**data["distill"])
        if "adam_betas" in data:
            data["adam_betas"] = tuple(data["adam_betas"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown run config keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / "config.json.part"  # other DDP ranks may read it meanwhile: never half a file
        partial.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        partial.replace(folder / "config.json")

    @classmethod
    def load(cls, folder: str | Path) -> RunConfig:
        path = Path(folder) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a training run (no config.json); make one with `ablations train`")
        return cls.from_dict(json.loads(path.read_text()))


def config_hash(config: RunConfig) -> str:
    """12 hex digits identifying everything that changes the result (the data root is not part of it)."""
    data = config.to_dict()
    data.pop("data_root", None)
    data.pop("workers", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["depth=4", "scan_patterns='12'"]`` -> {"depth": 4, "scan_patterns": "12"} (JSON values, else text)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value.strip("'\"")
    return out


@dataclass
class ModelSetup:
    """The registry entry and what the trainer and sampler need to feed the model."""

    entry: ModelEntry
    overrides: dict[str, Any]
    conditioning: str  # "class" | "text" | "none"
    num_classes: int
    channels: int  # input channels of the model (3 in pixel space, 4 for latents)
    latent: bool  # the model works on VAE latents
    image_size: int  # training image size, pixels
    builder_options: frozenset[str]

    @property
    def input_size(self) -> int:
        return self.image_size // (8 if self.latent else 1)

    def build(self) -> nn.Module:
        return zoo.create_model(self.entry.name, **self.overrides)

    def condition(self, model: nn.Module, labels: Tensor) -> Tensor | None:
        """Model conditioning for class labels: labels, fixed class captions (text models), or None."""
        if self.conditioning == "class":
            return labels
        if self.conditioning == "text":
            spec = self.entry.inputs
            channels = self.overrides.get("caption_channels", spec.caption_channels)
            tokens = self.overrides.get("caption_tokens", spec.caption_tokens)
            return class_captions(labels.cpu(), channels, tokens)[0].to(labels.device)
        return None

    def null_condition(self, model: nn.Module, batch: int, device: torch.device) -> Tensor | None:
        """The unconditional input for CFG and label dropout: the null class or the model's null caption."""
        if self.conditioning == "class":
            return torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        if self.conditioning == "text":
            return _unwrap(model).null_caption(batch).to(device)
        return None


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def model_setup(config: RunConfig) -> ModelSetup:
    """Resolve the entry, the input space and the conditioning of a run (clear errors for bad combinations)."""
    import inspect

    entry = zoo.get_entry(config.model)
    overrides = dict(config.overrides)
    options = frozenset(inspect.signature(entry.builder).parameters)
    latent = entry.inputs.latent
    image_size = config.res or entry.inputs.image_size
    if config.space == "pixel" and latent:
        image_size = config.res or entry.inputs.image_size // 8  # the entry's token grid, now in pixels
        latent = False
        key = "in_chans" if "in_chans" in options else "in_channels"
        overrides.setdefault(key, 3)
    elif config.space == "latent" and not latent:  # a pixel model run on VAE latents (4 channels)
        latent = True
        image_size = config.res or entry.inputs.image_size * 8
        overrides.setdefault("in_chans" if "in_chans" in options else "in_channels", 4)
    elif config.space not in ("auto", "pixel", "latent"):
        raise ValueError(f"--space must be auto, pixel or latent, got {config.space!r}")
    if latent and config.vae is None and not config.data.startswith("latents:"):
        raise ValueError(
            f"{entry.name} works on VAE latents: pass --vae DIR (a local diffusers AutoencoderKL folder, e.g. "
            "stabilityai/sd-vae-ft-ema downloaded with `huggingface-cli download`), or --data latents:DIR from "
            "`ablations latents`, or train it on pixels with --space pixel"
        )
    if "class_dropout_prob" in options:
        overrides["class_dropout_prob"] = 0.0  # the trainer drops labels itself (deterministic under DDP)
    conditioning = entry.inputs.conditioning
    num_classes = int(overrides.get("num_classes", entry.inputs.num_classes))
    if conditioning == "class" and num_classes <= 0:
        conditioning = "none"
    channels = 4 if latent else 3
    return ModelSetup(entry, overrides, conditioning, num_classes, channels, latent, image_size, options)

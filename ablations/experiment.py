"""A training run's configuration and what follows from it: the model, its conditioning, its input space.

``RunConfig`` is saved as ``config.json`` in the run folder; everything that changes the result is in it,
and its hash (``config_hash``) names a finished variant so ``ablations run`` never retrains it. The model
is built from the registry (``zoo.create_model(name, **overrides)``), never from a class directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import zoo
from ablations.data_catalog import VIDEO_DATASETS
from mambabench.errors import UserError
from mambabench.files import atomic_write_json
from zoo.entries import ModelEntry
from zoo.layers.captions import class_captions


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
    # video models (x: (B, C, T, H, W)); at these defaults a setting is left out of the config hash
    frames: int | None = None  # frames per clip (default: the entry's)
    frame_interval: int | None = None  # every k-th frame of the video (default: the data set's; UCF-101: 3)
    image_joint: int = 0  # single frames appended to each clip: Latte's video-image joint training ("IMG")
    # text models on caption data (captions:DIR, wds:PATTERN, captioned-shapes, their latents): the T5 folder
    # that encodes the captions once into a cache (ablations.text_encoder); hashed by the model's identity,
    # left out of the hash when unset
    text_encoder: str | None = None

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
            raise UserError(f"unknown run config keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def save(self, folder: Path) -> None:
        # other DDP ranks may read it meanwhile: never half a file
        atomic_write_json(Path(folder) / "config.json", self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def load(cls, folder: str | Path) -> RunConfig:
        path = Path(folder) / "config.json"
        if not path.is_file():
            raise UserError(f"{folder} is not a training run (no config.json); make one with `ablations train`")
        return cls.from_dict(json.loads(path.read_text()))


def config_hash(config: RunConfig) -> str:
    """12 hex digits identifying everything that changes the result (the data root is not part of it).

    Runs this one starts from enter by their identity, not by how their folder was spelled: the distillation
    teacher (``distill.teacher``) and ``init_from`` are hashed as ``run:<their config hash>`` when their folder
    holds a ``config.json`` (a relative and an absolute path to the same run give the same hash), else as
    their resolved path. A configuration without either is hashed from its own settings only.

    The device is not part of it, like the data root and the worker count: where a run trains is a choice
    of how, not of what (a run started on a GPU may be resumed on a CPU); ``done.json`` records it.

    The model entry's ``revision`` enters when it is above 0: an entry whose architecture is corrected names
    new runs, so runs of the old architecture (and baselines made from them) do not match them."""
    return _hash(config, frozenset())


_VIDEO_DEFAULTS = {"frames": None, "frame_interval": None, "image_joint": 0}  # not hashed at these values


def _hash(config: RunConfig, seen: frozenset[str]) -> str:
    data = config.to_dict()
    for key, default in _VIDEO_DEFAULTS.items():  # image runs keep the hashes their folders are named by
        if data.get(key) == default:
            data.pop(key, None)
    revision = _model_revision(config.model)
    if revision:
        data["model_revision"] = revision
    data.pop("data_root", None)
    data.pop("workers", None)
    if data.get("init_from"):
        data["init_from"] = run_identity(data["init_from"], seen)
    if data.get("distill"):
        data["distill"]["teacher"] = run_identity(data["distill"]["teacher"], seen)
    if data.get("text_encoder") is None:  # runs without one keep the hashes their folders are named by
        data.pop("text_encoder", None)
    else:
        data["text_encoder"] = _encoder_identity(data["text_encoder"])
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def _model_revision(name: str) -> int:
    try:
        return zoo.get_entry(name).revision
    except KeyError:  # a run of a model this version does not know: its hash is all it has
        return 0


def _encoder_identity(folder: str) -> str:
    from ablations.text_encoder import text_encoder_identity

    try:
        return text_encoder_identity(folder)
    except OSError:  # not (or no longer) there: the path is all we know
        return f"path:{Path(folder).expanduser().resolve()}"


def run_identity(folder: str | Path, seen: frozenset[str] = frozenset()) -> str:
    """``run:<config hash>`` of the run in ``folder``, or ``path:<resolved folder>`` when it holds no run."""
    resolved = str(Path(folder).expanduser().resolve())
    if resolved not in seen and (Path(resolved) / "config.json").is_file():
        try:
            return f"run:{_hash(RunConfig.load(resolved), seen | {resolved})}"
        except (UserError, ValueError, TypeError):  # an unreadable config.json: the path is all we know
            pass
    return f"path:{resolved}"


# Settings a resumed run may change: they decide how far it trains and how often it writes, not what a step
# does (no learning-rate schedule depends on the total), so a 4-step run extended to 6 steps ends with the
# weights of a straight 6-step run.
RESUME_COMPATIBLE = ("steps", "ckpt_every", "log_every")


def same_run(a: RunConfig, b: RunConfig) -> bool:
    """Whether ``b`` continues the run of ``a``: equal up to ``RESUME_COMPATIBLE`` settings."""
    reset = {key: getattr(RunConfig, key) for key in RESUME_COMPATIBLE}
    return config_hash(dataclasses.replace(a, **reset)) == config_hash(dataclasses.replace(b, **reset))


def config_differences(saved: RunConfig, asked: RunConfig) -> list[str]:
    """``lr 0.0001 in the run, 0.5 asked`` for every setting that differs and matters (for error messages)."""
    ignored = ("data_root", "workers", *RESUME_COMPATIBLE)
    a, b = saved.to_dict(), asked.to_dict()
    return [f"{k} {a[k]!r} in the run, {b[k]!r} asked" for k in a if k not in ignored and a[k] != b[k]]


def check_run_config(config: RunConfig) -> None:
    """A setting no run can train with, as a ``UserError`` naming the command-line option and what it must be."""
    rules = [
        ("--batch", config.batch, config.batch >= 1, "at least 1"),
        ("--steps", config.steps, config.steps >= 1, "at least 1"),
        ("--ckpt-every", config.ckpt_every, config.ckpt_every >= 1, "at least 1"),
        ("--lr", config.lr, config.lr > 0 and math.isfinite(config.lr), "a positive number"),
        ("--ema", config.ema, 0 <= config.ema < 1, "in [0, 1)"),
        ("--res", config.res, config.res is None or config.res >= 1, "a positive size in pixels"),
        ("log_every", config.log_every, config.log_every >= 1, "at least 1"),
        ("num_timesteps", config.num_timesteps, config.num_timesteps >= 2, "at least 2"),
        ("--frames", config.frames, config.frames is None or config.frames >= 1, "at least 1"),
        ("--frame-interval", config.frame_interval, (config.frame_interval or 1) >= 1, "at least 1"),
        ("--image-joint", config.image_joint, config.image_joint >= 0, "0 or more"),
    ]
    for option, value, ok, what in rules:
        if not ok:
            raise UserError(f"{option} must be {what}, got {value}")


def describe_model(model: str, overrides: dict[str, Any] | None = None) -> str:
    """``dim-teng-tiny --set depth=3`` (the command-line spelling of a model and its overrides)."""
    return " ".join([model, *(f"--set {pair}" for pair in format_overrides(overrides or {}))])


def format_overrides(overrides: dict[str, Any]) -> list[str]:
    """``{"depth": 3, "name": "x"}`` -> ``["depth=3", "name=x"]`` (what ``parse_overrides`` reads back)."""
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["depth=4", "scan_patterns='12'"]`` -> {"depth": 4, "scan_patterns": "12"} (JSON values, else text)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {pair!r}")
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
    frames: int = 0  # frames per clip of a video model; 0: an image model

    @property
    def caption_tokens(self) -> int:
        return int(self.overrides.get("caption_tokens", self.entry.inputs.caption_tokens))

    @property
    def caption_channels(self) -> int:
        return int(self.overrides.get("caption_channels", self.entry.inputs.caption_channels))

    @property
    def input_size(self) -> int:
        return self.image_size // (8 if self.latent else 1)

    def sample_shape(self, extra_frames: int = 0) -> tuple[int, ...]:
        """One model input without the batch: (C, h, w), or (C, T, h, w) for a video model (T + extra frames)."""
        size = (self.input_size, self.input_size)
        return (self.channels, self.frames + extra_frames, *size) if self.frames else (self.channels, *size)

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
        """The unconditional input for CFG and label dropout: the model's (``Backbone.null_condition``: the null
        class or the null caption), or None for a run trained without conditions."""
        if self.conditioning == "none":
            return None
        return _unwrap(model).null_condition(batch, device)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def model_setup(config: RunConfig) -> ModelSetup:
    """Resolve the entry, the input space and the conditioning of a run (clear errors for bad combinations).
    Every model takes the contract's options (``zoo.models.base``), so nothing here depends on the family."""
    entry = zoo.get_entry(config.model)
    overrides = dict(config.overrides)
    latent = entry.inputs.latent
    image_size = config.res or entry.inputs.image_size
    if config.space == "pixel" and latent:
        image_size = config.res or entry.inputs.image_size // 8  # the entry's token grid, now in pixels
        latent = False
        overrides.setdefault("in_channels", 3)
    elif config.space == "latent" and not latent:  # a pixel model run on VAE latents (4 channels)
        latent = True
        image_size = config.res or entry.inputs.image_size * 8
        overrides.setdefault("in_channels", 4)
    elif config.space not in ("auto", "pixel", "latent"):
        raise UserError(f"--space must be auto, pixel or latent, got {config.space!r}")
    if latent and config.vae is None and not config.data.startswith("latents:"):
        raise UserError(
            f"{entry.name} works on VAE latents: pass --vae DIR (a local diffusers AutoencoderKL folder, e.g. "
            "stabilityai/sd-vae-ft-ema downloaded with `huggingface-cli download`), or --data latents:DIR from "
            "`ablations latents`, or train it on pixels with --space pixel"
        )
    conditioning = entry.inputs.conditioning
    num_classes = int(overrides.get("num_classes", entry.inputs.num_classes))
    if conditioning == "class" and num_classes <= 0:
        conditioning = "none"
    channels = 4 if latent else 3
    frames = _frames(entry, config)
    return ModelSetup(entry, overrides, conditioning, num_classes, channels, latent, image_size, frames)


def _frames(entry: ModelEntry, config: RunConfig) -> int:
    """Frames per clip of a video entry (0 for an image entry); a model and data set of different kinds, or
    video settings for an image model, are errors naming what fits."""
    frames = int(getattr(entry.inputs, "frames", 0))
    video_data = config.data in VIDEO_DATASETS
    if not frames:
        asked = [f"--{k.replace('_', '-')}" for k in ("frames", "frame_interval", "image_joint") if getattr(config, k)]
        if asked or video_data:
            what = " ".join(asked) or f"--data {config.data} (video clips)"
            raise UserError(
                f"{what}: {entry.name} is an image model; train a video entry (`zoo list`: latte-*, "
                "dim-mo-video-*) on clips, or this one on an image data set"
            )
        return 0
    if not video_data and not config.data.startswith("latents:"):
        raise UserError(
            f"{entry.name} is a video model: train it on clips, --data videoshapes (built in, no "
            f"download) or ucf101, not --data {config.data}"
        )
    return config.frames or frames


def build_model(setup: ModelSetup, user_overrides: dict[str, Any] | None = None) -> nn.Module:
    """``setup.build()``; when it fails and the user set overrides (``--set``), a ``UserError`` that names the
    override to blame (``--set depth=abc: depth expects an integer ...``) whatever the constructor raised."""
    try:
        return setup.build()
    except Exception as error:  # a constructor raises anything (TypeError, AssertionError, ...) on a bad option
        if not user_overrides:
            raise
        key = _culprit(setup, user_overrides)
        pairs = format_overrides({key: user_overrides[key]} if key else user_overrides)
        reason = _type_mismatch(setup, key, user_overrides[key]) if key else None
        reason = reason or (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"--set {' --set '.join(pairs)}: {reason}") from error


def _culprit(setup: ModelSetup, user: dict[str, Any]) -> str | None:
    """The one user override that fails on its own (built on the meta device: no memory), else None."""
    auto = {k: v for k, v in setup.overrides.items() if k not in user}
    for key, value in user.items():
        try:
            with torch.device("meta"):
                zoo.create_model(setup.entry.name, **{**auto, key: value})
        except Exception:  # the constructor's error, whatever its type
            return key
    return None


def _type_mismatch(setup: ModelSetup, key: str, value: Any) -> str | None:
    """``depth expects an integer (dim-teng-tiny has depth=5), got 'abc'`` when a text value replaced a number."""
    import inspect

    expected = setup.entry.config.get(key)
    if expected is None:
        param = inspect.signature(setup.entry.builder).parameters.get(key)
        expected = None if param is None or param.default is inspect.Parameter.empty else param.default
    kinds = {bool: "true or false", int: "an integer", float: "a number"}
    if type(expected) in kinds and not isinstance(value, (bool, int, float)):
        example = f"{setup.entry.name} has {key}={json.dumps(expected)}"
        return f"{key} expects {kinds[type(expected)]} ({example}), got {value!r}"
    return None

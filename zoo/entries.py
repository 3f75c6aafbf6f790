"""What a registry entry is: a configuration of a model class, its inputs, what its paper reports and where
its official weights are published; and ``register``, which model files call at import time to add theirs.
Lookups (``get_entry``, ``create_model``, ``list_models``) are in ``zoo.registry``, above the models."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from zoo.errors import UnknownOption


@dataclass(frozen=True)
class PaperInfo:
    """What a paper reports for a configuration (None where it reports nothing)."""

    paper: str
    table: str
    params_m: float | None = None
    gflops: float | None = None
    gflops_image_size: int | None = None  # image pixels (square) the GFLOPs were reported at
    gflops_convention: Literal["MACs", "FLOPs"] = "MACs"  # DiT's "GFLOPs" count a multiply-add once
    params_tolerance: float = 0.01  # relative; larger where the paper rounds coarsely (then say why in `note`)
    note: str = ""


@dataclass(frozen=True)
class InputSpec:
    """What a model consumes: pixels or VAE latents (``latent_factor``, 8 by default), and its conditioning."""

    in_channels: int
    latent: bool
    image_size: int  # training resolution in image pixels (square)
    conditioning: Literal["class", "none", "text"]
    num_classes: int = 0
    caption_tokens: int = 0  # text models: caption embeddings (B, caption_tokens, caption_channels)
    caption_channels: int = 0
    # 0: an image model, x (B, C, H, W); else a video model, x (B, C, T, H, W), trained on clips of this many
    # frames (the clip length bench uses when none is given; any T runs)
    frames: int = 0
    latent_factor: int = 8  # image pixels per latent pixel: 8 for the SD VAE, 32 for SANA's DC-AE

    @property
    def spatial_factor(self) -> int:
        return self.latent_factor if self.latent else 1


@dataclass(frozen=True)
class Published:
    """Where official weights of an entry are published (facts of the publishers' pages)."""

    source: str  # URL or hub repository
    file: str
    note: str = ""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    builder: Callable[..., nn.Module]
    config: dict[str, Any]
    inputs: InputSpec
    paper: PaperInfo | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    # raised whenever what the entry computes changes (same name, same options, another function), so that
    # runs trained and baselines measured before no longer match it (it enters the run config hash)
    revision: int = 0
    weights: tuple[Published, ...] = ()  # official checkpoints (``zoo show NAME`` lists them)

    def build(self, **overrides: Any) -> nn.Module:
        check_overrides(self, overrides)
        return self.builder(**{**self.config, **overrides})


REGISTRY: dict[str, ModelEntry] = {}


def register(
    name: str,
    family: str,
    builder: Callable[..., nn.Module],
    config: dict[str, Any],
    inputs: InputSpec,
    paper: PaperInfo | None = None,
    tags: tuple[str, ...] = (),
    revision: int = 0,
    weights: tuple[Published, ...] = (),
) -> ModelEntry:
    """Add a configuration; names are unique and lower-case. ``revision``, ``weights``: see ``ModelEntry``."""
    if name != name.lower():
        raise ValueError(f"registry names are lower-case: {name!r}")
    if name in REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    entry = ModelEntry(name, family, builder, dict(config), inputs, paper, tags, revision, tuple(weights))
    REGISTRY[name] = entry
    return entry


def check_overrides(entry: ModelEntry, overrides: dict[str, Any]) -> None:
    params = inspect.signature(entry.builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        accepted = sorted(params)
        raise UnknownOption(f"{entry.name}: unknown option(s) {unknown}; {entry.builder.__name__} accepts {accepted}")

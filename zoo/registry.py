"""The model registry: every backbone configuration, by name, with what its paper reports.

``create_model(name, **overrides)`` builds an entry (under ``with torch.device("meta"):`` for shape-only
work); ``create_model(name, pretrained=PATH)`` loads a checkpoint into it, strictly, through the family's
filter in ``zoo.weights`` (the official layouts of DiT, U-ViT, PixArt-alpha and DiM-Teng, and ours).
``list_models()`` names them, ``get_entry(name)`` returns the entry with its paper metadata. Model files
register their configurations with ``register(...)`` at import time (timm's pattern, flattened: a
configuration is data, not a factory function).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn


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
    """What a model consumes: pixels or VAE latents (factor 8), and its conditioning."""

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

    @property
    def spatial_factor(self) -> int:
        return 8 if self.latent else 1


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

    def build(self, **overrides: Any) -> nn.Module:
        _check_overrides(self, overrides)
        return self.builder(**{**self.config, **overrides})


_REGISTRY: dict[str, ModelEntry] = {}


def register(
    name: str,
    family: str,
    builder: Callable[..., nn.Module],
    config: dict[str, Any],
    inputs: InputSpec,
    paper: PaperInfo | None = None,
    tags: tuple[str, ...] = (),
    revision: int = 0,
) -> ModelEntry:
    """Add a configuration; names are unique and lower-case. ``revision``: see ``ModelEntry``."""
    if name != name.lower():
        raise ValueError(f"registry names are lower-case: {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    entry = ModelEntry(name, family, builder, dict(config), inputs, paper, tags, revision)
    _REGISTRY[name] = entry
    return entry


def _check_overrides(entry: ModelEntry, overrides: dict[str, Any]) -> None:
    params = inspect.signature(entry.builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise TypeError(f"{entry.name}: unknown option(s) {unknown}; {entry.builder.__name__} accepts {sorted(params)}")


def get_entry(name: str) -> ModelEntry:
    """The entry called ``name``; an unknown name is a KeyError listing the closest names."""
    _load_models()
    key = name.lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, _REGISTRY, n=5, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise KeyError(f"unknown model {name!r}.{hint} (`zoo list` shows all {len(_REGISTRY)} names)")


def create_model(name: str, pretrained: str | Path | None = None, **overrides: Any) -> nn.Module:
    """Build the registered configuration ``name`` with constructor options overridden by ``overrides``.

    ``pretrained``: a checkpoint file (the official weights of the entry's family, in their published
    layout, or our own state dict), loaded strictly: a missing, unexpected or mis-shaped tensor is a
    ValueError naming the keys and the model (``zoo.weights``; ``zoo show NAME`` says where the official
    weights are published). Pass the options the weights were trained with, e.g. ``input_size=64`` for
    ``DiT-XL-2-512x512.pt``."""
    entry = get_entry(name)
    model = entry.build(**overrides)
    if pretrained is not None:
        from zoo.weights import load_pretrained

        label = " ".join([entry.name, *(f"{k}={v!r}" for k, v in overrides.items())])
        load_pretrained(model, pretrained, entry.family, label)
    return model


def list_models(family: str | None = None) -> list[str]:
    """Registered names, in registration order, optionally of one family."""
    _load_models()
    return [n for n, e in _REGISTRY.items() if family is None or e.family == family]


def _load_models() -> None:
    import zoo.models  # noqa: F401  (registers every model file's entries)

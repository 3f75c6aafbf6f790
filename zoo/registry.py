"""The model registry: every backbone configuration, by name, with what its paper reports.

``create_model(name, **overrides)`` builds an entry (under ``with torch.device("meta"):`` for shape-only
work); ``create_model(name, pretrained=PATH)`` loads a checkpoint into it, strictly, through the family's
checkpoint layouts in ``zoo.checkpoints`` (the official layouts of DiT, Latte, U-ViT, PixArt-alpha and
DiM-Teng, and ours). ``list_models()`` names them, ``get_entry(name)`` returns the entry with its paper
metadata and where its official weights are published (``ModelEntry.weights``). Model files register their
configurations with ``zoo.entries.register(...)`` at import time (timm's pattern, flattened: a configuration is data,
not a factory function).

An unknown name (``UnknownModel``) or an option the model does not take (``UnknownOption``) is a
``mambabench.errors.UserError`` (``zoo.errors``).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from torch import nn

from zoo.entries import REGISTRY, ModelEntry
from zoo.errors import UnknownModel


def get_entry(name: str) -> ModelEntry:
    """The entry called ``name``; an unknown name is an ``UnknownModel`` (a KeyError) listing the closest names."""
    _load_models()
    key = name.lower()
    if key in REGISTRY:
        return REGISTRY[key]
    close = difflib.get_close_matches(key, REGISTRY, n=5, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownModel(f"unknown model {name!r}.{hint} (`zoo list` shows all {len(REGISTRY)} names)")


def create_model(name: str, pretrained: str | Path | None = None, **overrides: Any) -> nn.Module:
    """Build the registered configuration ``name`` with constructor options overridden by ``overrides``.

    ``pretrained``: a checkpoint file (the official weights of the entry's family, in their published
    layout, or our own state dict), loaded strictly: a missing, unexpected or mis-shaped tensor is a
    ``CheckpointMismatch`` (a ValueError) naming the keys and the model (``zoo.checkpoints``; ``zoo show
    NAME`` says where the official weights are published). Pass the options the weights were trained with,
    e.g. ``input_size=64`` for ``DiT-XL-2-512x512.pt``."""
    entry = get_entry(name)
    model = entry.build(**overrides)
    if pretrained is not None:
        from zoo.checkpoints import load_pretrained

        label = " ".join([entry.name, *(f"{k}={v!r}" for k, v in overrides.items())])
        load_pretrained(model, pretrained, entry.family, label)
    return model


def list_models(family: str | None = None) -> list[str]:
    """Registered names, in registration order, optionally of one family."""
    _load_models()
    return [n for n, e in REGISTRY.items() if family is None or e.family == family]


def _load_models() -> None:
    import zoo.models  # noqa: F401  (registers every model file's entries)

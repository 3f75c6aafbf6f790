"""A checkpoint layout as data: how an official checkpoint's names map onto ours, read in both directions.

A ``Layout`` is a table of ``Rename`` rules (official name <-> our name, with an optional reshape each
way), ``Fuse`` rules (several official tensors concatenated into one of ours), the fixed tables the official
files save and our models compute (``FixedTable``: checked against ours and dropped on import, written on
export), the model tensors the layout does not hold (``keep``) and the official tensors our model has no use
for (``ignore``: dropped on import). ``to_ours`` reads a checkpoint into our names, ``from_ours`` writes our
weights in the official names; both walk the same rules.

Rule patterns name a whole tensor (``"additional_embed"``) or, ending in ``"."``, a module prefix whose leaf
names are kept (``"pos_embed.proj."``); ``{i}`` stands for a block index (``"transformer_blocks.{i}.attn1."``).
The first rule that matches a name applies (list the longer prefixes first).

``LAYOUTS`` maps a registry family to its layouts; the first whose ``markers`` a state dict holds reads it.
A family without layouts (U-ViT, whose names are ours) and a state dict in none of them load in our names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

StateDict = dict[str, Tensor]
Reshape = Callable[[Tensor], Tensor]
POS_TOLERANCE = 1e-4  # saved fixed sin-cos tables are float32 from numpy (PixArt: float32 positions)


class _Pattern:
    """A rule's name pattern: match a key (capturing the block index and the kept leaf) and render one."""

    def __init__(self, text: str):
        self.text, self.prefix = text, text.endswith(".")
        body = re.escape(text).replace(r"\{i\}", r"(?P<i>\d+)")
        self.regex = re.compile(body + ("(?P<leaf>.*)" if self.prefix else "") + "$")

    def match(self, key: str) -> dict[str, str] | None:
        found = self.regex.match(key)
        return None if found is None else found.groupdict()

    def render(self, parts: dict[str, str]) -> str:
        return self.text.replace("{i}", parts.get("i") or "") + (parts.get("leaf") or "")


@dataclass(frozen=True)
class Rename:
    """One official name (or prefix) <-> ours, with the reshape each way (identity by default)."""

    official: str
    ours: str
    to_ours: Reshape | None = None
    from_ours: Reshape | None = None


@dataclass(frozen=True)
class Fuse:
    """Official tensors (``parts``, in order) concatenated along dim 0 into one of ours, and split back."""

    parts: tuple[str, ...]
    ours: str


@dataclass(frozen=True)
class FixedTable:
    """A fixed table the official files save and our model computes: on import ``check(saved, model)``
    raises a ValueError when it is not ours, then the table is dropped; on export ``build(model, **options)``
    writes it."""

    key: str
    check: Callable[[Tensor, nn.Module], None]
    build: Callable[..., Tensor]


@dataclass(frozen=True)
class Layout:
    """One published checkpoint layout of a family. ``name`` is what ``LoadReport.layout`` and
    ``export_state_dict(layout=...)`` call it; ``title`` names it in messages."""

    name: str
    title: str
    renames: tuple[Rename, ...] = ()
    fuses: tuple[Fuse, ...] = ()
    tables: tuple[FixedTable, ...] = ()
    keep: tuple[str, ...] = ()  # our tensors the layout does not hold: kept as built on import, left out on export
    markers: tuple[str, ...] = ()  # key prefixes that identify the layout (default: its tables' keys)
    # every tensor has a counterpart: the checkpoint is checked in the official names before renaming, and
    # exporting a tensor no rule covers is an error
    complete: bool = False
    grid_tables: tuple[str, ...] = ()  # learned position tables (official names) that may be of another grid
    write_tables: bool = True  # export writes the fixed tables (a layout that checks them when present may not)
    # official tensors (names, or prefixes ending in ".") our model has no counterpart for and does not use:
    # dropped on import (``LoadReport.dropped`` names them), never written on export
    ignore: tuple[str, ...] = ()
    _rules: list[tuple[_Pattern, _Pattern, Any]] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for rule in self.renames:
            self._rules.append((_Pattern(rule.official), _Pattern(rule.ours), rule))

    def ignored(self, key: str) -> bool:
        return any(key == name or (name.endswith(".") and key.startswith(name)) for name in self.ignore)

    def holds(self, state: StateDict) -> bool:
        markers = self.markers or tuple(t.key for t in self.tables)
        return any(k.startswith(markers) for k in state)

    # ------------------------------------------------------------ names, both directions

    def rename_to_ours(self, state: StateDict) -> StateDict:
        """Official names -> ours; a key no rule covers passes unchanged (the strict check then names it)."""
        out: StateDict = {}
        pending: dict[str, tuple[Fuse, dict[str, Tensor]]] = {}  # our fused key -> (rule, official key -> part)
        for key, value in state.items():
            fused = self._fuse_to_ours(key)
            if fused is not None:
                rule, name = fused
                pending.setdefault(name, (rule, {}))[1][key] = value
                continue
            for official, ours, rule in self._rules:
                parts = official.match(key)
                if parts is not None:
                    out[ours.render(parts)] = rule.to_ours(value) if rule.to_ours else value
                    break
            else:
                out[key] = value
        for name, (rule, found) in pending.items():
            parts = _Pattern(rule.ours).match(name) or {}
            wanted = [_Pattern(p).render(parts) for p in rule.parts]
            absent = [k for k in wanted if k not in found]
            if absent:
                raise ValueError(f"{self.title} lacks {', '.join(absent)}")
            out[name] = torch.cat([found[k] for k in wanted], dim=0)
        return out

    def rename_from_ours(self, state: StateDict) -> StateDict:
        """Our names -> official ones (our ``keep`` tensors and the fixed tables left out)."""
        skip = set(self.keep) | {t.key for t in self.tables}
        out: StateDict = {}
        for key, value in state.items():
            if key in skip:
                continue
            split = self._fuse_from_ours(key, value)
            if split is not None:
                out.update(split)
                continue
            for official, ours, rule in self._rules:
                parts = ours.match(key)
                if parts is not None:
                    out[official.render(parts)] = rule.from_ours(value) if rule.from_ours else value
                    break
            else:
                if self.complete:
                    raise ValueError(f"{key}: no counterpart in {self.title}")
                out[key] = value
        return out

    def _fuse_to_ours(self, key: str) -> tuple[Fuse, str] | None:
        for rule in self.fuses:
            for part in rule.parts:
                parts = _Pattern(part).match(key)
                if parts is not None:
                    return rule, _Pattern(rule.ours).render(parts)
        return None

    def _fuse_from_ours(self, key: str, value: Tensor) -> StateDict | None:
        for rule in self.fuses:
            parts = _Pattern(rule.ours).match(key)
            if parts is not None:
                chunks = value.chunk(len(rule.parts), dim=0)
                return {_Pattern(p).render(parts): c for p, c in zip(rule.parts, chunks, strict=True)}
        return None

    # ------------------------------------------------------------ whole checkpoints

    def to_ours(self, state: StateDict, model: nn.Module, model_name: str) -> tuple[StateDict, list[str], list[str]]:
        """``state`` (this layout) -> our names for ``model``: (state, fixed tables and ignored tensors dropped,
        tensors kept)."""
        if self.complete:
            self._check_names(state, model, model_name)
        ignored = [k for k in state if self.ignored(k)]
        state = self.rename_to_ours({k: v for k, v in state.items() if not self.ignored(k)})
        kept = []
        target = model.state_dict() if self.keep else {}
        for key in self.keep:
            if key in target and key not in state:
                state[key] = target[key]
                kept.append(key)
        dropped = ignored
        for table in self.tables:
            if table.key in state:
                table.check(state.pop(table.key), model)
                dropped.append(table.key)
        return state, dropped, kept

    def from_ours(self, model: nn.Module, **options: Any) -> StateDict:
        """``model``'s weights in this layout, its fixed tables first (``options``: what they need)."""
        state = self.rename_from_ours({k: v.detach().clone() for k, v in model.state_dict().items()})
        if not self.write_tables:
            return state
        with torch.device("cpu"):  # also when the model is built on the meta device
            tables = {t.key: t.build(model, **options) for t in self.tables}
        return {**tables, **state}

    def _check_names(self, state: StateDict, model: nn.Module, model_name: str) -> None:
        """The checkpoint against the model in the official names: missing, unexpected, mis-shaped keys
        (a grid table of another grid, same width and prefix, passes on to the size check of ours)."""
        ours = model.state_dict()
        expected = self.rename_from_ours(ours)
        counterpart = dict(zip(expected, ours, strict=True))
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected and not self.ignored(k)]
        shaped = []
        for key, want in expected.items():
            have = state.get(key)
            if have is None or have.shape == want.shape:
                continue
            if key in self.grid_tables and have.dim() == 3 and have.shape[::2] == want.shape[::2]:
                continue
            shaped.append(
                f"{key} {tuple(have.shape)} in the checkpoint vs {tuple(want.shape)} in the model ({counterpart[key]})"
            )
        if missing or unexpected or shaped:
            raise ValueError(f"{self.title} does not fit {model_name}: {key_lists(missing, unexpected, shaped)}")


LAYOUTS: dict[str, tuple[Layout, ...]] = {}


def register_layouts(family: str, *layouts: Layout) -> None:
    """The published layouts of ``family``'s checkpoints, in the order they are tried on import."""
    LAYOUTS[family] = tuple(layouts)


# ---------------------------------------------------------------- helpers of the family files


def tolerance(saved: Tensor) -> float:
    """How far a saved fixed table may be from ours: ``POS_TOLERANCE``, or the rounding of a half-precision
    file (bf16: 2^-7, fp16: 2^-10, of tables whose values lie in [-1, 1])."""
    return max(POS_TOLERANCE, torch.finfo(saved.dtype).eps) if saved.is_floating_point() else POS_TOLERANCE


def check_fixed_table(key: str, saved: Tensor, expected: Tensor, what: str, hint: str = "") -> None:
    """A saved fixed table equals ours within its ``tolerance`` (on the meta device: its shape)."""
    if saved.numel() != expected.numel():
        raise ValueError(f"{key} {tuple(saved.shape)} is not {what} {tuple(expected.shape)}{hint}")
    if saved.device.type == "meta":
        return
    limit = tolerance(saved)
    diff = (saved.detach().float().reshape(expected.shape) - expected).abs().max().item()
    if diff > limit:
        raise ValueError(f"{key} differs from {what} by up to {diff:.2e} (tolerance {limit:g}){hint}")


def close(saved: Tensor, expected: Tensor) -> bool:
    """``saved`` equals ``expected`` within its ``tolerance`` (never on the meta device)."""
    if saved.device.type == "meta" or saved.numel() != expected.numel():
        return False
    return (saved.detach().float().reshape(expected.shape) - expected).abs().max().item() <= tolerance(saved)


def square_grid(key: str, table: Tensor) -> int:
    """The side of the square grid a (1, grid*grid, dim) position table covers."""
    tokens = table.shape[-2] if table.dim() >= 2 else 0
    grid = math.isqrt(tokens)
    if table.dim() != 3 or grid * grid != tokens:
        raise ValueError(f"{key} {tuple(table.shape)} is not a (1, grid*grid, dim) position table")
    return grid


def key_lists(missing: list[str], unexpected: list[str], shaped: list[str]) -> str:
    """Up to four keys of each kind: ``1 missing (a), 2 unexpected (b; c)``."""
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
        if keys:
            more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
            parts.append(f"{len(keys)} {what} ({'; '.join(keys[:4])}{more})")
    return ", ".join(parts)

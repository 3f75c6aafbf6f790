"""Official checkpoints into registry models: ``zoo.create_model(name, pretrained=PATH)`` (timm's pattern).

A checkpoint file is read whatever its container (``read_state_dict``: a ``torch.save`` dict, the state dict
nested under ``ema`` / ``state_dict`` / ``model`` as DiT's and PixArt-alpha's training code save it, also with
the training script's pickled args beside it, read as inert stand-ins (``pickled``), or a ``.safetensors``
file), then the layout of its family that it is in (``LAYOUTS``, one file per family: ``dit``, ``latte``,
``pixart`` (also ``t2md``, official and diffusers), ``sana`` (official and diffusers), ``dim_teng``, ``zigma``,
``dis``, ``dig``) maps it onto our parameter names. U-ViT (baofff/U-ViT ``libs/uvit.py``, ``nnet_ema.pth``)
needs no layout: our names are U-ViT's and its ``pos_embed`` is learned, so it must match the model's grid
(``input_size``). Every other family, and a state dict in none of its family's layouts, loads in our own names
(our ``ablations train`` checkpoints, ``model.state_dict()`` files).

The load is strict: a missing, unexpected or mis-shaped tensor is a ``CheckpointMismatch`` naming the keys
and the model; a file that is not a checkpoint is a one-line ``NotACheckpoint``. Both are
``mambabench.errors.UserError`` and ValueError (``zoo.errors``). ``export_state_dict`` writes a model's
weights in one of its family's layouts, through the same rules, for official code or for tests.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from zoo.checkpoints import dig, dim_teng, dis, dit, latte, pixart, sana, zigma  # noqa: F401  (each registers a layout)
from zoo.checkpoints.layout import LAYOUTS, Layout, StateDict, key_lists
from zoo.checkpoints.pickled import load_with_stand_ins
from zoo.errors import CheckpointMismatch, NotACheckpoint

WRAPPERS = ("ema", "state_dict", "model", "module", "net", "nnet")  # first one holding a state dict wins


@dataclass
class LoadReport:
    source: str
    layout: str  # "ours", "official", "diffusers"
    dropped: list[str] = field(default_factory=list)  # fixed tables checked against ours and dropped
    kept: list[str] = field(default_factory=list)  # model tensors the layout does not hold (kept as built)
    model: str = ""  # the model's name for messages (registry name and overrides)


# ---------------------------------------------------------------- reading


def read_state_dict(source: str | Path) -> StateDict:
    """The flat state dict in a checkpoint file (or a diffusers model folder: its weights file); anything else
    is a one-line ``NotACheckpoint`` naming it."""
    path = Path(source).expanduser()
    if path.is_dir():
        return _read_diffusers_folder(path)
    if not path.is_file():
        raise NotACheckpoint(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise NotACheckpoint(f"{path}: reading .safetensors needs `pip install safetensors`") from None
        try:
            return dict(load_file(str(path)))
        except Exception as error:  # safetensors raises its own SafetensorError
            raise NotACheckpoint(f"{path}: not a safetensors checkpoint ({_first_line(error)})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises anything (UnpicklingError, RuntimeError, EOFError, ...)
        try:  # a training checkpoint with its script's pickled args (ZigMa's, DiS's, DiG's): inert stand-ins
            obj = load_with_stand_ins(path)
        except Exception:
            raise NotACheckpoint(f"{path}: not a checkpoint torch.load can read ({_first_line(error)})") from None
    state = unwrap(obj)
    if state is None:
        raise NotACheckpoint(
            f"{path}: not a checkpoint (no state dict of tensors in it, nor under {'/'.join(WRAPPERS)})"
        )
    return state


def _read_diffusers_folder(path: Path) -> StateDict:
    """A diffusers model folder (``save_pretrained``'s, or a pipeline's holding ``transformer/``): its one
    ``diffusion_pytorch_model[.<variant>].safetensors`` / ``.bin`` file, or all the shards its index names."""
    for folder in (path, path / "transformer"):
        index = sorted(folder.glob("diffusion_pytorch_model*.index.json"))
        if len(index) == 1:
            shards = sorted(set(json.loads(index[0].read_text())["weight_map"].values()))
            state: StateDict = {}
            for shard in shards:
                state.update(read_state_dict(folder / shard))
            return state
        files = sorted(folder.glob("diffusion_pytorch_model*.safetensors")) or sorted(
            folder.glob("diffusion_pytorch_model*.bin")
        )
        if len(files) == 1:
            return read_state_dict(files[0])
        if files:
            names = ", ".join(f.name for f in files)
            raise NotACheckpoint(f"{path}: several weight files ({names}): pass the one to load")
    raise NotACheckpoint(f"{path}: a folder without diffusion_pytorch_model.safetensors (nor in transformer/)")


def unwrap(obj: object) -> StateDict | None:
    """The state dict in ``obj``: itself when it maps names to tensors, else the first of ``WRAPPERS`` that
    does; a ``module.`` prefix (DataParallel / accelerate) is removed."""
    if not isinstance(obj, dict) or not obj:
        return None
    if all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        prefix = "module."
        if all(k.startswith(prefix) for k in obj):
            return {k[len(prefix) :]: v for k, v in obj.items()}
        return dict(obj)
    for key in WRAPPERS:
        if key in obj:
            found = unwrap(obj[key])
            if found is not None:
                return found
    return None


def _first_line(error: BaseException) -> str:
    return ((str(error).strip().splitlines() or [type(error).__name__])[0])[:160]


# ---------------------------------------------------------------- loading


def layouts(family: str) -> tuple[Layout, ...]:
    """The published checkpoint layouts of ``family`` (none: its official names are ours)."""
    return LAYOUTS.get(family, ())


def convert(
    state: StateDict, model: nn.Module, family: str, source: str = "state dict", name: str = ""
) -> tuple[StateDict, LoadReport]:
    """``state`` in one of ``family``'s layouts (or ours) -> our names for ``model``, fixed tables checked and
    dropped. Errors are ``CheckpointMismatch`` naming ``source`` (and the model as ``name``)."""
    report = LoadReport(source=source, layout="ours", model=name)
    state = dict(state)
    for layout in layouts(family):
        if layout.holds(state):
            try:
                state, report.dropped, report.kept = layout.to_ours(state, model, name or type(model).__name__)
            except ValueError as error:
                raise CheckpointMismatch(f"{source}: {error}") from None
            report.layout = layout.name
            break
    return state, report


def mismatches(model: nn.Module, state: StateDict) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, mis-shaped) keys of ``state`` against ``model``'s state dict."""
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    shaped = [
        f"{k} {tuple(state[k].shape)} in the checkpoint vs {tuple(v.shape)} in the model"
        for k, v in target.items()
        if k in state and state[k].shape != v.shape
    ]
    return missing, unexpected, shaped


def check_fit(model: nn.Module, state: StateDict, name: str, source: str) -> None:
    """A ``CheckpointMismatch`` naming the model and the keys when ``state`` does not fit ``model`` exactly."""
    missing, unexpected, shaped = mismatches(model, state)
    if not (missing or unexpected or shaped):
        return
    hint = _hint(model, state, shaped)
    raise CheckpointMismatch(f"{source} does not fit {name}: {key_lists(missing, unexpected, shaped)}{hint}")


def _hint(model: nn.Module, state: StateDict, shaped: list[str]) -> str:
    """For a learned position table of another grid (U-ViT, DiM): the size option that fits it."""
    if not any(s.startswith("pos_embed ") for s in shaped) or state["pos_embed"].dim() != 3:
        return ""
    if hasattr(model, "extras"):  # U-ViT: [label,] time tokens first
        extras, option = model.extras, "input_size"
    elif hasattr(model, "conditional"):  # DiM (Teng): time [, label] tokens first
        extras, option = 1 + int(model.conditional), "input_size"
    else:
        return ""
    tokens = state["pos_embed"].shape[1] - extras
    grid = math.isqrt(max(tokens, 0))
    if grid * grid != tokens:
        return ""
    return f"; its position table is for a {grid}x{grid} grid: pass {option}={grid * model.patch_size}"


def load_pretrained(
    model: nn.Module, source: str | Path | StateDict, family: str, name: str | None = None
) -> LoadReport:
    """Load a checkpoint file (or a state dict) in one of ``family``'s layouts or ours into ``model``,
    strictly. On the meta device only names and shapes are checked (the tensors are assigned)."""
    label = "state dict" if isinstance(source, dict) else str(source)
    name = name or type(model).__name__
    state = source if isinstance(source, dict) else read_state_dict(source)
    state, report = convert(state, model, family, label, name)
    check_fit(model, state, name, label)
    target = model.state_dict()
    meta = any(t.device.type == "meta" for t in target.values())
    if meta:  # assigned as they are: in the model's dtype, as load_state_dict's copy casts them (bf16 files)
        state = {k: v.to(target[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    with torch.no_grad():
        model.load_state_dict(state, strict=True, assign=meta)
    if report.kept:
        warnings.warn(
            f"{label} ({report.layout} layout) holds no {', '.join(report.kept)}: {name} keeps its own "
            "(diffusers' pipelines use the T5 encoding of the empty prompt as the unconditional caption)",
            stacklevel=2,
        )
    return report


# ---------------------------------------------------------------- exporting


def export_state_dict(model: nn.Module, family: str, layout: str = "official", frames: int = 16) -> StateDict:
    """``model``'s weights in one of ``family``'s layouts: ``"official"`` (the original code's names, fixed
    tables included, as its checkpoints hold them; Latte: its frame table for ``frames``, 16 in its UCF-101
    model) or ``"diffusers"`` (PixArt, SANA). A family without layouts: its official names are ours."""
    found = {item.name: item for item in layouts(family)}
    if layout in found:
        return found[layout].from_ours(model, frames=frames)
    if layout == "official" and not found:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    names = ", ".join(found) or "official"
    raise ValueError(f"no {layout!r} layout for family {family!r} (it has: {names})")

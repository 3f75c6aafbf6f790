"""A run folder on disk, read and written: what ``ablations train`` leaves in ``--out`` and what sampling,
scoring and the tables read back.

- ``config.json``: the run's ``RunConfig`` (``experiment.RunConfig.save``/``load``);
- ``checkpoints/step-NNNNNNN.pt``: model, EMA and optimizer state, written whole or not at all;
- ``log.jsonl``: one line of loss terms every ``log_every`` steps; ``data.json``: what sampling needs to know
  about the data; ``done.json``: the summary of a finished run.

A checkpoint that cannot be used (damaged, or the weights of another model) is a ``CheckpointError`` naming
the file and the fix, never a screen of tensor size mismatches.
"""

from __future__ import annotations

import json
import math
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from ablations.experiment import RunConfig, build_model, describe_model, model_setup
from mambabench.errors import UserError
from mambabench.files import atomic_save, atomic_write_text


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be used: damaged, or the weights of another model; the message names the file."""


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def checkpoints(folder: str | Path) -> list[Path]:
    """The run's checkpoint files, oldest step first."""
    return sorted((Path(folder) / "checkpoints").glob("step-*.pt"))


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / "checkpoints" / f"step-{step:07d}.pt"


def step_of(path: Path) -> int:
    """The step of a checkpoint file (``step-0000004.pt``: 4)."""
    return int(path.stem.split("-")[1])


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest checkpoint file (by step), whether or not it loads; ``newest_checkpoint`` checks."""
    found = checkpoints(folder)
    return found[-1] if found else None


def save_checkpoint(folder: str | Path, step: int, state: dict) -> Path:
    """Write the checkpoint of ``step`` whole or not at all: a reader sees the old file or the new one."""
    return atomic_save(state, checkpoint_path(folder, step))


def is_finished(folder: str | Path) -> bool:
    """Whether the run trained to its last step (its ``done.json`` summary is there)."""
    return (Path(folder) / "done.json").is_file()


def read_checkpoint(path: Path, keys: tuple[str, ...] = ("step", "model", "ema"), map_location="cpu") -> dict:
    """A checkpoint's dict; a file that is not one (empty, truncated, overwritten, lacking ``keys``) is a
    ``CheckpointError`` naming the file and what is wrong with it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise CheckpointError(f"{path}: empty file (0 bytes)")
        state = torch.load(path, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except Exception as error:  # torch.load raises anything (RuntimeError, UnpicklingError, EOFError, OSError)
        if isinstance(error, OSError) or zipfile.is_zipfile(path):
            reason = f"unreadable: {type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:160]}"
        else:
            reason = f"truncated or overwritten: {size} bytes that are not a whole checkpoint"
        raise CheckpointError(f"{path}: {reason}") from error
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (lacks {', '.join(missing)})")
    return state


def newest_checkpoint(
    folder: str | Path, keys: tuple[str, ...] = ("step", "model", "ema"), map_location="cpu"
) -> tuple[Path | None, dict | None, list[tuple[Path, str]]]:
    """(path, state, skipped) of the newest checkpoint of a run that loads; ``skipped`` lists the newer ones
    that did not, with why. (None, None, []) when there is none; a ``CheckpointError`` naming every file
    when none of them loads."""
    skipped = []
    for path in reversed(checkpoints(folder)):
        try:
            return path, read_checkpoint(path, keys, map_location), skipped
        except CheckpointError as error:
            skipped.append((path, str(error).removeprefix(f"{path}: ")))
    if skipped:
        listed = "; ".join(f"{path.name}: {why}" for path, why in skipped)
        raise CheckpointError(
            f"no checkpoint in {Path(folder) / 'checkpoints'} loads ({listed}); move them away (or choose "
            "another --out) to train from the start"
        )
    return None, None, []


def _saved_model(state: dict, path: Path) -> str:
    """The model a checkpoint was saved by, as ``describe_model`` spells it (from the checkpoint, else from
    its run's config.json)."""
    spec = state.get("model_spec")
    if isinstance(spec, dict) and "model" in spec:
        return describe_model(spec["model"], spec.get("overrides"))
    try:
        saved = RunConfig.load(Path(path).parent.parent)
        return describe_model(saved.model, saved.overrides)
    except (UserError, ValueError, TypeError):
        return "an unknown model"


def _mismatch(target: dict[str, Tensor], source: dict[str, Tensor]) -> list[str]:
    """What keeps ``source`` weights from loading into a model with ``target``'s: one phrase per tensor."""
    bad = [f"{k} (missing)" for k in target if k not in source]
    bad += [
        f"{k} {tuple(source[k].shape)} saved vs {tuple(v.shape)} now"
        for k, v in target.items()
        if k in source and source[k].shape != v.shape
    ]
    return bad + [f"{k} (unexpected)" for k in source if k not in target]


def _fit_error(path: Path, state: dict, wanted: str, bad: list[str], fix: str) -> CheckpointError:
    saved = _saved_model(state, path)
    what = f"holds weights of {saved}, which do not fit {wanted}"
    if saved == wanted:
        what = f"holds weights of {saved} as it was defined then, which do not fit its definition now"
    return CheckpointError(f"{path} {what} ({len(bad)} tensors differ, e.g. {'; '.join(bad[:2])}); {fix}")


def load_weights(model: nn.Module, path: Path, state: dict, key: str, wanted: str, fix: str) -> None:
    """``model.load_state_dict(state[key])`` of checkpoint ``path``; weights of another model are one
    ``CheckpointError`` naming the model of the checkpoint and the model asked for, instead of a screen of size
    mismatches."""
    bad = _mismatch(model.state_dict(), state[key])
    if bad:
        raise _fit_error(path, state, wanted, bad, fix)
    model.load_state_dict(state[key])


def load_run_model(
    folder: str | Path,
    ema: bool = True,
    device: str | torch.device = "cpu",
    step: int | None = None,
    log: Callable[[str], None] | None = None,
):
    """(config, setup, model) of a run from its newest checkpoint that loads (or the one of ``step``), EMA
    weights by default, in eval mode. A damaged newer checkpoint is skipped with one line to ``log``
    (default: stderr) naming it."""
    config = RunConfig.load(folder)
    setup = model_setup(config)
    key = "ema" if ema else "model"
    if step is None:
        path, state, skipped = newest_checkpoint(folder, keys=(key,))
        if path is None:
            raise UserError(f"{folder} has no checkpoint yet: train it first (ablations train --out {folder})")
        for bad, why in skipped:
            (log or _warn)(f"warning: skipped damaged checkpoint {bad} ({why}); using {path.name}")
    else:
        path = checkpoint_path(folder, step)
        if not path.is_file():
            have = ", ".join(p.stem for p in checkpoints(folder)) or "none"
            raise UserError(f"{folder} has no checkpoint of step {step} (it has: {have})")
        state = read_checkpoint(path, keys=(key,))
    model = build_model(setup, config.overrides)
    wanted = describe_model(config.model, config.overrides)
    load_weights(model, path, state, key, wanted, f"the run's config.json asks for {wanted}")
    return config, setup, model.to(device).eval()


def init_from_run(
    model: nn.Module,
    folder: str | Path,
    wanted: str | None = None,
    log: Callable[[str], None] | None = None,
    family: str | None = None,
) -> list[str]:
    """Start from another run's EMA weights, also at another resolution: learned position embeddings whose
    grid differs are bilinearly resized (sin-cos ones are recomputed by the models anyway). Returns the keys
    resized. Any other shape mismatch is an error naming both models (``wanted``: the model being trained).

    ``folder`` may also be a checkpoint file: the official weights of the model's ``family`` in their
    published layout (``zoo.create_model(name, pretrained=PATH)`` reads the same files) or a state dict in our
    names; then an unexpected tensor is an error too."""
    from zoo.layers.pos_embed import resize_learned

    is_file = Path(folder).is_file()
    if is_file:
        from zoo.checkpoints import convert, read_state_dict

        path, state = Path(folder), {}
        try:
            source, _ = convert(read_state_dict(path), model, family or "", str(path))
        except ValueError as error:
            raise CheckpointError(f"--init-from: {error}") from None
    else:
        path, state, skipped = newest_checkpoint(folder, keys=("ema",))
        if path is None:
            raise UserError(f"--init-from {folder}: no checkpoint there")
        for bad, why in skipped:
            (log or _warn)(f"warning: --init-from: skipped damaged checkpoint {bad} ({why}); using {path.name}")
        source = dict(state["ema"])
    target = model.state_dict()
    resized = []
    for key, value in target.items():
        if key in source and source[key].shape != value.shape and key.endswith("pos_embed") and source[key].dim() == 3:
            old_grid, new_grid = _grid(source[key], value)
            extras = source[key].shape[1] - old_grid**2
            source[key] = resize_learned(source[key], extras, old_grid, new_grid, new_grid)
            resized.append(key)
    bad = [b for b in _mismatch(target, source) if is_file or not b.endswith("(unexpected)")]
    if bad:
        wanted = wanted or type(model).__name__
        if is_file:
            raise CheckpointError(
                f"--init-from {path} does not fit {wanted} ({len(bad)} tensors differ, e.g. {'; '.join(bad[:3])})"
            )
        fix = "--init-from needs a run of the same model (only learned position embeddings may differ in size)"
        raise CheckpointError(f"--init-from: {_fit_error(path, state, wanted, bad, fix)}")
    model.load_state_dict({k: source[k] for k in target})
    return resized


def _grid(old: Tensor, new: Tensor) -> tuple[int, int]:
    """Square patch grids of two learned embeddings that share their count of leading extra tokens."""
    for extras in range(0, 4):
        g_old, g_new = math.isqrt(old.shape[1] - extras), math.isqrt(new.shape[1] - extras)
        if g_old**2 + extras == old.shape[1] and g_new**2 + extras == new.shape[1]:
            return g_old, g_new
    raise ValueError(f"cannot read a square grid from position embeddings {tuple(old.shape)}, {tuple(new.shape)}")


def checkpoint_step(folder: str | Path) -> int:
    """The step of a run's newest checkpoint (0 when there is none)."""
    path = latest_checkpoint(folder)
    return step_of(path) if path else 0


def trim_log(folder: str | Path, step: int) -> None:
    """Drop the lines of ``log.jsonl`` past ``step`` (a resumed run repeats them), so the log matches an
    uninterrupted run's."""
    log = Path(folder) / "log.jsonl"
    if log.is_file():
        kept = [line for line in log.read_text().splitlines() if _log_step(line) <= step]
        atomic_write_text(log, "".join(line + "\n" for line in kept))


def _log_step(line: str) -> float:
    """The step of a log.jsonl line (inf for a line that does not parse: a write cut short)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf

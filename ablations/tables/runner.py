"""Running a table on this machine: for each variant and seed, train (or resume, or skip when finished),
sample, score, store (names and places: ``ablations.tables.layout``).

Several ``ablations run`` processes (``--jobs N``, or two tables that share runs) cooperate through a lock
file per run folder: a process claims a run before training it and passes over runs another process
holds, coming back to them at the end to read their scores. No run is trained twice at the same time.
An interrupted ``ablations run`` picks up where it stopped: finished checkpoints and score files are kept.

A run whose training loss turns NaN/inf (``ablations.train.NonFiniteLoss``) is a result, not a crash: its
divergence is written to ``RUN/diverged.json`` (message, step, loss, seed), every checkpoint it did not reach
gets a result in the table's index (and rows in the store) with its metrics NaN and a ``diverged`` field, and
the other runs go on; checkpoints scored before it diverged keep their scores. A rerun reads the divergence
instead of training again; ``retry_diverged`` (``ablations run --retry-diverged``) trains it again from its
last good checkpoint (after a fix: the same code and configuration diverge at the same step again).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ablations.data import open_dataset
from ablations.experiment import RunConfig, config_hash, model_setup
from ablations.tables.geneval_rows import geneval_inputs, score_row, scores_geneval
from ablations.tables.layout import (
    as_row,
    checkpoint_steps,
    index_file,
    measurements,
    not_runnable,
    ordered,
    run_folder,
    runs_root,
    score_file,
    variant_config,
    write_index,
)
from ablations.tables.needs import check_needs, teacher_path
from ablations.tables.spec import Preset, TableSpec, Variant
from mambabench.errors import UserError
from mambabench.files import atomic_write_json, claim


def run_table(
    table: TableSpec,
    preset_name: str,
    variants: list[str] | None = None,
    data_root: str | None = None,
    vae: str | None = None,
    root: str | Path | None = None,
    device: str = "cpu",
    store=None,
    log: Callable[[str], None] = print,
    seeds: int | Sequence[int] = 1,
    retry_diverged: bool | float = False,
) -> list[dict]:
    """Train and score every chosen variant at a preset with training seeds ``0 .. seeds-1`` (or the seeds
    listed); returns one result per (variant, seed, checkpoint), a diverged run's marked ``diverged``. Runs
    another process is working on are done last, by waiting. ``retry_diverged``: train again the runs that
    diverged before this call (True) or before that time (a ``time.time()``: the start of a command whose
    processes share the work, so a run that diverges again in it is not retried twice)."""
    if preset_name not in table.presets:
        raise UserError(f"{table.id} has no preset {preset_name!r}; presets: {', '.join(table.presets)}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    preset = table.presets[preset_name]
    check_needs(table, preset, data_root, vae)  # every file the preset needs, all named at once
    if preset.needs_vae and vae is None:
        raise UserError(
            f"{table.id} --preset {preset_name} trains on VAE latents: pass --vae DIR (a local "
            "diffusers AutoencoderKL folder, e.g. stabilityai/sd-vae-ft-ema)"
        )
    open_dataset(preset.data, data_root, size=preset.res)  # fails early, naming what is missing and how to get it
    if table.our_metric == "fvd":
        from ablations.fvd import find_i3d_weights

        find_i3d_weights()  # before any training: FVD's I3D is user-supplied (the error says where to get it)
    geneval = geneval_inputs(table, log)  # the paper's metric beside ours, when its inputs are given (checked now)
    root = runs_root(root)
    context = dict(table=table, preset=preset, root=root, data_root=data_root, vae=vae, device=device, log=log)
    context["geneval"] = geneval
    context["retry_before"] = (time.time() if retry_diverged is True else float(retry_diverged)) or None
    context["recorder"] = store.recorder() if store is not None else None  # a store run begins with its first row
    results, deferred = [], []
    for seed in seed_list:
        teacher_folder, teacher_diverged = None, None
        for variant in ordered(table, variants):
            if variant.distill is not None and teacher_diverged:
                log(f"{table.id}/{variant.key} seed {seed}: not run: its teacher diverged ({teacher_diverged})")
                continue
            # a teacher is waited for (its students need it); any other run held elsewhere comes last
            done = _run_variant(variant, seed, teacher_folder, wait=variant.teacher, **context)
            if done is None:
                deferred.append((variant, seed, teacher_folder))
                continue
            results += done[0]
            if variant.teacher:
                teacher_folder = str(done[1])
                teacher_diverged = next((r["diverged"] for r in done[0] if r.get("diverged")), None)
    for variant, seed, teacher_folder in deferred:
        results += _run_variant(variant, seed, teacher_folder, wait=True, **context)[0]
    return results


def _run_variant(
    variant: Variant,
    seed: int,
    teacher_folder: str | None,
    wait: bool,
    *,
    table: TableSpec,
    preset: Preset,
    root: Path,
    data_root,
    vae,
    device: str,
    recorder,
    log,
    geneval=None,
    retry_before: float | None = None,
) -> tuple[list[dict], Path] | None:
    """Train (or resume), sample and score one run at every checkpoint of the preset; None when another
    process holds the run and ``wait`` is False."""
    name = f"{table.id}/{variant.key}" + (f" seed {seed}" if seed else "")
    if variant.teacher and preset.teacher_file:  # the released checkpoint is the teacher: nothing to train
        path = teacher_path(preset)
        log(f"{name}: not trained: the students distil from the released checkpoint {path}")
        return [], Path(path)
    config = variant_config(table, variant, preset, data_root, vae, teacher_folder, seed)
    folder = run_folder(root, config)
    blocked = not_runnable(config)
    if blocked:
        log(f"{name}: not run: {blocked}")
        return [], folder
    with claim(folder / ".claim", wait) as claimed:
        if not claimed:
            log(f"{name}: another process is running {folder.name}; coming back to it at the end")
            return None
        results = []
        steps = checkpoint_steps(preset, config.steps)
        cfg = variant.cfg if variant.cfg is not None else preset.cfg
        diverged = earlier_divergence(folder, retry_before, f"{name}: ", log)
        for label, step in steps.items():
            path = score_file(folder, step, preset, cfg)
            new: set[str] = set()  # the metrics scored now (a resumed row records only those in the store)
            if path.is_file():
                log(f"{name} @{label}: scored already ({path.name})")
                result = as_row(json.loads(path.read_text()), table, variant, seed, preset)
            else:
                if not _before(diverged, step):
                    diverged = _train_or_diverge(config, folder, step, tuple(steps.values()), seed, f"{name}: ", log)
                header = _result_header(table, variant, preset, config, folder, label, step, seed, cfg, device)
                if _before(diverged, step):  # a result like a scored one, its metrics NaN (none is written to path)
                    log(f"{name} @{label}: not scored: the run diverged at step {diverged['step']}")
                    result = {**header, **diverged_scores(table, preset, diverged)}
                    new |= {m.metric for m in measurements(result)} if diverged["recorded_now"] else set()
                else:
                    what = "clips" if table.our_metric == "fvd" else "images"
                    log(f"{name} @{label}: sampling {preset.n_samples} {what}, scoring")
                    scores = _sample_and_score(
                        table, config, folder, preset, cfg, seed, device, step, path.stem, data_root
                    )
                    result = dict(header, **scores)
                    atomic_write_json(path, result, indent=2)  # whole or not at all, as every score file
                    new |= {m.metric for m in measurements(result)}
            if geneval is not None and scores_geneval(config) and not result.get("diverged"):
                said = f"{name} @{label}: GenEval, {preset.geneval_per_prompt} images per prompt of {geneval.metadata}"

                def prepare(step=step, said=said):  # the checkpoint is there (kept after its FID); say what runs
                    _train_to(config, folder, step, tuple(steps.values()), f"{name}: ", log)
                    log(said)

                scores, fresh = score_row(config, folder, preset, cfg, seed, device, step, geneval, prepare)
                result = {**result, **scores}
                new |= {m.metric for m in measurements(result) if fresh and m.metric.startswith("geneval_")}
            if recorder is not None and new:
                recorder.add([m for m in measurements(result) if m.metric in new])
            results.append(result)
            write_index(root, table, preset, results)
    return results, folder


DIVERGED = "diverged.json"  # in a run folder: the run's loss became NaN/inf (see the module's docstring)


def divergence(folder: Path) -> dict | None:
    """The recorded divergence of the run in ``folder`` (message, step, loss, seed, recorded_at), or None."""
    path = Path(folder) / DIVERGED
    return json.loads(path.read_text()) if path.is_file() else None


def earlier_divergence(folder: Path, retry_before: float | None, name: str, log) -> dict | None:
    """The divergence recorded for this run, or None when there is none or it is to be retried (recorded before
    ``retry_before``: the record is removed and the run trains again from its last good checkpoint)."""
    found = divergence(folder)
    if found is None:
        return None
    if retry_before is not None and found.get("recorded_at", 0.0) < retry_before:
        log(f"{name}diverged at step {found['step']} before; --retry-diverged: training it again")
        (Path(folder) / DIVERGED).unlink(missing_ok=True)
        return None
    log(f"{name}diverged at step {found['step']} (loss {found['loss']}) in an earlier run: kept as its result "
        "(--retry-diverged trains it again)")  # fmt: skip
    return {**found, "recorded_now": False}


def _before(diverged: dict | None, step: int) -> bool:
    """Whether the run diverged before reaching its checkpoint at ``step`` (the loss of step s is NaN: the
    checkpoints up to s exist)."""
    return diverged is not None and (diverged["step"] is None or step > diverged["step"])


def _train_or_diverge(
    config: RunConfig, folder: Path, step: int, keep_steps: tuple[int, ...], seed: int, name: str, log
) -> dict | None:
    """Train to ``step`` (``_train_to``); when the loss turns NaN/inf, record the divergence in the run folder
    and return it (else None)."""
    from ablations.train import NonFiniteLoss

    try:
        _train_to(config, folder, step, keep_steps, name, log)
    except NonFiniteLoss as error:
        log(f"{name}diverged: {error}")
        return {**record_divergence(folder, str(error), seed), "recorded_now": True}
    return None


def record_divergence(folder: Path, message: str, seed: int) -> dict:
    """Write ``RUN/diverged.json`` from a ``NonFiniteLoss`` message (its step and loss parsed out of it)."""
    found = re.search(r"loss is (\S+) at step (\d+)", message)
    record = {
        "message": message,
        "step": int(found[2]) if found else None,
        "loss": found[1] if found else None,
        "seed": seed,
        "recorded_at": time.time(),
    }
    atomic_write_json(Path(folder) / DIVERGED, record, indent=2)
    return record


def diverged_scores(table: TableSpec, preset: Preset, diverged: dict) -> dict:
    """The scores of a checkpoint the run never reached: the table's metrics NaN, the sample counts scoring
    would have compared (so the store row has the identity of a scored one), and why."""
    metrics = ("fvd",) if table.our_metric == "fvd" else ("fid", "sfid", "kid", "precision", "recall")
    return {
        **dict.fromkeys(metrics, math.nan),
        "n_generated": preset.n_samples,
        "n_reference": preset.ref_n,
        "diverged": diverged["message"],
        "diverged_step": diverged["step"],
        "diverged_loss": diverged["loss"],
    }


def diverged_runs(
    table: TableSpec,
    preset_name: str,
    variants: list[str] | None = None,
    seeds: int | Sequence[int] = 1,
    root: str | Path | None = None,
) -> list[dict]:
    """The chosen (variant, seed) runs whose results in the table's index say they diverged, one each
    (variant, label, seed, step, loss, message), in the table's order."""
    seed_list = set(range(seeds) if isinstance(seeds, int) else seeds)
    path = index_file(runs_root(root), table, table.presets[preset_name])
    results = json.loads(path.read_text()) if path.is_file() else []
    found = {}
    for r in results:
        if r.get("diverged") and int(r.get("seed", 0)) in seed_list:
            found.setdefault((r["variant"], int(r.get("seed", 0))), r)
    order = {v.key: i for i, v in enumerate(ordered(table, variants))}
    return [
        {
            "variant": variant,
            "label": r.get("label", variant),
            "seed": seed,
            "step": r.get("diverged_step"),
            "loss": r.get("diverged_loss"),
            "message": r["diverged"],
        }
        for (variant, seed), r in sorted(found.items(), key=lambda kv: (order.get(kv[0][0], -1), kv[0][1]))
        if variant in order
    ]


def _train_to(config: RunConfig, folder: Path, step: int, keep_steps: tuple[int, ...], name: str, log) -> None:
    """Train (or resume) the run in ``folder`` until its checkpoint at ``step`` exists, keeping those of
    ``keep_steps`` (the preset's scored checkpoints)."""
    from ablations.run_folder import checkpoint_step, is_finished
    from ablations.train import Trainer

    if checkpoint_step(folder) < step and not is_finished(folder):
        log(f"{name}training {config.model} to step {step} of {config.steps} in {folder}")
        Trainer(config, folder, resume=True, keep_steps=keep_steps).run(stop_after=step)


def _sample_and_score(
    table: TableSpec,
    config: RunConfig,
    folder: Path,
    preset: Preset,
    cfg: float,
    seed: int,
    device: str,
    step: int,
    name: str,
    data_root,
) -> dict:
    """Samples of the checkpoint at ``step`` into ``samples/<name>`` and their scores: FID and its companions
    for an image table, FVD for a video table."""
    if table.our_metric == "fvd":
        return _sample_and_score_video(folder, config, preset, cfg, seed, device, step, name, data_root)
    from ablations.evaluate import score
    from ablations.generate import generate

    images = generate(
        folder,
        preset.sampler,
        preset.sample_steps,
        preset.n_samples,
        cfg,
        seed=seed,
        device=device,
        step=step,
        out=folder / "samples" / name,
    )
    return score(images / "images", preset.data, model_setup(config).image_size, preset.ref_n, data_root, device)


def _sample_and_score_video(
    folder: Path, config: RunConfig, preset: Preset, cfg: float, seed: int, device: str, step: int, name: str, data_root
) -> dict:
    """Clips of a video run (``clips/*.npy``, GIF/MP4/PNG previews) and their FVD against the data set's clips."""
    from ablations.fvd import score_videos
    from ablations.generate_video import generate_video

    out = generate_video(
        folder,
        preset.sampler,
        preset.sample_steps,
        preset.n_samples,
        cfg,
        seed=seed,
        device=device,
        step=step,
        out=folder / "samples" / name,
    )
    setup = model_setup(config)
    return score_videos(
        out / "clips", preset.data, setup.image_size, preset.ref_n, data_root, device, interval=config.frame_interval
    )


def _result_header(
    table: TableSpec,
    variant: Variant,
    preset: Preset,
    config: RunConfig,
    folder: Path,
    label: str,
    step: int,
    seed: int,
    cfg: float,
    device: str,
) -> dict:
    """What a score file says about the row it scores, before the scores themselves."""
    return {
        "table": table.id,
        "variant": variant.key,
        "label": variant.label,
        "checkpoint": label,
        "step": step,
        "seed": seed,
        "preset": preset.name,
        "model": config.model,
        "config_hash": config_hash(config),
        "run": str(folder),
        "cfg": cfg,
        "sampler": preset.sampler,
        "sample_steps": preset.sample_steps,
        "params_m": _params_m(config),
        "res": preset.res,
        "device": device,
    }


def _params_m(config: RunConfig) -> float:
    import torch

    with torch.device("meta"):
        model = model_setup(config).build()
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 4)

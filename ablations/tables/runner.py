"""Running a table on this machine: for each variant and seed, train (or resume, or skip when finished),
sample, score, store (names and places: ``ablations.tables.layout``).

Several ``ablations run`` processes (``--jobs N``, or two tables that share runs) cooperate through a lock
file per run folder: a process claims a run before training it and passes over runs another process
holds, coming back to them at the end to read their scores. No run is trained twice at the same time.
An interrupted ``ablations run`` picks up where it stopped: finished checkpoints and score files are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from ablations.data import open_dataset
from ablations.experiment import RunConfig, config_hash, model_setup
from ablations.tables.geneval_rows import geneval_inputs, score_row, scores_geneval
from ablations.tables.layout import (
    as_row,
    checkpoint_steps,
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
) -> list[dict]:
    """Train and score every chosen variant at a preset with training seeds ``0 .. seeds-1`` (or the seeds
    listed); returns one
    result per (variant, seed, checkpoint). Runs another process is working on are done last, by waiting."""
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
    context["recorder"] = store.recorder() if store is not None else None  # a store run begins with its first row
    results, deferred = [], []
    for seed in seed_list:
        teacher_folder = None
        for variant in ordered(table, variants):
            # a teacher is waited for (its students need it); any other run held elsewhere comes last
            done = _run_variant(variant, seed, teacher_folder, wait=variant.teacher, **context)
            if done is None:
                deferred.append((variant, seed, teacher_folder))
                continue
            results += done[0]
            if variant.teacher:
                teacher_folder = str(done[1])
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
        for label, step in steps.items():
            path = score_file(folder, step, preset, cfg)
            new: set[str] = set()  # the metrics scored now (a resumed row records only those in the store)
            if path.is_file():
                log(f"{name} @{label}: scored already ({path.name})")
                result = as_row(json.loads(path.read_text()), table, variant, seed, preset)
            else:
                _train_to(config, folder, step, tuple(steps.values()), f"{name}: ", log)
                log(
                    f"{name} @{label}: sampling {preset.n_samples} {'clips' if table.our_metric == 'fvd' else 'images'}"
                    ", scoring"
                )
                scores = _sample_and_score(table, config, folder, preset, cfg, seed, device, step, path.stem, data_root)
                result = dict(
                    _result_header(table, variant, preset, config, folder, label, step, seed, cfg, device), **scores
                )
                atomic_write_json(path, result, indent=2)  # whole or not at all, as every score file
                new |= {m.metric for m in measurements(result)}
            if geneval is not None and scores_geneval(config):
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

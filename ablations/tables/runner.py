"""Running a table: for each variant, train (or resume, or skip when finished), sample, score, store.

Runs live in ``<root>/runs/<model>-<config hash>``: two rows with the same training configuration (the
CFG rows of Mo & Tian's Table 7, Teng's full model in Tables 4 and 6) share one run, and a finished run is
never retrained. Every variant can be trained with several seeds (``seeds``): each seed is its own run
(the seed is part of the configuration) and the report gives the mean and spread over seeds. Scores are
files in the run folder named by (step, sampler, steps, CFG, sample and reference counts), so an
interrupted ``ablations run`` picks up where it stopped.

Several ``ablations run`` processes (``--jobs N``, or two tables that share runs) cooperate through a lock
file per run folder: a process claims a run before training it and passes over runs another process
holds, coming back to them at the end to read their scores. No run is trained twice at the same time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from ablations.data import open_dataset
from ablations.experiment import DistillConfig, RunConfig, config_hash, model_setup
from ablations.tables.spec import Preset, TableSpec, Variant
from results.locks import claim
from zoo import settings


def runs_root(path: str | Path | None = None) -> Path:
    """``path``, else ``$MAMBABENCH_RUNS``, else ``./mambabench-runs``."""
    return settings.runs_dir(path)


def variant_config(
    table: TableSpec,
    variant: Variant,
    preset: Preset,
    data_root: str | None = None,
    vae: str | None = None,
    teacher: str | None = None,
    seed: int = 0,
) -> RunConfig:
    """The training configuration of one row at one preset and training seed."""
    video = dict(frames=preset.frames, frame_interval=preset.frame_interval, **variant.run_overrides)
    overrides = {
        **preset.model_overrides.get(variant.model, {}),
        **variant.overrides,
        **variant.preset_overrides.get(preset.name, {}),
    }
    steps = preset.teacher_steps if variant.teacher and preset.teacher_steps else preset.steps
    distill = None
    if variant.distill is not None:
        if teacher is None:
            raise ValueError(f"{table.id}/{variant.key} distils from the table's teacher, which has not been trained")
        spec = dict(variant.distill)
        spec["teacher_forcing_steps"] = round(spec.pop("teacher_forcing", 0.0) * steps)
        distill = DistillConfig(teacher=teacher, **spec)
    return RunConfig(
        model=variant.model,
        overrides=overrides,
        data=preset.data,
        data_root=data_root,
        res=preset.res,
        space=preset.space,
        vae=vae,
        batch=preset.batch,
        steps=steps,
        lr=preset.lr,
        ema=preset.ema,
        ema_warmup=preset.ema_warmup,
        adam_betas=preset.adam_betas,
        weight_decay=preset.weight_decay,
        schedule=preset.schedule,
        cfg_dropout=preset.cfg_dropout,
        ckpt_every=max(1, steps // 10),
        seed=seed,
        distill=distill,
        **video,
    )


def run_folder(root: Path, config: RunConfig) -> Path:
    return root / "runs" / f"{re.sub(r'[^a-z0-9.]+', '-', config.model)}-{config_hash(config)}"


def checkpoint_steps(preset: Preset, steps: int) -> dict[str, int]:
    return {label: max(1, round(fraction * steps)) for label, fraction in preset.checkpoints.items()}


def score_file(folder: Path, step: int, preset: Preset, cfg: float) -> Path:
    name = f"step{step}-{preset.sampler}{preset.sample_steps}-cfg{cfg:g}-n{preset.n_samples}-ref{preset.ref_n}.json"
    return folder / "scores" / name


def _ordered(table: TableSpec, keys: list[str] | None) -> list[Variant]:
    chosen = [table.variant(k) for k in keys] if keys else list(table.variants)
    if any(v.distill for v in chosen) and table.teacher is not None and table.teacher not in chosen:
        chosen.insert(0, table.teacher)  # the students need it
    return sorted(chosen, key=lambda v: not v.teacher)


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
        raise KeyError(f"{table.id} has no preset {preset_name!r}; presets: {', '.join(table.presets)}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    preset = table.presets[preset_name]
    if preset.needs_vae and vae is None:
        raise ValueError(
            f"{table.id} --preset {preset_name} trains on VAE latents: pass --vae DIR (a local "
            "diffusers AutoencoderKL folder, e.g. stabilityai/sd-vae-ft-ema)"
        )
    open_dataset(preset.data, data_root, size=preset.res)  # fails early, naming what is missing and how to get it
    if table.our_metric == "fvd":
        from ablations.fvd import find_i3d_weights

        find_i3d_weights()  # before any training: FVD's I3D is user-supplied (the error says where to get it)
    root = runs_root(root)
    context = dict(table=table, preset=preset, root=root, data_root=data_root, vae=vae, device=device, log=log)
    context["recorder"] = store.recorder() if store is not None else None  # a store run begins with its first row
    results, deferred = [], []
    for seed in seed_list:
        teacher_folder = None
        for variant in _ordered(table, variants):
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


def _run_variant(variant: Variant, seed: int, teacher_folder: str | None, wait: bool, *, table: TableSpec,
                 preset: Preset, root: Path, data_root, vae, device: str, recorder, log
                 ) -> tuple[list[dict], Path] | None:  # fmt: skip
    """Train (or resume), sample and score one run at every checkpoint of the preset; None when another
    process holds the run and ``wait`` is False."""
    config = variant_config(table, variant, preset, data_root, vae, teacher_folder, seed)
    folder = run_folder(root, config)
    name = f"{table.id}/{variant.key}" + (f" seed {seed}" if seed else "")
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
            if path.is_file():
                log(f"{name} @{label}: scored already ({path.name})")
                result = _as_row(json.loads(path.read_text()), table, variant, seed, preset)
            else:
                _train_to(config, folder, step, tuple(steps.values()), f"{name}: ", log)
                log(f"{name} @{label}: sampling {preset.n_samples} {'clips' if table.our_metric == 'fvd' else 'images'}"
                    ", scoring")  # fmt: skip
                scores = _sample_and_score(table, config, folder, preset, cfg, seed, device, step, path.stem, data_root)
                result = dict(_result_header(table, variant, preset, config, folder, label, step, seed, cfg, device),
                              **scores)  # fmt: skip
                _write_atomic(path, result)
                if recorder is not None:
                    recorder.add(measurements(result))
            results.append(result)
            _write_index(root, table, preset, results)
    return results, folder


def _train_to(config: RunConfig, folder: Path, step: int, keep_steps: tuple[int, ...], name: str, log) -> None:
    """Train (or resume) the run in ``folder`` until its checkpoint at ``step`` exists, keeping those of
    ``keep_steps`` (the preset's scored checkpoints)."""
    from ablations.train import Trainer, checkpoint_step, is_finished

    if checkpoint_step(folder) < step and not is_finished(folder):
        log(f"{name}training {config.model} to step {step} of {config.steps} in {folder}")
        Trainer(config, folder, resume=True, keep_steps=keep_steps).run(stop_after=step)


def _sample_and_score(table: TableSpec, config: RunConfig, folder: Path, preset: Preset, cfg: float, seed: int,
                      device: str, step: int, name: str, data_root) -> dict:  # fmt: skip
    """Samples of the checkpoint at ``step`` into ``samples/<name>`` and their scores: FID and its companions
    for an image table, FVD for a video table."""
    if table.our_metric == "fvd":
        return _sample_and_score_video(folder, config, preset, cfg, seed, device, step, name, data_root)
    from ablations.evaluate import score
    from ablations.generate import generate

    images = generate(folder, preset.sampler, preset.sample_steps, preset.n_samples, cfg, seed=seed, device=device,
                      step=step, out=folder / "samples" / name)  # fmt: skip
    return score(images / "images", preset.data, model_setup(config).image_size, preset.ref_n, data_root, device)


def _result_header(table: TableSpec, variant: Variant, preset: Preset, config: RunConfig, folder: Path, label: str,
                   step: int, seed: int, cfg: float, device: str) -> dict:  # fmt: skip
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


def _write_atomic(path: Path, value: dict | list) -> None:
    """A JSON file (a score file, a table's index) appears whole or not at all: a kill mid-write leaves only a
    ``.part`` file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    partial.replace(path)


def not_runnable(config: RunConfig) -> str | None:
    """Why this row's run cannot be trained with the models as they are (e.g. video-image joint training on a
    model that cannot keep image frames out of its temporal blocks), or None."""
    if config.image_joint:
        import zoo
        from ablations.video_train import image_joint_problem

        return image_joint_problem(zoo.get_entry(config.model).builder)
    return None


def _sample_and_score_video(folder: Path, config: RunConfig, preset: Preset, cfg: float, seed: int, device: str,
                            step: int, name: str, data_root) -> dict:  # fmt: skip
    """Clips of a video run (``clips/*.npy``, GIF/MP4/PNG previews) and their FVD against the data set's clips."""
    from ablations.fvd import score_videos
    from ablations.generate_video import generate_video

    out = generate_video(folder, preset.sampler, preset.sample_steps, preset.n_samples, cfg, seed=seed, device=device,
                         step=step, out=folder / "samples" / name)  # fmt: skip
    setup = model_setup(config)
    return score_videos(out / "clips", preset.data, setup.image_size, preset.ref_n, data_root, device,
                        interval=config.frame_interval)  # fmt: skip


def _as_row(result: dict, table: TableSpec, variant: Variant, seed: int, preset: Preset) -> dict:
    """A score file as a row of this table and preset: a run shared by two tables (Teng's full model in Tables
    4 and 6) was scored under the other table's variant name (and a shared run may serve two presets)."""
    return {**result, "table": table.id, "variant": variant.key, "label": variant.label, "seed": seed,
            "preset": preset.name}  # fmt: skip


def index_file(root: Path, table: TableSpec, preset: Preset) -> Path:
    """Where a table's results at a preset are listed (what ``ablations report`` reads)."""
    return root / "tables" / f"{table.id}-{preset.name}" / "results.json"


def result_key(result: dict) -> tuple[str, str, int]:
    """What identifies a result within a table: (variant, checkpoint, training seed)."""
    return result["variant"], result["checkpoint"], int(result.get("seed", 0))


def _write_index(root: Path, table: TableSpec, preset: Preset, results: list[dict]) -> None:
    path = index_file(root, table, preset)
    with claim(path.with_name(".lock")):  # several processes may add rows to one table at once
        known = json.loads(path.read_text()) if path.is_file() else []
        merged = {result_key(r): r for r in [*known, *results]}
        _write_atomic(path, list(merged.values()))


def _params_m(config: RunConfig) -> float:
    import torch

    with torch.device("meta"):
        model = model_setup(config).build()
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 4)


_UNITS = {"fid": "FID", "sfid": "sFID", "kid": "KID", "precision": "fraction", "recall": "fraction", "is": "IS",
          "fvd": "FVD"}  # fmt: skip


def row_identity(result: dict) -> str:
    """What tells this FID row from every other of the same model and resolution in the store and in a
    baseline: table, variant, checkpoint, seed, preset, sampling, sample counts and the run's config hash."""
    return (
        f"{result['table']}/{result['variant']}@{result['checkpoint']} seed={result.get('seed', 0)} "
        f"preset={result['preset']} {result['sampler']}{result['sample_steps']} cfg={result['cfg']:g} "
        f"n={result['n_generated']}/{result['n_reference']} config={result['config_hash']}"
    )


def measurements(result: dict) -> list:
    """The store rows of one scored result: one per metric it has."""
    from results.store import Measurement

    context = {
        k: result[k]
        for k in (
            "table",
            "variant",
            "checkpoint",
            "step",
            "seed",
            "config_hash",
            "preset",
            "cfg",
            "sampler",
            "sample_steps",
            "n_generated",
            "n_reference",
            "params_m",
            "run",
        )
    }
    return [
        Measurement(
            model=result["model"],
            variant=row_identity(result),
            metric=metric,
            value=result[metric],
            unit=unit,
            resolution=str(result["res"]),
            batch=result["n_generated"],
            device=result["device"],
            source="ablations",
            config=context,
            detail=f"{result['n_generated']} samples vs {result['n_reference']} reference images",
        )
        for metric, unit in _UNITS.items()
        if result.get(metric) is not None
    ]


# ---------------------------------------------------------------- on a cluster: one job per (variant, seed)


def _teacher_folder(table: TableSpec, preset: Preset, root: Path, data_root, vae, seed: int) -> str | None:
    """Where the table's teacher run of this seed lives (known before it is trained: it is named by its config)."""
    if table.teacher is None:
        return None
    return str(run_folder(root, variant_config(table, table.teacher, preset, data_root, vae, None, seed)))


def variant_jobs(table: TableSpec, preset_name: str, variants: list[str] | None, seeds: Sequence[int], root: Path,
                 data_root=None, vae=None) -> tuple[dict[str, tuple[Variant, int, bool]], dict[str, str]]:  # fmt: skip
    """(job key -> (variant, seed, scored already), key -> the teacher key it waits for)."""
    from results.cluster import job_key

    preset = table.presets[preset_name]
    jobs, after = {}, {}
    for seed in seeds:
        teacher_key = None
        for variant in _ordered(table, variants):
            key = job_key(table.id, preset.name, variant.key, f"seed{seed}")
            teacher = None if variant.teacher else _teacher_folder(table, preset, root, data_root, vae, seed)
            config = variant_config(table, variant, preset, data_root, vae, teacher, seed)
            if not_runnable(config):  # no job: the report says why the row cannot run
                continue
            cfg = variant.cfg if variant.cfg is not None else preset.cfg
            scored = all(score_file(run_folder(root, config), step, preset, cfg).is_file()
                         for step in checkpoint_steps(preset, config.steps).values())  # fmt: skip
            jobs[key] = (variant, seed, scored)
            if variant.teacher:
                teacher_key = key
            elif teacher_key is not None:
                after[key] = teacher_key
    return jobs, after


def table_variant_job(table_id: str, preset_name: str, variant_key: str, seed: int, data_root, vae, root: str,
                      device: str, threads: int, procs_per_node: int, job_folder: Path) -> None:  # fmt: skip
    """One (variant, seed) of a table as a cluster job: training (under torchrun when the job has several
    processes: NCCL on GPUs, gloo on CPUs, one launcher per node), then sampling and scoring in this process,
    rows in the job's own store."""
    import torch

    from ablations.tables import get_table
    from results.store import ResultsStore

    torch.set_num_threads(threads)
    table = get_table(table_id)
    preset = table.presets[preset_name]
    variant = table.variant(variant_key)
    node_rank, nodes, master = _node()
    if procs_per_node * nodes > 1:
        teacher = None if variant.teacher else _teacher_folder(table, preset, Path(root), data_root, vae, seed)
        config = variant_config(table, variant, preset, data_root, vae, teacher, seed)
        _train_under_torchrun(config, run_folder(Path(root), config), checkpoint_steps(preset, config.steps),
                              procs_per_node, nodes, node_rank, master, job_folder)  # fmt: skip
        if node_rank > 0:
            return
    store = ResultsStore(job_folder / "results.sqlite")
    run_table(table, preset_name, [variant_key], data_root, vae, root, device, store, seeds=[seed])


def _node() -> tuple[int, int, str]:
    """(node rank, nodes, first host) of a submitit job (one task per node); (0, 1, localhost) elsewhere."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        return env.global_rank, env.num_nodes, env.hostnames[0]
    except (ImportError, RuntimeError):
        return 0, 1, "127.0.0.1"


def _train_under_torchrun(config: RunConfig, folder: Path, steps: dict[str, int], procs_per_node: int, nodes: int,
                          node_rank: int, master: str, job_folder: Path) -> None:  # fmt: skip
    import subprocess
    import sys

    spec = job_folder / "train-config.json"
    spec.write_text(json.dumps(config.to_dict()) + "\n")
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs_per_node}",
               f"--nnodes={nodes}", f"--node_rank={node_rank}", f"--master_addr={master}", "--master_port=29517",
               "-m", "ablations.tables.distributed", str(spec), str(folder), *map(str, steps.values())]  # fmt: skip
    subprocess.run(command, check=True)


def run_table_on_cluster(table: TableSpec, preset_name: str, variants: list[str] | None, seeds: Sequence[int],
                         options, jobs_dir: Path, data_root=None, vae=None, root: str | Path | None = None,
                         device: str = "cpu", threads: int = 1, store=None,
                         log: Callable[[str], None] = print) -> dict[str, str]:  # fmt: skip
    """Every (variant, seed) not yet scored as a job (students after their teacher's job), waits, merges the
    jobs' rows into ``store``; returns job key -> state (finished variants: "done")."""
    from results.cluster import merge_stores, run_jobs

    if preset_name not in table.presets:
        raise KeyError(f"{table.id} has no preset {preset_name!r}; presets: {', '.join(table.presets)}")
    root = runs_root(root).resolve()
    jobs, after = variant_jobs(table, preset_name, variants, seeds, root, data_root, vae)
    cases = {
        key: (table_variant_job, (table.id, preset_name, variant.key, seed, data_root, vae, str(root), device, threads,
                                  options.processes // options.nodes))
        for key, (variant, seed, scored) in jobs.items()
        if not scored
    }  # fmt: skip
    states = run_jobs(cases, jobs_dir, options, f"mambabench-{table.id}", after, log) if cases else {}
    if store is not None:
        runs, rows = merge_stores(jobs_dir, store)
        log(f"merged {rows} row(s) of {runs} job(s) into {store.path}")
    return {key: states.get(key, "done") for key in jobs}

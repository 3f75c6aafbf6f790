"""Where a table's runs and results live, and what they are called.

Runs live in ``<root>/runs/<model>-<config hash>``: two rows with the same training configuration (the
CFG rows of Mo & Tian's Table 7, Teng's full model in Tables 4 and 6) share one run, and a finished run is
never retrained. Each training seed is its own run (the seed is part of the configuration). Scores are
files in the run folder named by (step, sampler, steps, CFG, sample and reference counts; a GenEval score
file by step, sampling, images per prompt, metadata and scorer: ``geneval_file``); a table's
results at a preset are listed in its index, ``<root>/tables/<table>-<preset>/results.json``, which
``ablations report`` reads; each scored result becomes store rows (``measurements``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ablations.experiment import DistillConfig, RunConfig, config_hash
from ablations.geneval.metadata import TASKS
from ablations.tables.needs import text_encoder_of
from ablations.tables.spec import Preset, TableSpec, Variant
from mambabench import settings
from mambabench.errors import UserError
from mambabench.files import atomic_write_json, claim


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
            raise UserError(f"{table.id}/{variant.key} distils from the table's teacher, which has not been trained")
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
        text_encoder=text_encoder_of(preset),  # caption presets only: the others keep their hashes
        **video,
    )


def run_folder(root: Path, config: RunConfig) -> Path:
    return root / "runs" / f"{re.sub(r'[^a-z0-9.]+', '-', config.model)}-{config_hash(config)}"


def checkpoint_steps(preset: Preset, steps: int) -> dict[str, int]:
    return {label: max(1, round(fraction * steps)) for label, fraction in preset.checkpoints.items()}


def score_file(folder: Path, step: int, preset: Preset, cfg: float) -> Path:
    name = f"step{step}-{preset.sampler}{preset.sample_steps}-cfg{cfg:g}-n{preset.n_samples}-ref{preset.ref_n}.json"
    return folder / "scores" / name


def geneval_file(folder: Path, step: int, preset: Preset, cfg: float, tag: str) -> Path:
    """The GenEval score file of a checkpoint beside its FID one (``ablations.tables.geneval_rows``): ``tag`` is
    the metadata's stem and the digest of the metadata and scorer."""
    name = f"step{step}-{preset.sampler}{preset.sample_steps}-cfg{cfg:g}-geneval{preset.geneval_per_prompt}x-{tag}.json"
    return folder / "scores" / name


def ordered(table: TableSpec, keys: list[str] | None) -> list[Variant]:
    """The variants to run (``keys``, or all), the teacher first when a chosen student distils from it."""
    chosen = [table.variant(k) for k in keys] if keys else list(table.variants)
    if any(v.distill for v in chosen) and table.teacher is not None and table.teacher not in chosen:
        chosen.insert(0, table.teacher)  # the students need it
    return sorted(chosen, key=lambda v: not v.teacher)


def not_runnable(config: RunConfig) -> str | None:
    """Why this row's run cannot be trained with the models as they are (e.g. video-image joint training on a
    model that cannot keep image frames out of its temporal blocks), or None."""
    if config.image_joint:
        import zoo
        from ablations.video_train import image_joint_problem

        return image_joint_problem(zoo.get_entry(config.model).builder)
    return None


def as_row(result: dict, table: TableSpec, variant: Variant, seed: int, preset: Preset) -> dict:
    """A score file as a row of this table and preset: a run shared by two tables (Teng's full model in Tables
    4 and 6) was scored under the other table's variant name (and a shared run may serve two presets)."""
    return {
        **result,
        "table": table.id,
        "variant": variant.key,
        "label": variant.label,
        "seed": seed,
        "preset": preset.name,
    }


def index_file(root: Path, table: TableSpec, preset: Preset) -> Path:
    """Where a table's results at a preset are listed (what ``ablations report`` reads)."""
    return root / "tables" / f"{table.id}-{preset.name}" / "results.json"


def result_key(result: dict) -> tuple[str, str, int]:
    """What identifies a result within a table: (variant, checkpoint, training seed)."""
    return result["variant"], result["checkpoint"], int(result.get("seed", 0))


def write_index(root: Path, table: TableSpec, preset: Preset, results: list[dict]) -> None:
    """Merge ``results`` into the table's index (a newer result of the same key replaces the older)."""
    path = index_file(root, table, preset)
    with claim(path.with_name(".lock")):  # several processes may add rows to one table at once
        known = json.loads(path.read_text()) if path.is_file() else []
        merged = {result_key(r): r for r in [*known, *results]}
        atomic_write_json(path, list(merged.values()), indent=2)


GENEVAL_METRICS = ("geneval_overall", *(f"geneval_{task}" for task in TASKS))  # fractions: higher is better
_UNITS = {
    "fid": "FID",
    "sfid": "sFID",
    "kid": "KID",
    "precision": "fraction",
    "recall": "fraction",
    "is": "IS",
    "fvd": "FVD",
    **dict.fromkeys(GENEVAL_METRICS, "fraction"),
}


def row_identity(result: dict) -> str:
    """What tells this FID row from every other of the same model and resolution in the store and in a
    baseline: table, variant, checkpoint, seed, preset, sampling, sample counts and the run's config hash."""
    return (
        f"{result['table']}/{result['variant']}@{result['checkpoint']} seed={result.get('seed', 0)} "
        f"preset={result['preset']} {result['sampler']}{result['sample_steps']} cfg={result['cfg']:g} "
        f"n={result['n_generated']}/{result['n_reference']} config={result['config_hash']}"
    )


def measurements(result: dict) -> list:
    """The store rows of one scored result: one per metric it has; a diverged run's (``runner``: metrics NaN, a
    ``diverged`` message) with no value, status "diverged" and the message as detail, so a gate says "failed"."""
    from results.store import Measurement

    diverged = result.get("diverged")

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
    if result.get("geneval_overall") is not None:
        context |= {k: result[k] for k in ("geneval_detector", "geneval_clip", "geneval_images", "geneval_metadata")}
    return [
        Measurement(
            model=result["model"],
            variant=row_identity(result),
            metric=metric,
            value=None if diverged else result[metric],
            unit=unit,
            resolution=str(result["res"]),
            batch=result["geneval_images"] if metric in GENEVAL_METRICS else result["n_generated"],
            device=result["device"],
            source="ablations",
            config=context,
            status="diverged" if diverged else "ok",
            detail=f"diverged: {diverged}" if diverged else _detail(result, metric),
        )
        for metric, unit in _UNITS.items()
        if result.get(metric) is not None
    ]


def _detail(result: dict, metric: str) -> str:
    if metric in GENEVAL_METRICS:
        return (
            f"GenEval of {result['geneval_images']} images of {result['geneval_prompts']} prompts; detector "
            f"{result['geneval_detector']}; CLIP {result['geneval_clip']}"
        )
    return f"{result['n_generated']} samples vs {result['n_reference']} reference images"

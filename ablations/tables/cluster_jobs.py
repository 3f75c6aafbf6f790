"""Running a table on a cluster: one job per (variant, seed), students after their teacher's job, each
job training (under torchrun when it has several processes) and scoring with ``run_table``.

A run that diverged (``runner``: ``RUN/diverged.json``) is done, like a scored one: no job is submitted for it
unless ``retry_diverged`` (``--retry-diverged``) asks to train it again. A job whose training diverges, in one
process or under torchrun (``ablations.tables.distributed``), records it and ends as done."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from ablations.experiment import RunConfig
from ablations.tables.geneval_rows import geneval_inputs, scores_geneval
from ablations.tables.layout import (
    checkpoint_steps,
    geneval_file,
    not_runnable,
    ordered,
    run_folder,
    runs_root,
    score_file,
    variant_config,
)
from ablations.tables.needs import teacher_path
from ablations.tables.runner import divergence, earlier_divergence, run_table
from ablations.tables.spec import Preset, TableSpec, Variant
from mambabench.errors import UserError


def _teacher_folder(table: TableSpec, preset: Preset, root: Path, data_root, vae, seed: int) -> str | None:
    """Where the table's teacher run of this seed lives (known before it is trained: it is named by its config)."""
    if table.teacher is None:
        return None
    if preset.teacher_file:  # a released checkpoint, not a run of ours
        return teacher_path(preset)
    return str(run_folder(root, variant_config(table, table.teacher, preset, data_root, vae, None, seed)))


def variant_jobs(
    table: TableSpec,
    preset_name: str,
    variants: list[str] | None,
    seeds: Sequence[int],
    root: Path,
    data_root=None,
    vae=None,
    retry_before: float | None = None,
) -> tuple[dict[str, tuple[Variant, int, bool]], dict[str, str]]:
    """(job key -> (variant, seed, scored already, or diverged and not to be retried), key -> the teacher key it
    waits for). ``retry_before``: divergences recorded before this time do not count as done."""
    from mambabench.cluster import job_key

    preset = table.presets[preset_name]
    geneval = geneval_inputs(table)  # rows scored with GenEval too are done when both score files are there
    tag = geneval.tag if geneval is not None else None
    jobs, after = {}, {}
    for seed in seeds:
        teacher_key = None
        for variant in ordered(table, variants):
            key = job_key(table.id, preset.name, variant.key, f"seed{seed}")
            teacher = None if variant.teacher else _teacher_folder(table, preset, root, data_root, vae, seed)
            config = variant_config(table, variant, preset, data_root, vae, teacher, seed)
            if not_runnable(config):  # no job: the report says why the row cannot run
                continue
            cfg = variant.cfg if variant.cfg is not None else preset.cfg
            folder = run_folder(root, config)
            with_geneval = tag is not None and scores_geneval(config)
            diverged = divergence(folder)
            if diverged is not None and retry_before is not None and diverged.get("recorded_at", 0.0) < retry_before:
                diverged = None  # to be trained again
            scored = all(
                (
                    score_file(folder, step, preset, cfg).is_file()
                    and (not with_geneval or geneval_file(folder, step, preset, cfg, tag).is_file())
                )
                or (diverged is not None and (diverged["step"] is None or step > diverged["step"]))
                for step in checkpoint_steps(preset, config.steps).values()
            )
            jobs[key] = (variant, seed, scored)
            if variant.teacher:
                teacher_key = key
            elif teacher_key is not None:
                after[key] = teacher_key
    return jobs, after


def table_variant_job(
    table_id: str,
    preset_name: str,
    variant_key: str,
    seed: int,
    data_root,
    vae,
    root: str,
    device: str,
    threads: int,
    procs_per_node: int,
    retry_before: float | None,
    job_folder: Path,
) -> None:
    """One (variant, seed) of a table as a cluster job: training (under torchrun when the job has several
    processes: NCCL on GPUs, gloo on CPUs, one launcher per node), then sampling and scoring in this process,
    rows in the job's own store. ``retry_before``: train again a divergence recorded before this time."""
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
        folder = run_folder(Path(root), config)
        said = print if node_rank == 0 else lambda line: None
        if earlier_divergence(folder, retry_before, f"{table_id}/{variant_key} seed {seed}: ", said) is None:
            _train_under_torchrun(
                config,
                folder,
                checkpoint_steps(preset, config.steps),
                procs_per_node,
                nodes,
                node_rank,
                master,
                job_folder,
            )
        retry_before = None  # retried above, if at all: run_table reads what this training left
        if node_rank > 0:
            return
    store = ResultsStore(job_folder / "results.sqlite")
    run_table(
        table, preset_name, [variant_key], data_root, vae, root, device, store, seeds=[seed],
        retry_diverged=retry_before or False,
    )  # fmt: skip


def _node() -> tuple[int, int, str]:
    """(node rank, nodes, first host) of a submitit job (one task per node); (0, 1, localhost) elsewhere."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        return env.global_rank, env.num_nodes, env.hostnames[0]
    except (ImportError, RuntimeError):
        return 0, 1, "127.0.0.1"


def _train_under_torchrun(
    config: RunConfig,
    folder: Path,
    steps: dict[str, int],
    procs_per_node: int,
    nodes: int,
    node_rank: int,
    master: str,
    job_folder: Path,
) -> None:
    import subprocess
    import sys

    spec = job_folder / "train-config.json"
    spec.write_text(json.dumps(config.to_dict()) + "\n")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={procs_per_node}",
        f"--nnodes={nodes}",
        f"--node_rank={node_rank}",
        f"--master_addr={master}",
        "--master_port=29517",
        "-m",
        "ablations.tables.distributed",
        str(spec),
        str(folder),
        *map(str, steps.values()),
    ]
    subprocess.run(command, check=True)


def run_table_on_cluster(
    table: TableSpec,
    preset_name: str,
    variants: list[str] | None,
    seeds: Sequence[int],
    options,
    jobs_dir: Path,
    data_root=None,
    vae=None,
    root: str | Path | None = None,
    device: str = "cpu",
    threads: int = 1,
    store=None,
    log: Callable[[str], None] = print,
    retry_diverged: float | None = None,
) -> dict[str, str]:
    """Every (variant, seed) not yet scored (nor diverged, unless ``retry_diverged``: divergences recorded before
    that time are trained again) as a job (students after their teacher's job), waits, merges the jobs' rows into
    ``store``; returns job key -> state (finished variants: "done")."""
    from mambabench.cluster import merge_stores, run_jobs

    if preset_name not in table.presets:
        raise UserError(f"{table.id} has no preset {preset_name!r}; presets: {', '.join(table.presets)}")
    root = runs_root(root).resolve()
    jobs, after = variant_jobs(table, preset_name, variants, seeds, root, data_root, vae, retry_diverged)
    cases = {
        key: (
            table_variant_job,
            (
                table.id,
                preset_name,
                variant.key,
                seed,
                data_root,
                vae,
                str(root),
                device,
                threads,
                options.processes // options.nodes,
                retry_diverged,  # then the job's own folder, added by run_jobs
            ),
        )
        for key, (variant, seed, scored) in jobs.items()
        if not scored
    }
    states = run_jobs(cases, jobs_dir, options, f"mambabench-{table.id}", after, log) if cases else {}
    if store is not None:
        runs, rows = merge_stores(jobs_dir, store)
        log(f"merged {rows} row(s) of {runs} job(s) into {store.path}")
    return {key: states.get(key, "done") for key in jobs}

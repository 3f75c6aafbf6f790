"""Running the cases of a sweep and the variants of a table as cluster jobs (submitit: Slurm, or its local
executor on one machine), and bringing their results home.

Each job works in its own folder under a jobs folder and writes its rows there (its own SQLite store, its
own sweep CSV): no two nodes write one SQLite file over a network file system. The driver (the command the
user ran) submits the jobs, waits, and merges every finished job's rows into the user's store and CSV
(``ResultsStore.import_from``, idempotent: a run is known by its origin id). ``jobs.json`` in the jobs folder
remembers which job runs which case, so running the command again waits for jobs still in the queue,
resubmits failed ones and skips what is finished; ``--status`` prints the state of every job.

Options come from the command line or a TOML file (``--cluster-config``) with the same names:
``partition``, ``account``, ``time`` (minutes), ``nodes``, ``gpus_per_node``, ``cpus_per_task``, ``mem_gb``,
``procs_per_node`` (processes per node for a multi-process training job: one per GPU, or gloo processes on
a CPU), ``parallel`` (the local executor's jobs at once) and ``setup`` (shell lines run before each job, e.g.
``module load cuda``).
"""

from __future__ import annotations

import json
import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mambabench.files import claim

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class ClusterOptions:
    executor: str = "local"
    partition: str | None = None
    account: str | None = None
    time: int = 24 * 60  # minutes per job
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    procs_per_node: int | None = None  # default: gpus_per_node (1 without GPUs)
    parallel: int = 1  # local executor: jobs at once
    setup: list[str] = field(default_factory=list)

    @property
    def processes(self) -> int:
        """Training processes per job (world size): procs_per_node (or one per GPU) x nodes."""
        return max(1, self.procs_per_node or self.gpus_per_node or 1) * self.nodes


def cluster_options(config: Path | None = None, **given: Any) -> ClusterOptions:
    """Options from a TOML file, then the command line's (those not None) on top; a bad value is a
    ValueError naming it."""
    values: dict[str, Any] = {}
    if config is not None:
        if not Path(config).is_file():
            raise FileNotFoundError(f"--cluster-config {config}: no such file")
        try:
            values = tomllib.loads(Path(config).read_text())
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"--cluster-config {config}: not valid TOML ({error})") from None
        unknown = sorted(set(values) - {f.name for f in fields(ClusterOptions)})
        if unknown:
            raise ValueError(f"--cluster-config {config}: unknown keys {unknown}")
    values.update({k: v for k, v in given.items() if v is not None})
    options = ClusterOptions(**values)
    if options.executor not in EXECUTORS:
        raise ValueError(f"--executor must be one of {', '.join(EXECUTORS)}, got {options.executor!r}")
    for name in ("time", "nodes"):
        if getattr(options, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if options.gpus_per_node < 0 or (options.procs_per_node is not None and options.procs_per_node < 1):
        raise ValueError("--gpus-per-node must be >= 0 and --procs-per-node >= 1")
    if options.parallel < 1:
        raise ValueError("--parallel must be at least 1")
    return options


def make_executor(options: ClusterOptions, folder: Path, name: str):
    """A submitit executor writing its logs under ``folder``."""
    try:
        import submitit
    except ImportError:
        raise ValueError("--executor needs submitit: pip install -e '.[cluster]'") from None
    executor = submitit.AutoExecutor(folder=folder / "submitit", cluster=options.executor)
    params: dict[str, Any] = dict(timeout_min=options.time, nodes=options.nodes, tasks_per_node=1, name=name)
    if options.gpus_per_node:
        params["gpus_per_node"] = options.gpus_per_node
    if options.cpus_per_task:
        params["cpus_per_task"] = options.cpus_per_task
    if options.mem_gb:
        params["mem_gb"] = options.mem_gb
    if options.executor == "slurm":
        params.update(slurm_partition=options.partition, slurm_account=options.account, slurm_setup=options.setup)
        params = {k: v for k, v in params.items() if v not in (None, [])}
    executor.update_parameters(**params)
    return executor


# ---------------------------------------------------------------- the book of jobs


class JobBook:
    """``jobs.json``: case key -> {"job_id", "executor", "folder", "submitted"}; the job's own folder holds
    ``done.json`` when its function finished and ``results.sqlite`` with its rows."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / "jobs.json"

    def _read(self) -> dict[str, dict]:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def record(self, key: str, job_id: str, executor: str, job_folder: Path) -> None:
        with claim(self.folder / ".jobs.lock"):
            book = self._read()
            book[key] = {"job_id": job_id, "executor": executor, "folder": str(job_folder), "submitted": time.time()}
            partial = self.path.with_name("jobs.json.part")
            partial.write_text(json.dumps(book, indent=2) + "\n")
            partial.replace(self.path)

    def entries(self) -> dict[str, dict]:
        return self._read()

    def state(self, key: str) -> str:
        """done | failed | running | pending | not submitted."""
        entry = self._read().get(key)
        if entry is None:
            return "not submitted"
        folder = Path(entry["folder"])
        if (folder / "done.json").is_file():
            return "done"
        if (folder / "error.txt").is_file():
            return "failed"
        if (folder.parent / "submitit" / f"{entry['job_id']}_0_result.pkl").is_file():
            return "failed"  # the job ended without our function finishing (it could not start, or was killed)
        return _queue_state(entry)


def _queue_state(entry: dict) -> str:
    """running / pending / failed, from Slurm or from the local process."""
    if entry["executor"] == "slurm":
        try:
            import submitit

            state = submitit.SlurmJob(Path(entry["folder"]).parent / "submitit", entry["job_id"]).state.upper()
        except Exception:  # sacct not reachable: say what we know
            return "unknown"
        if state in ("PENDING", "CONFIGURING", "REQUEUED"):
            return "pending"
        return "running" if state in ("RUNNING", "COMPLETING", "UNKNOWN") else "failed"
    try:  # the local executor's job id is the process id (a finished child not yet reaped is a zombie)
        with open(f"/proc/{int(entry['job_id'])}/stat") as stat:
            return "failed" if stat.read().split(")")[-1].split()[0] == "Z" else "running"
    except FileNotFoundError:
        return "failed"
    except (OSError, ValueError):
        try:
            os.kill(int(entry["job_id"]), 0)
            return "running"
        except (OSError, ValueError):
            return "failed"


def job_key(*parts: Any) -> str:
    """A folder-safe key for one case or variant."""
    text = "_".join(str(p) for p in parts)
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text)


def run_jobs(
    cases: dict[str, tuple[Callable, tuple]],
    folder: Path,
    options: ClusterOptions,
    name: str,
    after: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Submit every case of ``cases`` (key -> (function, args)) that is not done, running or pending, wait for
    all, and return key -> final state. ``after[key] = other`` runs ``key`` only once ``other`` is done (on
    Slurm: a job dependency, so the queue holds it; locally: submitted when ``other`` finishes). The local
    executor runs at most ``options.parallel`` jobs at once (one per free core)."""
    book, submitted = JobBook(folder), {}
    after = after or {}
    executor = make_executor(options, folder, name)
    slurm = options.executor == "slurm"
    limit = float("inf") if slurm else max(1, options.parallel)

    def submit(key: str, dependency: str | None = None) -> None:
        function, args = cases[key]
        job_folder = folder / key
        job_folder.mkdir(parents=True, exist_ok=True)
        (job_folder / "error.txt").unlink(missing_ok=True)
        extra = {"dependency": f"afterok:{dependency}"} if dependency else {}
        if slurm:
            executor.update_parameters(slurm_additional_parameters=extra)
        job = executor.submit(_guarded, function, args, str(job_folder))
        book.record(key, str(job.job_id), options.executor, job_folder)
        submitted[key] = str(job.job_id)
        log(
            f"submitted {key}: job {job.job_id} ({options.executor})"
            + (f" after job {dependency}" if dependency else "")
        )

    queue = []
    for key in cases:
        state = book.state(key)
        if state in ("running", "pending", "unknown"):
            log(f"{key}: job {book.entries()[key]['job_id']} is {state}; waiting for it")
        elif state != "done":
            queue.append(key)
    while True:
        active = [k for k in cases if book.state(k) in ("running", "pending", "unknown")]
        for key in list(queue):
            if len(active) >= limit:
                break
            parent = after.get(key)
            parent_state = book.state(parent) if parent else "done"
            if parent_state == "failed" or (parent and parent_state == "not submitted" and parent not in queue):
                queue.remove(key)
                log(f"{key}: not submitted, its dependency {parent} did not finish")
                continue
            if parent_state != "done":
                if slurm and parent in submitted:
                    submit(key, submitted[parent])
                    queue.remove(key)
                    active.append(key)
                continue
            submit(key)
            queue.remove(key)
            active.append(key)
        if not queue and not active:
            return {key: book.state(key) for key in cases}
        time.sleep(1 if not slurm else 30)


def _guarded(function: Callable, args: tuple, job_folder: str) -> None:
    """A job's body: ``done.json`` on success, ``error.txt`` (the last line first) on failure."""
    import traceback

    folder = Path(job_folder)
    try:
        function(*args, folder)
    except BaseException as error:
        (folder / "error.txt").write_text(f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}")
        raise
    (folder / "done.json").write_text(json.dumps({"finished": time.time()}) + "\n")


def merge_stores(folder: Path, target) -> tuple[int, int]:
    """Import the rows of every finished job under ``folder`` into the store ``target``."""
    runs = rows = 0
    for path in sorted(Path(folder).glob("*/results.sqlite")):
        if (path.parent / "done.json").is_file():
            added = target.import_from(path)
            runs, rows = runs + added[0], rows + added[1]
    return runs, rows


# ---------------------------------------------------------------- the shared command-line options


def cli_options():
    """The typer options every cluster-capable command takes (same names as the TOML keys)."""
    import typer

    return dict(
        executor=typer.Option(
            None,
            "--executor",
            help="local | slurm: run each case/variant as a submitit job (default: in this process).",
        ),
        cluster_config=typer.Option(None, "--cluster-config", help="TOML file with the options below."),
        partition=typer.Option(None, "--partition", help="Slurm partition."),
        account=typer.Option(None, "--account", help="Slurm account."),
        time=typer.Option(None, "--time", help="Minutes per job (default 1440)."),
        nodes=typer.Option(None, "--nodes", help="Nodes per job (training variants)."),
        gpus_per_node=typer.Option(None, "--gpus-per-node", help="GPUs per node."),
        procs_per_node=typer.Option(
            None,
            "--procs-per-node",
            help="Training processes per node (default: one per GPU; on CPUs, gloo processes).",
        ),
        parallel=typer.Option(None, "--parallel", help="Local executor: jobs at once (default 1)."),
        jobs_dir=typer.Option(None, "--jobs-dir", help="Where job folders and jobs.json live."),
        status=typer.Option(False, "--status", help="Show the state of every job and exit."),
    )


def print_status(folder: Path, keys: list[str], console) -> dict[str, str]:
    """A table of every job's state; returns key -> state."""
    from rich.table import Table

    book = JobBook(folder)
    entries = book.entries()
    table = Table(title=f"jobs in {folder}")
    for column in ("case", "state", "job", "executor", "error"):
        table.add_column(column, overflow="fold")
    states = {}
    for key in keys:
        entry, state = entries.get(key, {}), book.state(key)
        states[key] = state
        error = Path(entry.get("folder", folder / key)) / "error.txt"
        first = error.read_text().splitlines()[0] if error.is_file() else ""
        table.add_row(key, state, entry.get("job_id", "-"), entry.get("executor", "-"), first)
    console.print(table)
    return states

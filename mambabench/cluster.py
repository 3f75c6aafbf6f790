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
a CPU), ``parallel`` (the local executor's jobs at once), ``setup`` (shell lines run before each job, e.g.
``module load cuda``) and ``poll`` (seconds between looks at the queue: default 30 on Slurm, 1 locally).

On Slurm a job's state comes from ``sacct``, or from ``scontrol`` where there is no accounting; a job whose
dependency failed is cancelled (Slurm would hold it forever); a failed job is shown with its exit code and the
end of its log; ``--cancel`` cancels every job of a command that is still queued or running.
"""

from __future__ import annotations

import json
import os
import subprocess
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
    poll: float | None = None  # seconds between looks at the queue (default: 30 on Slurm, 1 locally)

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
    if options.poll is not None and options.poll <= 0:
        raise ValueError("poll must be more than 0 seconds")
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
        setup = list(options.setup)
        if options.cpus_per_task:  # Slurm >= 22.05: srun (submitit's job step) does not inherit --cpus-per-task
            setup.insert(0, f"export SRUN_CPUS_PER_TASK={options.cpus_per_task}")
        params.update(slurm_partition=options.partition, slurm_account=options.account, slurm_setup=setup)
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
        if entry["executor"] == "slurm":  # Slurm first: a requeued job runs again after its first start failed
            state = _queue_state(entry)
            if state in ("running", "pending") or (state == "unknown" and not (folder / "error.txt").is_file()):
                return state
            return "failed"
        if (folder / "error.txt").is_file():
            return "failed"
        if (folder.parent / "submitit" / f"{entry['job_id']}_0_result.pkl").is_file():
            return "failed"  # the job ended without our function finishing (it could not start, or was killed)
        return _queue_state(entry)


_PENDING = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD")
_RUNNING = ("RUNNING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "SUSPENDED")


def _queue_state(entry: dict) -> str:
    """running / pending / failed / unknown, from Slurm or from the local process."""
    if entry["executor"] == "slurm":
        state = slurm_job_info(entry["job_id"])["state"]
        if state == "UNKNOWN":
            return "unknown"
        if state in _PENDING:
            return "pending"
        return "running" if state in _RUNNING else "failed"
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


def slurm_job_info(job_id: str) -> dict[str, str]:
    """{"state", "exit_code"} of a Slurm job: from sacct (accounting), else from scontrol (the controller knows
    a job until MinJobAge after its end; after that, with no accounting, it is GONE). UNKNOWN: neither
    answers (e.g. the controller is down)."""
    state = exit_code = ""
    try:
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-j", str(job_id), "-o", "State,ExitCode"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
        if lines:  # the newest record (a requeued job has one per start)
            state, exit_code = lines[-1].split("|")[:2]
    except (OSError, subprocess.TimeoutExpired):
        pass
    if not state:  # no accounting, or the job not recorded yet
        try:
            out = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], capture_output=True, text=True,
                                 timeout=60)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return {"state": "UNKNOWN", "exit_code": ""}
        fields_ = dict(item.split("=", 1) for item in out.stdout.split() if "=" in item)
        if out.returncode == 0 and "JobState" in fields_:
            state, exit_code = fields_["JobState"], fields_.get("ExitCode", "")
        elif "Invalid job id" in out.stderr:
            state = "GONE"
        else:
            state = "UNKNOWN"
    return {"state": state.split()[0].upper(), "exit_code": exit_code}


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
    poll = options.poll or (30 if slurm else 1)

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
        for key in list(active):  # Slurm holds a job whose afterok dependency failed forever: cancel it
            if slurm and after.get(key) and book.state(after[key]) == "failed":
                cancel_jobs(folder, [key], log, why=f"its dependency {after[key]} did not finish")
                active.remove(key)
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
        time.sleep(poll)


def _guarded(function: Callable, args: tuple, job_folder: str) -> None:
    """A job's body: ``done.json`` on success, ``error.txt`` (the last line first) on failure."""
    import traceback

    folder = Path(job_folder)
    (folder / "error.txt").unlink(missing_ok=True)  # a requeued job's earlier start
    ended = _watch_sigterm()
    try:
        function(*args, folder)
        if ended:  # Slurm ended the job (scancel, requeue, preemption): its processes were signalled too
            raise RuntimeError(f"the job was ended by SIGTERM while it ran ({ended[0]}); it is not done")
    except BaseException as error:
        (folder / "error.txt").write_text(f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}")
        raise
    (folder / "done.json").write_text(json.dumps({"finished": time.time()}) + "\n")


def _watch_sigterm() -> list[str]:
    """A list that gets an entry when this process receives SIGTERM. Slurm sends it to every process of a job
    it cancels, requeues or preempts; submitit ignores it (its own handler logs it), so a job's function can
    return normally after a child process it waited for was killed, e.g. a sweep case becoming an error row."""
    import signal

    ended: list[str] = []
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:
        return ended

    def handler(signum, frame):
        ended.append(time.strftime("%H:%M:%S"))
        if callable(previous):
            previous(signum, frame)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: nothing to watch
        pass
    return ended


def merge_stores(folder: Path, target) -> tuple[int, int]:
    """Import the rows of every finished job under ``folder`` into the store ``target``."""
    runs = rows = 0
    for path in sorted(Path(folder).glob("*/results.sqlite")):
        if (path.parent / "done.json").is_file():
            added = target.import_from(path)
            runs, rows = runs + added[0], rows + added[1]
    return runs, rows


def cancel_jobs(folder: Path, keys: list[str], log: Callable[[str], None] = print, why: str = "") -> list[str]:
    """Cancel the jobs of ``keys`` still queued or running (Slurm: scancel; local: SIGINT to the process);
    returns the keys cancelled. The command waiting for them sees them fail; running it again resubmits them."""
    import signal

    book, cancelled = JobBook(folder), []
    entries = book.entries()
    for key in keys:
        if key not in entries or book.state(key) not in ("running", "pending", "unknown"):
            continue
        entry = entries[key]
        try:
            if entry["executor"] == "slurm":
                subprocess.run(["scancel", str(entry["job_id"])], check=True, capture_output=True, timeout=60)
            else:
                os.kill(int(entry["job_id"]), signal.SIGINT)
        except (OSError, subprocess.SubprocessError) as error:
            log(f"{key}: could not cancel job {entry['job_id']}: {error}")
            continue
        cancelled.append(key)
        log(f"{key}: cancelled job {entry['job_id']}" + (f" ({why})" if why else ""))
    return cancelled


def _log_paths(entry: dict) -> list[Path]:
    logs = Path(entry["folder"]).parent / "submitit"
    return [logs / f"{entry['job_id']}_0_log.err", logs / f"{entry['job_id']}_0_log.out"]


def exit_code(entry: dict) -> str:
    """A finished Slurm job's exit code as Slurm gives it (``code:signal``); "-" when not known."""
    if entry.get("executor") != "slurm":
        return "-"
    return slurm_job_info(entry["job_id"])["exit_code"] or "-"


def log_tail(entry: dict, lines: int = 10) -> tuple[Path | None, list[str]]:
    """The last ``lines`` lines of a job's log (stderr, else stdout): (path, lines)."""
    for path in _log_paths(entry):
        if path.is_file() and path.stat().st_size:
            with open(path, "rb") as handle:
                handle.seek(max(0, path.stat().st_size - 64 * 1024))
                return path, handle.read().decode(errors="replace").splitlines()[-lines:]
    return None, []


def report_failures(folder: Path, keys: list[str], log: Callable[[str], None] = print) -> None:
    """``failure_report`` of every failed job of ``keys`` (what a command prints when jobs did not finish)."""
    book = JobBook(folder)
    for key in keys:
        if key in book.entries() and book.state(key) == "failed":
            log(failure_report(book, key))


def failure_report(book: JobBook, key: str, lines: int = 10) -> str:
    """What a failed job left: its exit code, its error's first line and the end of its log."""
    entry = book.entries()[key]
    error = Path(entry["folder"]) / "error.txt"
    head = f"{key}: job {entry['job_id']} failed (exit code {exit_code(entry)})"
    if error.is_file():
        head += f": {error.read_text().splitlines()[0]}"
    path, tail = log_tail(entry, lines)
    if path is None:
        return head + "; no log"
    return "\n".join([f"{head}; the end of {path}:", *(f"    {line}" for line in tail)])


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
        cancel=typer.Option(False, "--cancel", help="Cancel every job of this command still queued or running."),
    )


def print_status(folder: Path, keys: list[str], console) -> dict[str, str]:
    """A table of every job's state; returns key -> state."""
    from rich.table import Table

    book = JobBook(folder)
    entries = book.entries()
    table = Table(title=f"jobs in {folder}")
    for column in ("case", "state", "job", "executor", "exit", "error"):
        table.add_column(column, overflow="fold")
    states = {}
    for key in keys:
        entry, state = entries.get(key, {}), book.state(key)
        states[key] = state
        error = Path(entry.get("folder", folder / key)) / "error.txt"
        first = error.read_text().splitlines()[0] if error.is_file() else ""
        code = exit_code(entry) if state == "failed" else "-"
        table.add_row(key, state, entry.get("job_id", "-"), entry.get("executor", "-"), code, first)
    console.print(table)
    for key in keys:  # the end of every failed job's log
        if states[key] == "failed":
            console.print(failure_report(book, key), highlight=False, markup=False)
    return states

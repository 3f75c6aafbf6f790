"""The results store: SQLite, one row per measurement, one row per run with where it ran.

Where it is (``store_location``, printed by ``results list``): the ``--store`` path, else
``$MAMBABENCH_RESULTS``, else ``$XDG_DATA_HOME/mambabench/results.sqlite`` (``~/.local/share/...``): one
store per user whatever the working directory. Writers create it; readers (``results list`` and friends)
never do: a missing store is an error naming the path and the rule.

Each write is one transaction (SQLite's journal keeps every committed row readable if a writer dies), the
database runs in WAL mode with a busy timeout so several sweep workers can write at once. A run is created
with its first row (``Recorder``), so a command that measures nothing leaves no empty run. A row's
``variant`` says what distinguishes it beyond (model, resolution, metric, batch, dtype, device), e.g. the
table, variant, seed and configuration hash of an ablation row: ``results compare`` matches on it. Any
SQLite failure (not a database, truncated, read-only, disk full) is a ``StoreError`` naming the file and the
fix. The store knows nothing of models: it stores rows.
"""

from __future__ import annotations

import json
import platform
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from mambabench import settings
from mambabench.errors import UserError

STORE_RULE = "--store PATH, else $MAMBABENCH_RESULTS, else $XDG_DATA_HOME/mambabench/results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL, command TEXT, git_commit TEXT, git_dirty INTEGER,
    host TEXT, cpu TEXT, gpu TEXT, python TEXT, torch TEXT, packages TEXT, origin TEXT);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER REFERENCES runs(id), created REAL, source TEXT,
    model TEXT, config TEXT, resolution TEXT, batch INTEGER, dtype TEXT, device TEXT, backend TEXT,
    metric TEXT, value REAL, unit TEXT, status TEXT, detail TEXT, variant TEXT DEFAULT '');
CREATE INDEX IF NOT EXISTS measurements_run ON measurements(run_id);
"""


class StoreError(UserError, RuntimeError):
    """The store cannot be read or written; the message names the file and what to do."""


@dataclass
class Measurement:
    model: str
    metric: str  # e.g. "gmacs", "latency_median", "fid"
    value: float | None
    unit: str  # e.g. "GMAC", "ms", "FID"
    resolution: str = ""
    batch: int = 1
    dtype: str = "float32"
    device: str = "cpu"
    backend: str = ""
    status: str = "ok"
    detail: str = ""
    source: str = "bench"
    config: dict = field(default_factory=dict)
    variant: str = ""  # identity beyond the matched columns (table/variant/seed/config hash; threads)


def store_location(path: str | Path | None = None) -> tuple[Path, str]:
    """(path, where it came from) by the one rule of ``STORE_RULE`` (``mambabench.settings``)."""
    return settings.results_store(path)


def store_path(path: str | Path | None = None) -> Path:
    return store_location(path)[0]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def run_context() -> dict:
    """Where and with what a run executes: commit (and dirty flag), host, CPU/GPU, versions, command."""
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    packages = {}
    for name in ("timm", "numpy", "mamba_ssm", "causal_conv1d", "flash_attn"):
        try:
            from importlib.metadata import version

            packages[name] = version(name.replace("_", "-"))
        except Exception:
            continue
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": int(bool(_git("status", "--porcelain", "--untracked-files=no"))),
        "host": socket.gethostname(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": gpu,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "packages": json.dumps(packages),
        "command": " ".join(sys.argv),
    }


def _explain(error: sqlite3.Error, path: Path) -> StoreError:
    text = str(error)
    if "readonly" in text or "read-only" in text:
        fix = "make it writable, or pass --store with a writable path"
    elif "disk is full" in text or "disk I/O" in text:
        fix = "free disk space (nothing was written), or pass --store on another disk"
    elif "not a database" in text or "malformed" in text or "file is" in text:
        fix = "it is damaged or not a store: move it aside (a new one is made on the next write) or pass --store"
    elif "unable to open" in text:
        fix = "its folder cannot be created or opened: pass --store with a path you can write"
    else:
        fix = "pass --store with another path, or move this file aside"
    return StoreError(f"results store {path}: {text}; {fix}")


class ResultsStore:
    """``create=False``: only an existing store is opened (reading commands), else ``StoreError``."""

    def __init__(self, path: str | Path | None = None, create: bool = True):
        self.path, self.origin = store_location(path)
        if not create and not self.path.is_file():
            raise StoreError(
                f"no results store at {self.path} ({self.origin}; rule: {STORE_RULE}); a bench or "
                "ablations command makes it, or pass --store"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(
                f"results store {self.path}: cannot create its folder ({error.strerror}); pass --store "
                "with a path you can write"
            ) from None
        self._execute(lambda db: self._initialise(db))

    def _initialise(self, db: sqlite3.Connection) -> None:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "measurements" in tables:  # a store written by an earlier version: add what it lacks
            columns = {row[1] for row in db.execute("PRAGMA table_info(measurements)")}
            if "variant" not in columns:
                db.execute("ALTER TABLE measurements ADD COLUMN variant TEXT DEFAULT ''")
            if "origin" not in {row[1] for row in db.execute("PRAGMA table_info(runs)")}:
                db.execute("ALTER TABLE runs ADD COLUMN origin TEXT")
            return
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        db.row_factory = sqlite3.Row
        return db

    def _execute(self, action):
        """``action(db)`` in one transaction; every SQLite failure becomes a ``StoreError``."""
        try:
            with closing(self._connect()) as db, db:
                return action(db)
        except sqlite3.Error as error:
            raise _explain(error, self.path) from None

    def start_run(self, context: dict | None = None) -> int:
        ctx = context if context is not None else run_context()

        def insert(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO runs (started, command, git_commit, git_dirty, host, cpu, gpu, python, torch, packages,"
                " origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ctx.get("started", time.time()),
                    ctx.get("command", ""),
                    ctx.get("git_commit", ""),
                    ctx.get("git_dirty", 0),
                    ctx.get("host", ""),
                    ctx.get("cpu", ""),
                    ctx.get("gpu", ""),
                    ctx.get("python", ""),
                    ctx.get("torch", ""),
                    ctx.get("packages", "{}"),
                    ctx.get("origin") or uuid.uuid4().hex,
                ),
            )
            return int(cursor.lastrowid)

        return self._execute(insert)

    def add(self, run_id: int, measurements: Iterable[Measurement]) -> int:
        """Insert the measurements in one transaction; returns how many."""
        rows = [
            (
                run_id,
                time.time(),
                m.source,
                m.model,
                json.dumps(m.config, sort_keys=True),
                m.resolution,
                m.batch,
                m.dtype,
                m.device,
                m.backend,
                m.metric,
                m.value,
                m.unit,
                m.status,
                m.detail,
                m.variant,
            )
            for m in measurements
        ]
        self._execute(
            lambda db: db.executemany(
                "INSERT INTO measurements (run_id, created, source, model, config, resolution, batch, dtype, device,"
                " backend, metric, value, unit, status, detail, variant)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        )
        return len(rows)

    def recorder(self) -> Recorder:
        """A run that is created with its first row."""
        return Recorder(self)

    def has_run(self, run_id: int) -> bool:
        return bool(self._execute(lambda db: db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()))

    def import_from(self, source: str | Path) -> tuple[int, int]:
        """Copy the runs of another store (a cluster job's own file) into this one: (runs, rows) added. A run is
        known by its ``origin`` id, so importing the same file again adds nothing."""
        other = ResultsStore(source, create=False)
        known = {r["origin"] for r in self.runs()}
        runs = rows = 0
        for run in other.runs():
            if run["origin"] in known:
                continue
            run_id = self.start_run({k: run[k] for k in run if k not in ("id", "rows")})
            measurements = other.measurements(run["id"])
            fields = {f for f in Measurement.__dataclass_fields__}
            self.add(
                run_id,
                [
                    Measurement(**{**{k: m[k] for k in fields if k in m}, "config": json.loads(m["config"])})
                    for m in measurements
                ],
            )
            runs, rows = runs + 1, rows + len(measurements)
        return runs, rows

    def runs(self) -> list[dict]:
        query = (
            "SELECT runs.*, COUNT(measurements.id) AS rows FROM runs"
            " LEFT JOIN measurements ON measurements.run_id = runs.id GROUP BY runs.id ORDER BY runs.id"
        )
        return self._execute(lambda db: [dict(r) for r in db.execute(query)])

    def measurements(self, run_id: int | None = None) -> list[dict]:
        def select(db: sqlite3.Connection) -> list[dict]:
            if run_id is None:
                cursor = db.execute("SELECT * FROM measurements ORDER BY id")
            else:
                cursor = db.execute("SELECT * FROM measurements WHERE run_id = ? ORDER BY id", (run_id,))
            return [dict(r) for r in cursor]

        return self._execute(select)


class Recorder:
    """The rows of one command: its run is started by the first non-empty ``add`` (no empty runs)."""

    def __init__(self, store: ResultsStore):
        self.store, self.run_id = store, None

    def add(self, measurements: Iterable[Measurement]) -> int:
        rows = list(measurements)
        if not rows:
            return 0
        if self.run_id is None:
            self.run_id = self.store.start_run()
        return self.store.add(self.run_id, rows)

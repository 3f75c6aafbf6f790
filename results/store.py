"""The results store: SQLite, one row per measurement, one row per run with where it ran.

Path: the ``path`` argument, else ``$MAMBABENCH_RESULTS``, else ``./mambabench-results/results.sqlite``.
Each write is one transaction (SQLite's journal keeps every committed row readable if a writer dies), the
database runs in WAL mode with a busy timeout so several sweep workers can write at once. The store knows
nothing of models: it stores rows.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATH = Path("mambabench-results") / "results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL, command TEXT, git_commit TEXT, git_dirty INTEGER,
    host TEXT, cpu TEXT, gpu TEXT, python TEXT, torch TEXT, packages TEXT);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER REFERENCES runs(id), created REAL, source TEXT,
    model TEXT, config TEXT, resolution TEXT, batch INTEGER, dtype TEXT, device TEXT, backend TEXT,
    metric TEXT, value REAL, unit TEXT, status TEXT, detail TEXT);
CREATE INDEX IF NOT EXISTS measurements_run ON measurements(run_id);
"""


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


def store_path(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get("MAMBABENCH_RESULTS") or DEFAULT_PATH)


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


class ResultsStore:
    def __init__(self, path: str | Path | None = None):
        self.path = store_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        db.row_factory = sqlite3.Row
        return db

    def start_run(self, context: dict | None = None) -> int:
        ctx = context if context is not None else run_context()
        with closing(self._connect()) as db, db:
            cursor = db.execute(
                "INSERT INTO runs (started, command, git_commit, git_dirty, host, cpu, gpu, python, torch, packages)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), ctx.get("command", ""), ctx.get("git_commit", ""), ctx.get("git_dirty", 0),
                 ctx.get("host", ""), ctx.get("cpu", ""), ctx.get("gpu", ""), ctx.get("python", ""),
                 ctx.get("torch", ""), ctx.get("packages", "{}")),
            )  # fmt: skip
            return int(cursor.lastrowid)

    def add(self, run_id: int, measurements: Iterable[Measurement]) -> int:
        """Insert the measurements in one transaction; returns how many."""
        rows = [
            (run_id, time.time(), m.source, m.model, json.dumps(m.config, sort_keys=True), m.resolution, m.batch,
             m.dtype, m.device, m.backend, m.metric, m.value, m.unit, m.status, m.detail)
            for m in measurements
        ]  # fmt: skip
        with closing(self._connect()) as db, db:
            db.executemany(
                "INSERT INTO measurements (run_id, created, source, model, config, resolution, batch, dtype, device,"
                " backend, metric, value, unit, status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def runs(self) -> list[dict]:
        with closing(self._connect()) as db:
            query = (
                "SELECT runs.*, COUNT(measurements.id) AS rows FROM runs"
                " LEFT JOIN measurements ON measurements.run_id = runs.id GROUP BY runs.id ORDER BY runs.id"
            )
            return [dict(r) for r in db.execute(query)]

    def measurements(self, run_id: int | None = None) -> list[dict]:
        with closing(self._connect()) as db:
            if run_id is None:
                cursor = db.execute("SELECT * FROM measurements ORDER BY id")
            else:
                cursor = db.execute("SELECT * FROM measurements WHERE run_id = ? ORDER BY id", (run_id,))
            return [dict(r) for r in cursor]

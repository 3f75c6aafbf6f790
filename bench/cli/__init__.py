"""``bench``: what a registry entry costs. One module per command family; importing them registers their
commands on the app of ``bench.cli.common``."""

from __future__ import annotations

import os
import sys

from bench.cli import flops, memory, paper, sweep, timing  # noqa: F401  (register the commands)
from bench.cli.common import app
from mambabench.errors import run_app


def run() -> None:
    """Console entry point (``bench``): the app, then an exit that skips the interpreter's teardown.

    Tearing down a process that imported torch runs every module finaliser, a sizeable share of a short
    ``bench flops`` call. Everything is finished by then: output is flushed below, store writes are
    committed as they happen and subprocesses have been waited for."""
    try:
        run_app(app)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

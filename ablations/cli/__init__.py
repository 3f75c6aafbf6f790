"""``ablations``: train, sample and score any registry model; run and report the papers' tables. One module
per command family; importing them registers their commands on the app of ``ablations.cli.common``."""

from __future__ import annotations

from ablations.cli import datasets, geneval, sampling, scoring, tables, training  # noqa: F401  (register the commands)
from ablations.cli.common import app
from mambabench.errors import run_app


def run() -> None:
    """Console entry point (``ablations``)."""
    run_app(app)

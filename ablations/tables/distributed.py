"""A table run's training under torchrun (one process per GPU, or gloo processes on a CPU), started by a
cluster job (``ablations.tables.runner.table_variant_job``):
``torchrun ... -m ablations.tables.distributed CONFIG.json RUN_FOLDER STEP [STEP ...]`` trains the
configuration to its last step, keeping the checkpoints of the listed steps (the ones the table scores).

A loss that turns NaN/inf is a result here as in a single-process run (``ablations.tables.runner``): every
process sees it at the same step (the finiteness check is all-reduced), rank 0 writes ``RUN/diverged.json``,
and all exit 0, so the job goes on to report the run as diverged instead of failing."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ablations.experiment import RunConfig
from ablations.run_folder import is_finished
from ablations.tables.runner import record_divergence
from ablations.train import NonFiniteLoss, Trainer


def train(config: RunConfig, folder: str | Path, keep_steps: tuple[int, ...]) -> None:
    """Train (or resume) ``config`` in ``folder`` to its last step; a divergence is recorded, not raised."""
    if is_finished(folder):
        return
    try:
        Trainer(config, folder, resume=True, keep_steps=keep_steps).run()
    except NonFiniteLoss as error:
        print(f"diverged: {error}", file=sys.stderr, flush=True)
        if int(os.environ.get("RANK", "0")) == 0:
            record_divergence(Path(folder), str(error), config.seed)


if __name__ == "__main__":
    spec, folder, *keep = sys.argv[1:]
    train(RunConfig.from_dict(json.loads(Path(spec).read_text())), folder, tuple(int(s) for s in keep))

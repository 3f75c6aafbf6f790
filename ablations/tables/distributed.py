"""A table run's training under torchrun (one process per GPU, or gloo processes on a CPU), started by a
cluster job (``ablations.tables.runner.table_variant_job``):
``torchrun ... -m ablations.tables.distributed CONFIG.json RUN_FOLDER STEP [STEP ...]`` trains the
configuration to its last step, keeping the checkpoints of the listed steps (the ones the table scores)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ablations.experiment import RunConfig
from ablations.run_folder import is_finished
from ablations.train import Trainer

if __name__ == "__main__":
    spec, folder, *keep = sys.argv[1:]
    config = RunConfig.from_dict(json.loads(Path(spec).read_text()))
    if not is_finished(folder):
        Trainer(config, folder, resume=True, keep_steps=tuple(int(s) for s in keep)).run()

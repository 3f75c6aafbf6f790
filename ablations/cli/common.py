"""What every ``ablations`` command shares: the app, the console, the thread and runs options."""

from __future__ import annotations

import typer
from rich.console import Console

from mambabench.cluster import cli_options as cluster_cli_options
from mambabench.errors import UserError, cli_app, request_debug

app = cli_app("Train, sample, score; run and report the papers' ablation tables.")


data_app = cli_app("Data sets: download where there is internet.")
app.add_typer(data_app, name="data")


console = Console(width=max(Console().width, 110), soft_wrap=True)


@app.callback()
def _main(
    debug: bool = typer.Option(
        False, "--debug", help="Show the Python traceback of an error instead of one line (or MAMBABENCH_DEBUG=1)."
    ),
) -> None:
    """Train, sample, score; run and report the papers' ablation tables."""
    if debug:
        request_debug()


def set_threads(threads: int) -> None:
    import torch

    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


CLUSTER = cluster_cli_options()


RUNS = typer.Option(None, "--runs", help="Where table runs live (default $MAMBABENCH_RUNS or ./mambabench-runs).")

"""What every ``bench`` command shares: the app, the console, the store and clip options, input checks."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from bench.inputs import Resolution, case_resolution, parse_resolution
from mambabench.cluster import cli_options as cluster_cli_options
from mambabench.errors import UserError, cli_app
from results.store import STORE_RULE, Measurement, ResultsStore

app = cli_app("Cost of any registry entry at any resolution: FLOPs, latency, memory, sweeps, paper tables.")
console = Console(width=max(Console().width, 120))  # a video row of `bench flops` needs ~120


STORE = typer.Option(None, "--store", help=f"Results store ({STORE_RULE}).")
CLUSTER = cluster_cli_options()
NO_STORE = typer.Option(False, "--no-store", help="Do not record the rows in the results store.")
FRAMES = typer.Option(
    [],
    "--frames",
    help="Video entries: frames per clip, repeat for several (default: the "
    "entry's own clip length, 16 for the XL entries). Rows name a clip TxWxH.",
)


def record_rows(store: Path | None, no_store: bool, rows: list[Measurement], quiet: bool = False) -> None:
    """Every bench command's rows go to the store (one run per command, none when nothing was measured)."""
    if no_store or not rows:
        return
    recorder = ResultsStore(store).recorder()
    recorder.add(rows)
    if not quiet:
        console.print(
            f"{len(rows)} row(s) -> results store {recorder.store.path} (run {recorder.run_id})",
            style="dim",
            highlight=False,
        )


def model_cases(models: list[str], res: list[str], frames: list[int]) -> list[tuple[str, Resolution]]:
    """Every (model, size) case, a video entry's sizes as clips (``case_resolution``), checked before any runs:
    an unknown model, a bad size or a frame count for an image entry is one line and exit 2."""
    import zoo

    return [
        (name, case_resolution(zoo.get_entry(name), parse_resolution(r, f)))
        for name in models
        for r in res
        for f in (frames or [None])
    ]


def check_counts(**values: int) -> None:
    bad = [f"--{k} {v}" for k, v in values.items() if v is None or v < 1]
    if bad:
        raise UserError(f"{', '.join(bad)}: must be a whole number >= 1")


PX = "px"  # WxH, or TxWxH for a clip of T frames


@app.callback()
def main() -> None:
    """Benchmarks of registry entries."""

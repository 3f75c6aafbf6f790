"""``bench paper``: a paper's cost table beside ours."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from bench.cli.common import NO_STORE, STORE, app, check_counts, console, record_rows
from mambabench.device import resolve_device
from mambabench.errors import UserError


@app.command("paper")
def paper_command(
    name: str = typer.Argument(
        ..., help="t2md-table3 | mo-table4 | teng-table1 | teng-fig3 | dig-claims | sana-claims"
    ),
    measure: bool = typer.Option(
        False, "--measure", help="Also time the forwards (t2md-table3, teng-fig3, dig-claims, sana-claims)."
    ),
    device: str = typer.Option("cpu", help="Device for --measure."),
    dtype: str = typer.Option("float32", help="dtype for --measure."),
    threads: int = typer.Option(1, help="CPU threads for --measure."),
    as_json: bool = typer.Option(False, "--json"),
    store: Path = STORE,
    no_store: bool = NO_STORE,
) -> None:
    """A paper's cost table, ours beside theirs (counted on the meta device; measured with --measure)."""
    from bench.paper import COMPARISONS, NOTES, paper_measurements

    check_counts(threads=threads)
    if name not in COMPARISONS:
        raise UserError(f"unknown comparison {name!r}; choose one of {', '.join(COMPARISONS)}")
    run, title = COMPARISONS[name]
    if measure:
        resolve_device(device)
    rows = run(measure=measure, device=device, dtype=dtype, threads=threads)
    record_rows(
        store, no_store, paper_measurements(name, rows, device if measure else "meta", dtype, threads), quiet=as_json
    )
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title=f"{title}\nours: MACs counted on the meta device (1 MAC = 1 multiply-add = 2 FLOPs)")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    for col in columns:
        table.add_column(col.replace("_", " "), justify="right", overflow="fold")
    for row in rows:
        table.add_row(*("-" if row.get(c) is None else str(row[c]) for c in columns))
    console.print(table)
    console.print(NOTES[name])
    if not measure and name in ("t2md-table3", "teng-fig3", "sana-claims"):
        console.print(
            "Latency: add --measure (on a GPU: --device cuda --dtype bfloat16; on a CPU t2md-table3 and "
            "sana-claims time one full-width block of each kind and compose them, ~10 and ~30 minutes at one "
            "thread)."
        )

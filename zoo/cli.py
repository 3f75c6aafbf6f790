"""``zoo``: the model registry from the command line."""

from __future__ import annotations

import dataclasses
import json

import typer
from rich.console import Console
from rich.table import Table

from mambabench.errors import cli_app, run_app
from zoo.registry import get_entry
from zoo.summary import count_parameters, registry_rows

app = cli_app("The model registry: every backbone configuration of the papers, by name.")
console = Console(width=max(Console().width, 110))


def _fmt(value: object) -> str:
    return "-" if value is None else str(value)


@app.command("list")
def list_command(
    family: str = typer.Option(None, help="Only this family (dit, uvit, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per line instead of a table."),
) -> None:
    """Every registry entry with its parameter count (counted on the meta device) beside the paper's."""
    rows = registry_rows(family)
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table(title="Model registry: parameters in millions, counted exactly on the meta device")
    for col in ("name", "family", "params (M)", "paper (M)", "Δ %", "source"):
        table.add_column(col, justify="right" if col in ("params (M)", "paper (M)", "Δ %") else "left")
    for r in rows:
        delta = r["params_delta_pct"]
        shown = (
            "-"
            if delta is None
            else f"[{'green' if abs(delta) <= r['params_tolerance_pct'] else 'red'}]{delta:+.2f}[/]"
        )
        table.add_row(r["name"], r["family"], f"{r['params_m']:.2f}", _fmt(r["params_reported_m"]), shown, r["source"])
    console.print(table)


@app.command("show")
def show_command(
    name: str = typer.Argument(..., help="Registry name, e.g. dit-xl/2."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """The configuration, inputs and paper metadata of one entry, and where its official weights are."""
    entry = get_entry(name)
    info = {
        "name": entry.name,
        "family": entry.family,
        "class": f"{entry.builder.__module__}.{entry.builder.__name__}",
        "config": entry.config,
        "inputs": dataclasses.asdict(entry.inputs),
        "paper": dataclasses.asdict(entry.paper) if entry.paper else None,
        "params": count_parameters(entry.name),
        "weights": _weights(entry.name),
    }
    if as_json:
        print(json.dumps(info))
        return
    table = Table(title=entry.name, show_header=False)
    table.add_column("field")
    table.add_column("value")
    for key, value in info.items():
        if key == "weights":
            continue
        table.add_row(
            key, json.dumps(value) if isinstance(value, dict) else f"{value:,}" if key == "params" else str(value)
        )
    weights = info["weights"]
    for item in weights["published"]:
        note = f" ({item['note']})" if item["note"] else ""
        table.add_row("official weights", f"{item['file']} from {item['source']}{note}", style=None)
    table.add_row("load them", weights["how"] if weights["published"] else "none are published for this entry")
    console.print(table)


def _weights(name: str) -> dict:
    """Where the official weights of ``name`` are published, and how to pass them."""
    found = [dataclasses.asdict(p) for p in get_entry(name).weights]
    how = f'zoo.create_model("{name}", pretrained=PATH)' if found else None
    return {"published": found, "how": how}


def run() -> None:
    """Console entry point (``zoo``)."""
    run_app(app)


if __name__ == "__main__":
    run()

"""``bench``: what a registry entry costs."""

from __future__ import annotations

import json
from functools import partial

import typer
from rich.console import Console
from rich.table import Table

from bench.flops import FlopCount, count_flops
from bench.inputs import parse_resolution

app = typer.Typer(help="Cost of any registry entry at any resolution (FLOPs now; latency and memory to come).",
                  no_args_is_help=True)  # fmt: skip
console = Console(width=max(Console().width, 110))


def _share(count: FlopCount, category: str) -> str:
    return f"{100 * count.by_category.get(category, 0) / count.flops:.0f}%" if count.flops else "-"


@app.callback()
def main() -> None:
    """Benchmarks of registry entries."""


@app.command("flops")
def flops_command(
    model: list[str] = typer.Option(..., "--model", "-m", help="Registry name(s); repeat for several."),
    res: list[str] = typer.Option(["256"], "--res", "-r", help="Image size: 256 or WxH like 3840x2160."),
    batch: int = typer.Option(1, help="Batch size."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
) -> None:
    """Parameters, MACs and FLOPs of one forward pass, counted on the meta device (seconds, no memory)."""
    rows = []
    for name in model:
        for r in res:
            try:
                rows.append(count_flops(name, parse_resolution(r), batch))
            except (KeyError, ValueError) as exc:
                console.print(f"[red]{exc.args[0]}[/]")
                raise typer.Exit(2) from exc
    if as_json:
        for c in rows:
            print(json.dumps({"model": c.model, "resolution": c.resolution, "input_shape": c.input_shape,
                              "params": c.params, "macs": c.macs, "flops": c.flops, "by_category": c.by_category,
                              "device": "meta (counted)", "batch": batch}))  # fmt: skip
        return
    table = Table(title=f"Forward cost, batch {batch}, counted on the meta device (MAC = multiply-add; FLOPs = 2 MACs)")
    for col in ("model", "image px (WxH)", "input", "params (M)", "GMACs", "GFLOPs", "attention", "scan", "linear",
                "conv"):  # fmt: skip
        table.add_column(
            col, justify="left" if col in ("model", "image px (WxH)", "input") else "right", no_wrap=col == "model"
        )
    for c in rows:
        share = partial(_share, c)
        table.add_row(c.model, c.resolution, "x".join(map(str, c.input_shape[1:])), f"{c.params / 1e6:.2f}",
                      f"{c.macs / 1e9:.2f}", f"{c.flops / 1e9:.2f}", share("attention"), share("scan"), share("linear"),
                      share("conv"))  # fmt: skip
    console.print(table)

"""``bench flops``: parameters, MACs and FLOPs counted on the meta device."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import typer
from rich.table import Table

from bench.cli.common import FRAMES, NO_STORE, PX, STORE, app, check_counts, console, model_cases, record_rows
from bench.flops import FlopCount, count_flops
from bench.fvcore_counter import fvcore_macs
from mambabench.errors import UserError
from results.store import Measurement


def _share(count: FlopCount, category: str) -> str:
    """Percent of the forward's FLOPs in one category; one decimal under 1% (SANA's linear attention at 1024 px
    is 0.4%) and "<0.1%" below that, so that a category present is never shown as 0%."""
    if not count.flops:
        return "-"
    share = 100 * count.by_category.get(category, 0) / count.flops
    if 0 < share < 0.1:
        return "<0.1%"
    return f"{share:.1f}%" if 0 < share < 1 else f"{share:.0f}%"


# the printed share columns: (header, category of bench.flops); "lin attn" holds both linear attention ops,
# SANA's ReLU linear attention (zoo.linear_attention) and DiG's gated linear attention (zoo.gated_linear_attention)
SHARE_COLUMNS = (
    ("attn", "attention"),
    ("lin\nattn", "linear attention"),
    ("scan", "scan"),
    ("linear", "linear"),
    ("conv", "conv"),
)


@app.command("flops")
def flops_command(
    model: list[str] = typer.Option(..., "--model", "-m", help="Registry name(s); repeat for several."),
    res: list[str] = typer.Option(["256"], "--res", "-r", help="Image size: 256 or WxH like 3840x2160."),
    batch: int = typer.Option(1, help="Batch size."),
    counter: str = typer.Option("meta", help="meta (ours) or fvcore (also fvcore: a real CPU forward, <= 1 TMAC)."),
    frames: list[int] = FRAMES,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
    store: Path = STORE,
    no_store: bool = NO_STORE,
) -> None:
    """Parameters, MACs and FLOPs of one forward pass, counted on the meta device (seconds, no memory)."""
    if counter not in ("meta", "fvcore"):
        raise UserError(f"--counter must be meta or fvcore, got {counter!r}")
    check_counts(batch=batch)
    rows, fvcore = [], {}
    for name, resolution in model_cases(model, res, frames):
        rows.append(count_flops(name, resolution, batch))
        if counter == "fvcore":
            fvcore[len(rows) - 1] = fvcore_macs(name, resolution, batch, rows[-1].macs)[0]
    record_rows(
        store,
        no_store,
        [
            Measurement(
                c.model,
                metric,
                value,
                unit,
                c.resolution,
                batch,
                device="meta",
                source="bench flops",
                config={"seq_len": c.seq_len, "input_shape": list(c.input_shape)},
            )
            for c in rows
            for metric, value, unit in (
                ("gmacs", c.macs / 1e9, "GMAC"),
                ("gflops", c.flops / 1e9, "GFLOP"),
                ("params_m", c.params / 1e6, "M params"),
            )
        ],
        quiet=as_json,
    )
    if as_json:
        for c in rows:
            print(
                json.dumps(
                    {
                        "model": c.model,
                        "resolution": c.resolution,
                        "input_shape": c.input_shape,
                        "seq_len": c.seq_len,
                        "params": c.params,
                        "macs": c.macs,
                        "flops": c.flops,
                        "by_category": c.by_category,
                        "device": "meta (counted)",
                        "batch": batch,
                        "fvcore_macs": fvcore.get(rows.index(c)),
                    }
                )
            )
        return
    table = Table(title=f"Forward cost, batch {batch}, counted on the meta device (MAC = multiply-add; FLOPs = 2 MACs)")
    for col in ("model", PX, "input", "seq", "params (M)", "GMACs", "GFLOPs", *(h for h, _ in SHARE_COLUMNS)):
        table.add_column(
            col,
            justify="left" if col in ("model", PX, "input") else "right",
            no_wrap=col in ("model", PX, "input"),
            overflow="fold",
        )
    for c in rows:
        share = partial(_share, c)
        shares = (share(category) for _, category in SHARE_COLUMNS)
        table.add_row(
            c.model,
            c.resolution,
            "x".join(map(str, c.input_shape[1:])),
            str(c.seq_len),
            f"{c.params / 1e6:.2f}",
            f"{c.macs / 1e9:.2f}",
            f"{c.flops / 1e9:.2f}",
            *shares,
        )
    console.print(table)
    console.print(
        "Shares of the FLOPs: attn = softmax attention's QK^T and AV; lin attn = linear and gated linear attention "
        "(SANA, DiG); scan = the Mamba scans; linear = matmuls of the projections; conv = convolutions (SANA's "
        "Mix-FFN among them).",
        style="dim",
    )
    for index, macs in fvcore.items():
        c = rows[index]
        delta = 100 * (macs - c.macs) / c.macs
        console.print(
            f"fvcore cross-check {c.model} @ {c.resolution}: {macs / 1e9:.2f} GMACs ({delta:+.2f}% vs ours; "
            "fvcore also counts layer norms)"
        )

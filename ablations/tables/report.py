"""Reporting a table: our numbers beside the paper's, and whether each effect goes the paper's way.

The effect of a row is its primary metric against the table's reference row (the full model) at the same
checkpoint: "better" or "worse" for our FID (lower is better) and for the paper's own metric (FID, or
GenEval where higher is better). Values are not comparable across presets or sample counts; directions are.
Writes ``report.csv``, ``report.md`` and ``report.png`` beside the table's ``results.json``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ablations.evaluate import UNAVAILABLE
from ablations.tables.runner import index_file, runs_root
from ablations.tables.spec import TableSpec

OUR_METRICS = ("fid", "kid", "precision", "recall", "is", "sfid")


def _effect(value, reference, higher_is_better: bool) -> str:
    if isinstance(value, str):  # a qualitative paper result ("did not converge")
        return "worse"
    if value is None or reference is None or isinstance(reference, str):
        return "-"
    if value == reference:
        return "same"
    return "better" if (value > reference) == higher_is_better else "worse"


def build_rows(table: TableSpec, preset: str, root: str | Path | None = None) -> list[dict]:
    """One row per (variant, checkpoint), with ours, the paper's and the two effect directions."""
    spec = table.presets[preset]
    path = index_file(runs_root(root), table, spec)
    found = {(r["variant"], r["checkpoint"]): r for r in (json.loads(path.read_text()) if path.is_file() else [])}
    primary = table.paper_metrics[0]
    rows = []
    for checkpoint in spec.checkpoints:
        reference = found.get((table.reference.key, checkpoint), {})
        paper_reference = table.reference.paper.get(checkpoint, {}).get(primary)
        for variant in table.variants:
            ours = found.get((variant.key, checkpoint))
            paper = variant.paper.get(checkpoint, {})
            row = {
                "variant": variant.key,
                "label": variant.label,
                "checkpoint": checkpoint,
                "status": "ok" if ours else "not run",
                "params_m": ours.get("params_m") if ours else None,
                **{f"ours_{m}": (ours or {}).get(m) for m in OUR_METRICS},
                **{f"paper_{m}": paper.get(m) for m in table.paper_metrics},
                "n_generated": (ours or {}).get("n_generated"),
                "n_reference": (ours or {}).get("n_reference"),
            }
            if variant.reference:
                row["ours_effect"] = row["paper_effect"] = row["agrees"] = "reference"
            else:
                row["ours_effect"] = _effect(row["ours_fid"], reference.get("fid"), higher_is_better=False)
                row["paper_effect"] = _effect(paper.get(primary), paper_reference, table.paper_higher_is_better)
                known = "-" not in (row["ours_effect"], row["paper_effect"])
                row["agrees"] = ("yes" if row["ours_effect"] == row["paper_effect"] else "no") if known else "-"
            rows.append(row)
    return rows


def header(table: TableSpec, preset: str, rows: list[dict]) -> list[str]:
    spec = table.presets[preset]
    counts = sorted({(r["n_generated"], r["n_reference"]) for r in rows if r["n_generated"]})
    samples = ", ".join(f"{g} generated vs {r} reference" for g, r in counts) or "nothing scored yet"
    lines = [
        f"{table.id}: {table.title}",
        f"paper: {table.paper}; preset: {preset} ({spec.steps} steps, batch {spec.batch}, {spec.data} at "
        f"{spec.res} px, {spec.sampler} {spec.sample_steps} steps, CFG {spec.cfg:g} unless a row says otherwise)",
        f"FID sample count: {samples} (FID is biased at small counts: compare only equal counts)",
        f"ours: {table.note}",
        f"sFID: ADM's definition (mixed_6/conv, 7 channels, 17x17) on the same network; IS: {UNAVAILABLE['is']}",
    ]
    if spec.deviations:
        lines.append(f"deviations from the paper: {spec.deviations}")
    if preset == "smoke":
        lines.append("smoke scale: effect directions are noise here; this preset proves the path, not the paper")
    agree = [r["agrees"] for r in rows if r["agrees"] in ("yes", "no")]
    if agree:
        lines.append(f"effect directions agreeing with the paper: {agree.count('yes')} of {len(agree)}")
    return lines


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_report(table: TableSpec, preset: str, root: str | Path | None = None) -> tuple[list[dict], Path]:
    """Rows plus report.csv / report.md / report.png in the table's results folder; returns (rows, folder)."""
    rows = build_rows(table, preset, root)
    folder = index_file(runs_root(root), table, table.presets[preset]).parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    columns = [
        "label",
        "checkpoint",
        "ours_fid",
        "ours_kid",
        "ours_precision",
        "ours_recall",
        "ours_effect",
        *[f"paper_{m}" for m in table.paper_metrics],
        "paper_effect",
        "agrees",
    ]
    lines = [f"# {table.id} ({preset})", "", *[f"- {line}" for line in header(table, preset, rows)], ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in rows]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    _plot(table, preset, rows, folder / "report.png")
    return rows, folder


def _plot(table: TableSpec, preset: str, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["label"] + ("" if r["checkpoint"] == "final" else f" @{r['checkpoint']}") for r in rows]
    primary = table.paper_metrics[0]
    colours = {"yes": "tab:green", "no": "tab:red", "reference": "tab:blue"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.8), sharey=True)
    ours = [r["ours_fid"] if r["ours_fid"] is not None else 0 for r in rows]
    axes[0].barh(names, ours, color=[colours.get(r["agrees"], "tab:gray") for r in rows])
    axes[0].set_xlabel(f"our FID ({preset} preset, lower is better)")
    paper = [r[f"paper_{primary}"] if isinstance(r[f"paper_{primary}"], int | float) else 0 for r in rows]
    axes[1].barh(names, paper, color="tab:gray")
    for i, r in enumerate(rows):
        if isinstance(r[f"paper_{primary}"], str):
            axes[1].text(0, i, " " + r[f"paper_{primary}"], va="center")
    direction = "higher" if table.paper_higher_is_better else "lower"
    axes[1].set_xlabel(f"paper's {primary} ({direction} is better)")
    axes[0].invert_yaxis()
    fig.suptitle(
        f"{table.id}: ours ({preset}) beside the paper; green = same direction of effect as the paper, "
        "red = opposite, blue = reference",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

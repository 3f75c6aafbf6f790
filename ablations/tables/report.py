"""Reporting a table: our numbers beside the paper's, and whether each effect goes the paper's way.

A row is one (variant, checkpoint); with several training seeds its metrics are the mean over seeds, with
the sample standard deviation, the range and every seed's FID beside it. The effect of a row is its primary
metric against the table's reference row (the full model) at the same checkpoint: "better" or "worse" for
our metric and for the paper's own metric (FID, or GenEval where higher is better). Our metric's direction
comes from its rule in ``results.compare.RULES`` (lower FID and FVD, higher GenEval is better).

- ours, with at least two seeds on both sides: an effect only when the means differ by more than twice the
  standard error of their difference (Welch's, about 95% for normal spreads), else "within spread"; with
  one seed the bare direction (no error bar: read it as a hint);
- the paper's: "same" when within 1% of its reference (the papers give no spreads; 2.91 vs 2.92 is no claim).

Values are not comparable across presets or sample counts; directions are. Writes ``report.csv``,
``report.md`` and ``report.png`` beside the table's ``results.json``.

"Our metric" is GenEval overall (``ours_geneval_overall*``) when the table's runs were scored with GenEval
(``ablations.tables.geneval_rows``; the header names the detector and CLIP), else the table's ``our_metric``: FID
for the image tables, FVD for the video table (the ``ours_fvd*`` columns then take the place of ``ours_fid*``);
every row says which in ``ours_metric``. A table's ``paper_only`` rows (other methods of the paper's table,
not in the registry) are listed with the paper's number and status "paper only".
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

from ablations.evaluate import UNAVAILABLE
from ablations.experiment import RunConfig
from ablations.tables.layout import GENEVAL_METRICS, index_file, not_runnable, result_key, runs_root
from ablations.tables.spec import TableSpec
from results.compare import higher_is_better

OUR_METRICS = ("fid", "kid", "precision", "recall", "is", "sfid", "fvd")
LABELS = {"geneval_overall": "GenEval"}


def metric_label(metric: str) -> str:
    """How a report names our metric: ``FID``, ``FVD``, ``GenEval``."""
    return LABELS.get(metric, metric.upper())


def our_metric(table: TableSpec, results: list[dict]) -> str:
    """What a table's rows are judged on: GenEval overall when its results were scored with GenEval, else the
    table's ``our_metric``."""
    return "geneval_overall" if any(r.get("geneval_overall") is not None for r in results) else table.our_metric


PAPER_SAME = 0.01  # the paper's numbers within 1% of its reference: no claimed effect


def _paper_effect(value, reference, higher_is_better: bool) -> str:
    if isinstance(value, str):  # a qualitative paper result ("did not converge")
        return "worse"
    if value is None or reference is None or isinstance(reference, str):
        return "-"
    if abs(value - reference) <= PAPER_SAME * abs(reference):
        return "same"
    return "better" if (value > reference) == higher_is_better else "worse"


def _our_effect(values: list[float], reference: list[float], higher_better: bool = False) -> str:
    """Our metric (FID: lower is better) of one variant's seeds against the reference's seeds."""
    if not values or not reference:
        return "-"
    difference = statistics.fmean(values) - statistics.fmean(reference)
    if len(values) >= 2 and len(reference) >= 2:
        error = math.sqrt(statistics.variance(values) / len(values) + statistics.variance(reference) / len(reference))
        if abs(difference) <= 2 * error:
            return "within spread"
    elif difference == 0:
        return "same"
    return "worse" if (difference > 0) != higher_better else "better"


def _agrees(ours: str, paper: str) -> str:
    if "-" in (ours, paper):
        return "-"
    no_effect = ("same", "within spread")
    return "yes" if ours == paper or (ours in no_effect and paper in no_effect) else "no"


def _blocker(variant) -> str | None:
    """Why a row cannot be trained with the registry's models as they are (``runner.not_runnable``), or None."""
    return not_runnable(RunConfig(model=variant.model, **variant.run_overrides))


def _summary(results: list[dict], primary: str = "fid") -> dict:
    """Mean of every metric over seeds, plus the primary metric's (FID's, FVD's, GenEval's) spread and per-seed
    values."""
    out = {}
    for metric in OUR_METRICS + (GENEVAL_METRICS if primary in GENEVAL_METRICS else ()):
        values = [r[metric] for r in results if r.get(metric) is not None]
        out[f"ours_{metric}"] = statistics.fmean(values) if values else None
    values = [r[primary] for r in results if r.get(primary) is not None]
    out["seeds"] = len(results)
    out[f"ours_{primary}_std"] = statistics.stdev(values) if len(values) >= 2 else None
    out[f"ours_{primary}_min"] = min(values, default=None)
    out[f"ours_{primary}_max"] = max(values, default=None)
    out[f"ours_{primary}_seeds"] = " ".join(f"{f:.4g}" for f in values)
    return out


def build_rows(table: TableSpec, preset: str, root: str | Path | None = None) -> list[dict]:
    """One row per (variant, checkpoint), with ours (over seeds), the paper's and the two effect directions."""
    spec = table.presets[preset]
    path = index_file(runs_root(root), table, spec)
    found: dict[tuple[str, str], list[dict]] = {}
    results = sorted(json.loads(path.read_text()) if path.is_file() else [], key=result_key)
    for result in results:
        found.setdefault((result["variant"], result["checkpoint"]), []).append(result)
    primary, ours_metric = table.paper_metrics[0], our_metric(table, results)
    higher_better = higher_is_better(ours_metric)
    scorers = sorted(
        {
            f"detector {r['geneval_detector']}, CLIP {r['geneval_clip']}"
            for r in results
            if r.get("geneval_overall") is not None
        }
    )
    rows = []
    for checkpoint in spec.checkpoints:
        reference = [
            r[ours_metric] for r in found.get((table.reference.key, checkpoint), []) if r.get(ours_metric) is not None
        ]
        paper_reference = table.reference.paper.get(checkpoint, {}).get(primary)
        for variant in table.variants:
            ours = found.get((variant.key, checkpoint), [])
            paper = variant.paper.get(checkpoint, {})
            row = {
                "variant": variant.key,
                "label": variant.label,
                "checkpoint": checkpoint,
                "status": "ok" if ours else ("cannot run yet" if _blocker(variant) else "not run"),
                "ours_metric": ours_metric,
                "ours_scored_by": "; ".join(scorers) or None,
                "params_m": ours[0].get("params_m") if ours else None,
                **_summary(ours, ours_metric),
                **{f"paper_{m}": paper.get(m) for m in table.paper_metrics},
                "n_generated": ours[0].get("n_generated") if ours else None,
                "n_reference": ours[0].get("n_reference") if ours else None,
            }
            if variant.reference:
                row["ours_effect"] = row["paper_effect"] = row["agrees"] = "reference"
            else:
                values = [r[ours_metric] for r in ours if r.get(ours_metric) is not None]
                row["ours_effect"] = _our_effect(values, reference, higher_better)
                row["paper_effect"] = _paper_effect(paper.get(primary), paper_reference, table.paper_higher_is_better)
                row["agrees"] = _agrees(row["ours_effect"], row["paper_effect"])
            rows.append(row)
        for label, number in table.paper_only if checkpoint == "final" else ():
            other = dict.fromkeys(rows[0], None)
            other |= {"variant": "-", "label": label, "checkpoint": checkpoint, "status": "paper only", "seeds": 0}
            other |= {"ours_metric": ours_metric}
            other |= {f"ours_{ours_metric}_seeds": "", f"paper_{primary}": number, "ours_effect": "-", "agrees": "-"}
            other["paper_effect"] = _paper_effect(number, paper_reference, table.paper_higher_is_better)
            rows.append(other)
    return rows


def header(table: TableSpec, preset: str, rows: list[dict]) -> list[str]:
    spec = table.presets[preset]
    ours = rows[0]["ours_metric"] if rows else table.our_metric
    metric = metric_label(ours)
    counts = sorted({(r["n_generated"], r["n_reference"]) for r in rows if r["n_generated"]})
    samples = ", ".join(f"{g} generated vs {r} reference" for g, r in counts) or "nothing scored yet"
    clips = f", clips of {spec.frames or 'the entry’s'} frames" if table.our_metric == "fvd" else ""
    base = metric_label(table.our_metric)
    lines = [
        f"{table.id}: {table.title}",
        f"paper: {table.paper}; preset: {preset} ({spec.steps} steps, batch {spec.batch}, {spec.data} at "
        f"{spec.res} px{clips}, {spec.sampler} {spec.sample_steps} steps, CFG {spec.cfg:g} unless a row says "
        "otherwise)",
        f"{base} sample count: {samples} ({base} is biased at small counts: compare only equal counts)",
    ]
    if ours in GENEVAL_METRICS:
        lines.append(
            f"ours: GenEval ({rows[0]['ours_scored_by']}): overall, the unweighted mean of the six task scores, "
            f"{spec.geneval_per_prompt} images per prompt, higher is better, beside the paper's GenEval; {base} of "
            f"the same runs in ours_{table.our_metric}"
        )
    elif table.paper_scorer == "geneval":
        lines.append(
            f"ours: {metric}, not GenEval (not scored: `ablations run` with --geneval-metadata FILE --detector DIR "
            f"--clip DIR|FILE scores it; docs/geneval.md); {table.note}"
        )
    else:
        lines.append(f"ours: {table.note}")
    if table.our_metric == "fid":
        lines.append(
            f"sFID: ADM's definition (mixed_6/conv, 7 channels, 17x17) on the same network; IS: {UNAVAILABLE['is']}"
        )
    blocked = [v for v in table.variants if _blocker(v)]
    if blocked:
        lines.append(f"cannot run yet: {', '.join(v.label for v in blocked)}: {_blocker(blocked[0])}")
    if spec.deviations:
        lines.append(f"deviations from the paper: {spec.deviations}")
    seeds = sorted({r["seeds"] for r in rows if r["seeds"]})
    if seeds:
        lines.append(
            f"training seeds per row: {'/'.join(map(str, seeds))}; {metric} = mean ± sample standard deviation over "
            "seeds; "
            "an effect of ours counts when the means differ by more than 2 standard errors (else 'within spread'), "
            f"the paper's when over {PAPER_SAME:.0%}"
        )
    if preset == "smoke":
        lines.append("smoke scale: effect directions are noise here; this preset proves the path, not the paper")
    agree = [r["agrees"] for r in rows if r["agrees"] in ("yes", "no")]
    if agree:
        lines.append(f"effect directions agreeing with the paper: {agree.count('yes')} of {len(agree)}")
    return lines


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def fid_cell(row: dict, metric: str = "fid") -> str:
    """``12.3 ± 0.4`` over seeds, or the single value (of FID, or of ``metric``)."""
    if row.get(f"ours_{metric}") is None:
        return "-"
    spread = row.get(f"ours_{metric}_std")
    return _fmt(row[f"ours_{metric}"]) + (f" ± {spread:.2g}" if spread is not None else "")


def write_report(table: TableSpec, preset: str, root: str | Path | None = None) -> tuple[list[dict], Path]:
    """Rows plus report.csv / report.md / report.png in the table's results folder; returns (rows, folder)."""
    rows = build_rows(table, preset, root)
    folder = index_file(runs_root(root), table, table.presets[preset]).parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    metric = rows[0]["ours_metric"]
    if metric in GENEVAL_METRICS:
        extra = [f"ours_{table.our_metric}", "status"]
    else:
        extra = ["ours_kid", "ours_precision", "ours_recall"] if metric == "fid" else ["status"]
    columns = [
        "label",
        "checkpoint",
        "seeds",
        f"ours_{metric}",
        f"ours_{metric}_seeds",
        *extra,
        "ours_effect",
        *[f"paper_{m}" for m in table.paper_metrics],
        "paper_effect",
        "agrees",
    ]
    lines = [f"# {table.id} ({preset})", "", *[f"- {line}" for line in header(table, preset, rows)], ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    cell = lambda r, c: _fmt(r[c], 5 if c.startswith("paper_") else 4)  # noqa: E731  (the paper's digits: 477.97)
    lines += [
        "| " + " | ".join(fid_cell(r, metric) if c == f"ours_{metric}" else cell(r, c) for c in columns) + " |"
        for r in rows
    ]
    if _plot_losses(table, preset, root, folder / "loss.png"):
        lines += ["", "Training loss of every run: `loss.png` (moving average over 100 steps)."]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    _plot(table, preset, rows, folder / "report.png")
    return rows, folder


def _plot_losses(table: TableSpec, preset: str, root, path: Path) -> bool:
    """The training loss of every scored run (one colour per variant, one line per seed), from each run's
    ``log.jsonl``: whether training had converged is the first question when an effect does not show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = index_file(runs_root(root), table, table.presets[preset])
    results = json.loads(index.read_text()) if index.is_file() else []
    curves = {}
    for result in results:
        log = Path(result.get("run", "")) / "log.jsonl"
        if log.is_file() and (result["variant"], result.get("seed", 0)) not in curves:
            points = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            points = [(p["step"], p["loss"]) for p in points if "loss" in p and "step" in p]
            curves[(result["variant"], result.get("seed", 0))] = sorted(dict(points).items())
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = {v.key: f"C{i}" for i, v in enumerate(table.variants)}
    labels = {v.key: v.label for v in table.variants}
    for (variant, seed), points in sorted(curves.items()):
        steps, losses = zip(*points, strict=True)
        window = max(1, min(10, len(losses) // 5))  # log lines every 10 steps: 10 lines = 100 steps
        smooth = [statistics.fmean(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]
        ax.plot(
            steps,
            smooth,
            color=colours.get(variant, "k"),
            alpha=0.8,
            linewidth=1,
            label=labels.get(variant, variant) if seed == 0 else None,
        )
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (moving average)")
    ax.set_title(f"{table.id} ({preset}): training loss, one line per seed", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot(table: TableSpec, preset: str, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["label"] + ("" if r["checkpoint"] == "final" else f" @{r['checkpoint']}") for r in rows]
    primary, metric = table.paper_metrics[0], rows[0]["ours_metric"]
    colours = {"yes": "tab:green", "no": "tab:red", "reference": "tab:blue"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.8), sharey=True)
    ours = [r[f"ours_{metric}"] if r[f"ours_{metric}"] is not None else 0 for r in rows]
    spread = [r[f"ours_{metric}_std"] or 0 for r in rows]
    axes[0].barh(names, ours, xerr=spread, capsize=3, color=[colours.get(r["agrees"], "tab:gray") for r in rows])
    for i, r in enumerate(rows):  # every seed as a dot on its bar
        seeds = [float(v) for v in r[f"ours_{metric}_seeds"].split()]
        axes[0].plot(seeds, [i] * len(seeds), "k.", markersize=4)
    seeds = "/".join(sorted({str(r["seeds"]) for r in rows if r["seeds"]})) or "0"
    better = "higher" if higher_is_better(metric) else "lower"
    axes[0].set_xlabel(
        f"our {metric_label(metric)} ({preset} preset, {seeds} seeds: mean, ± std, dots = seeds; {better} is better)"
    )
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

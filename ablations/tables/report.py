"""Reporting a table: our numbers beside the paper's, and whether each effect goes the paper's way.

A row is one (variant, checkpoint); with several training seeds its metrics are the mean over seeds, with
the sample standard deviation, the range and every seed's FID beside it. The effect of a row is its primary
metric against the table's reference row (the full model) at the same checkpoint, for our metric and for the
paper's own metric (FID, or GenEval where higher is better). Our metric's direction comes from its rule in
``results.compare.RULES`` (lower FID and FVD, higher GenEval is better).

- ours: paired over training seeds (seed s of a variant and of the reference share initialisation and data
  order; ``ablations.tables.paired``): per seed the difference row - reference, their mean, a 95% t interval
  and an exact sign-flip p-value. ``verdict`` follows from the interval: "reproduced" (it excludes 0 on the
  paper's side), "opposite" (on the other side), "within spread" (it contains 0); where the paper's own numbers
  are within 1% (no claimed effect), "reproduced (no effect)" (it contains 0) or "<better|worse>, where the paper
  has none" (it excludes 0); "one seed (no interval): <direction>" below 2 pairs;
- the paper's: "same" when within 1% of its reference (the papers give no spreads; 2.91 vs 2.92 is no claim).

A run that diverged (NaN/inf metric, or a result marked ``diverged`` or with a non-finite loss) stays in the
report: its status says "diverged (seed k)", its seed is in ``diverged_seeds`` and ``nan`` in the per-seed
column, and the means and the paired statistics use only the finished seeds (``n_pairs``: those finished on
both sides); seeds run on one side only, or whose reference seed diverged, are in ``unpaired_seeds``.

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
from ablations.tables.paired import Paired, our_effect, pair, verdict
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


LOSS_KEYS = ("loss", "final_loss", "train_loss")


def seed_value(result: dict, metric: str) -> float | None:
    """One seed's value of ``metric``: the number, NaN for a run that diverged (a NaN/inf metric, a result
    marked ``diverged``, or a non-finite training loss), None when it was not scored with that metric."""
    value = result.get(metric)
    losses = [result.get(k) for k in LOSS_KEYS if isinstance(result.get(k), int | float)]
    if result.get("diverged") or any(not math.isfinite(v) for v in losses):
        return math.nan
    return None if value is None else float(value)


def seed_values(results: list[dict], metric: str) -> dict[int, float]:
    """Training seed -> value (NaN: diverged) of the results scored with ``metric``."""
    values = {int(r.get("seed", 0)): seed_value(r, metric) for r in results}
    return {seed: v for seed, v in values.items() if v is not None}


def _seeds(seeds) -> str:
    return " ".join(map(str, seeds))


def _status(ours: list[dict], values: dict[int, float], blocked: bool) -> str:
    if not ours:
        return "cannot run yet" if blocked else "not run"
    diverged = [s for s, v in values.items() if not math.isfinite(v)]
    if diverged:
        return f"diverged (seed{'s' if len(diverged) > 1 else ''} {', '.join(map(str, diverged))})"
    return "ok"


def _paired_columns(paired: Paired | None) -> dict:
    """The paired comparison's columns of a row (all None for a row without one: the reference, paper only)."""
    if paired is None:
        columns = ("diff_seeds", "mean_diff", "ci_low", "ci_high", "p_sign_flip", "n_pairs", "unpaired_seeds")
        return dict.fromkeys(columns, None)
    low, high = paired.interval or (None, None)
    unpaired = [f"row only: {_seeds(paired.row_only)}"] if paired.row_only else []
    unpaired += [f"reference only: {_seeds(paired.reference_only)}"] if paired.reference_only else []
    partner_lost = [s for s in paired.reference_diverged if s not in paired.diverged and s not in paired.reference_only]
    unpaired += [f"reference diverged: {_seeds(partner_lost)}"] if partner_lost else []
    return {
        "diff_seeds": " ".join(f"{s}:{d:+.4g}" for s, d in paired.differences.items()),
        "mean_diff": paired.mean,
        "ci_low": low,
        "ci_high": high,
        "p_sign_flip": paired.p_sign_flip,
        "n_pairs": paired.n,
        "unpaired_seeds": "; ".join(unpaired),
    }


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
    per_seed = seed_values(results, primary)
    finished = [r for r in results if math.isfinite(seed_value(r, primary) or 0.0)]  # diverged: listed, not averaged
    for metric in OUR_METRICS + (GENEVAL_METRICS if primary in GENEVAL_METRICS else ()):
        values = [r[metric] for r in finished if r.get(metric) is not None and math.isfinite(r[metric])]
        out[f"ours_{metric}"] = statistics.fmean(values) if values else None
    values = [v for v in per_seed.values() if math.isfinite(v)]
    out["seeds"] = len(results)
    out[f"ours_{primary}_std"] = statistics.stdev(values) if len(values) >= 2 else None
    out[f"ours_{primary}_min"] = min(values, default=None)
    out[f"ours_{primary}_max"] = max(values, default=None)
    out[f"ours_{primary}_seeds"] = " ".join(f"{f:.4g}" for f in per_seed.values())  # seed order, nan: diverged
    out["diverged_seeds"] = _seeds(s for s, v in per_seed.items() if not math.isfinite(v))
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
        reference = seed_values(found.get((table.reference.key, checkpoint), []), ours_metric)
        paper_reference = table.reference.paper.get(checkpoint, {}).get(primary)
        for variant in table.variants:
            ours = found.get((variant.key, checkpoint), [])
            paper = variant.paper.get(checkpoint, {})
            values = seed_values(ours, ours_metric)
            row = {
                "variant": variant.key,
                "label": variant.label,
                "checkpoint": checkpoint,
                "status": _status(ours, values, bool(_blocker(variant))),
                "ours_metric": ours_metric,
                "ours_scored_by": "; ".join(scorers) or None,
                "params_m": ours[0].get("params_m") if ours else None,
                **_summary(ours, ours_metric),
                **{f"paper_{m}": paper.get(m) for m in table.paper_metrics},
                "n_generated": ours[0].get("n_generated") if ours else None,
                "n_reference": ours[0].get("n_reference") if ours else None,
            }
            if variant.reference:
                row |= _paired_columns(None)
                row["ours_effect"] = row["paper_effect"] = row["agrees"] = row["verdict"] = "reference"
            else:
                paired = pair(values, reference) if values else None
                row |= _paired_columns(paired)
                row["ours_effect"] = our_effect(paired, higher_better) if paired else "-"
                row["paper_effect"] = _paper_effect(paper.get(primary), paper_reference, table.paper_higher_is_better)
                row["agrees"] = _agrees(row["ours_effect"], row["paper_effect"])
                row["verdict"] = verdict(paired, row["paper_effect"], higher_better) if paired else "-"
            rows.append(row)
        for label, number in table.paper_only if checkpoint == "final" else ():
            other = dict.fromkeys(rows[0], None)
            other |= {"variant": "-", "label": label, "checkpoint": checkpoint, "status": "paper only", "seeds": 0}
            other |= {"ours_metric": ours_metric}
            other |= {f"ours_{ours_metric}_seeds": "", f"paper_{primary}": number, "ours_effect": "-", "agrees": "-"}
            other |= {"verdict": "-", "diverged_seeds": ""}
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
        pairs = sorted({r["n_pairs"] for r in rows if r["n_pairs"] is not None})
        lines.append(
            f"training seeds per row: {'/'.join(map(str, seeds))}; {metric} = mean ± sample standard deviation over "
            f"seeds; paired seeds per row (finished on both sides): {'/'.join(map(str, pairs)) or '-'}"
        )
        lines.append(
            f"verdict rule: seed s of every row and of the reference share initialisation and data order, so each "
            f"row is compared per seed (difference = row - reference in {metric}; {better_side(ours)} is better), "
            "with the mean difference, its 95% Student-t interval over the seeds and an exact sign-flip p-value "
            "(a second, distribution-free check: with n seeds it cannot fall below 2/2^n). The verdict follows from "
            "the interval alone: 'reproduced' when it excludes 0 on the side of the paper's effect, 'opposite' when "
            "on the other side, 'within spread' when it contains 0; where the paper's numbers are within "
            f"{PAPER_SAME:.0%} of its reference (no claimed effect), 'reproduced (no effect)' when it contains 0 and "
            "'better/worse, where the paper has none' when it excludes 0; 'one seed (no interval)' below 2 paired seeds"
        )
    diverged = [f"{r['label']} @{r['checkpoint']} seed {r['diverged_seeds']}" for r in rows if r["diverged_seeds"]]
    if diverged:
        lines.append(f"diverged (NaN/inf; listed, left out of means and pairs): {'; '.join(diverged)}")
    unpaired = [f"{r['label']} @{r['checkpoint']} ({r['unpaired_seeds']})" for r in rows if r["unpaired_seeds"]]
    if unpaired:
        lines.append(
            f"unpaired seeds (run on one side only, or their partner diverged: not compared): {'; '.join(unpaired)}"
        )
    if preset == "smoke":
        lines.append("smoke scale: effect directions are noise here; this preset proves the path, not the paper")
    agree = [r["agrees"] for r in rows if r["agrees"] in ("yes", "no")]
    if agree:
        lines.append(f"effect directions agreeing with the paper: {agree.count('yes')} of {len(agree)}")
    return lines


def better_side(metric: str) -> str:
    return "higher" if higher_is_better(metric) else "lower"


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def fid_cell(row: dict, metric: str = "fid") -> str:
    """``12.3 ± 0.4`` over seeds, or the single value (of FID, or of ``metric``)."""
    if row.get(f"ours_{metric}") is None:
        return "-"
    spread = row.get(f"ours_{metric}_std")
    diverged = len(row["diverged_seeds"].split()) if row.get("diverged_seeds") else 0
    return (
        _fmt(row[f"ours_{metric}"])
        + (f" ± {spread:.2g}" if spread is not None else "")
        + (f" ({diverged} diverged)" if diverged else "")
    )


PAIRED_COLUMNS = ("diff_seeds", "mean_diff", "ci_95", "p_sign_flip", "n_pairs", "unpaired_seeds")  # report.md


def _paired_cell(row: dict, column: str) -> str:
    """report.md's cells of the paired comparison: signed differences, the interval as [low, high]."""
    if column == "ci_95":
        return "-" if row["ci_low"] is None else f"[{row['ci_low']:+.3g}, {row['ci_high']:+.3g}]"
    if column == "mean_diff":
        return "-" if row["mean_diff"] is None else f"{row['mean_diff']:+.4g}"
    if column == "p_sign_flip":
        return _fmt(row["p_sign_flip"], 3)
    return _fmt(row[column]) if row[column] not in ("", None) else "-"


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
        extra = [f"ours_{table.our_metric}"]
    else:
        extra = ["ours_kid", "ours_precision", "ours_recall"] if metric == "fid" else []
    columns = [
        "label",
        "checkpoint",
        "status",
        "seeds",
        f"ours_{metric}",
        f"ours_{metric}_seeds",
        *extra,
        *PAIRED_COLUMNS,
        "ours_effect",
        "verdict",
        *[f"paper_{m}" for m in table.paper_metrics],
        "paper_effect",
        "agrees",
    ]
    lines = [f"# {table.id} ({preset})", "", *[f"- {line}" for line in header(table, preset, rows)], ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]

    def cell(r: dict, c: str) -> str:
        if c == f"ours_{metric}":
            return fid_cell(r, metric)
        if c in PAIRED_COLUMNS:
            return _paired_cell(r, c)
        return _fmt(r[c], 5 if c.startswith("paper_") else 4)  # the paper's digits: 477.97

    lines += ["| " + " | ".join(cell(r, c) for c in columns) + " |" for r in rows]
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
            if points:  # a run that diverged before its first log line has none
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
    fig, axes = plt.subplots(1, 3, figsize=(17, 0.45 * len(rows) + 1.8), sharey=True)
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
    _plot_paired(axes[1], rows, metric)
    paper = [r[f"paper_{primary}"] if isinstance(r[f"paper_{primary}"], int | float) else 0 for r in rows]
    axes[2].barh(names, paper, color="tab:gray")
    for i, r in enumerate(rows):
        if isinstance(r[f"paper_{primary}"], str):
            axes[2].text(0, i, " " + r[f"paper_{primary}"], va="center")
    direction = "higher" if table.paper_higher_is_better else "lower"
    axes[2].set_xlabel(f"paper's {primary} ({direction} is better)")
    axes[0].invert_yaxis()
    fig.suptitle(
        f"{table.id}: ours ({preset}) beside the paper; bars: green = same direction of effect as the paper, "
        "red = opposite, blue = reference; middle: per-seed differences and 95% interval, coloured by verdict",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


VERDICT_COLOURS = {"reproduced": "tab:green", "opposite": "tab:red", "within spread": "tab:orange"}


def _plot_paired(ax, rows: list[dict], metric: str) -> None:
    """Each row's per-seed differences from the reference (dots) and the 95% interval of their mean (a line
    through the mean), coloured by verdict; a diverged row says so."""
    ax.axvline(0, color="k", linewidth=0.8)
    for i, r in enumerate(rows):
        differences = [float(d.split(":")[1]) for d in (r["diff_seeds"] or "").split()]
        colour = VERDICT_COLOURS.get(r["verdict"], "tab:gray")
        ax.plot(differences, [i] * len(differences), ".", color="k", markersize=4)
        if r["ci_low"] is not None:
            ax.plot([r["ci_low"], r["ci_high"]], [i, i], color=colour, linewidth=3, alpha=0.7)
        if r["mean_diff"] is not None:
            ax.plot([r["mean_diff"]], [i], "|", color=colour, markersize=12)
        if r["diverged_seeds"]:
            where = ax.get_yaxis_transform()  # x in axes fractions: the right edge, clear of the points
            text = f"diverged: seed {r['diverged_seeds']} "
            ax.text(1, i - 0.3, text, transform=where, ha="right", va="center", fontsize=7, color="tab:red")
    ax.set_xlabel(f"row - reference, per paired seed ({metric_label(metric)}; {better_side(metric)} is better)")

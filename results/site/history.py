"""Value over commits: one page per metric, a figure per model, a line per series (resolution, variant,
batch, dtype, device) across the runs that measured it, each point coloured by the gate's verdict against
the series' reference, with the band of values the gate passes.

The reference is the baseline's value where a committed baseline has the series (with its own tolerance
when it gives one), else the series' first measurement. Verdicts come from ``results.compare`` (``judge``,
``band``): the same rules and tolerances as ``results compare``; a metric the gate never judges (a spread)
has no band, a metric with no rule gets none and says so."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from results.compare import MATCH, CompareError, band, judge
from results.frame import parse_resolution
from results.site.baselines import Reference, key
from results.site.html import BETTER, REGRESSION, esc, figure_div, fmt, slug, table, verdict_class

FAILING = ("regression", "not a number", "failed")
PALETTE = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


@dataclass
class Point:
    """One measurement of a series: its run (x), value, verdict and hover text."""

    run_id: int
    x: str
    value: float | None
    verdict: str
    row: dict


@dataclass
class Series:
    """The measurements of one match key, oldest run first."""

    key: tuple[str, ...]
    unit: str
    points: list[Point] = field(default_factory=list)
    reference: Reference | None = None
    band: tuple[float, float] | None = None
    note: str = ""

    @property
    def label(self) -> str:
        """What tells it from the model's other series: resolution, then what differs from the defaults."""
        model, variant, resolution, _, batch, dtype, device = self.key
        parts = [resolution or "-", device]
        parts += [f"batch {batch}"] if batch not in ("", "1") else []
        parts += [dtype] if dtype not in ("", "float32") else []
        parts += [variant] if variant else []
        text = " · ".join(p for p in parts if p)
        return text if len(text) <= 70 else text[:67] + "..."


def run_label(row: dict) -> str:
    """A run on the x axis: its id and short commit (``+dirty`` when the tree had uncommitted changes)."""
    commit = (row.get("commit") or "")[:8] or "no commit"
    commit += "+dirty" if row.get("dirty") else ""
    return f"#{row['run_id']} {commit}"


def _value(row: dict) -> float | None:
    value = row.get("value")
    if (row.get("status") or "ok") != "ok" or value is None:
        return None
    return float(value)


def _order(k: tuple[str, ...]) -> tuple:
    """Series by model, then size (256 before 1024, a clip after its frames' images), then the rest."""
    size = parse_resolution(k[MATCH.index("resolution")])
    return k[0], (0, size[2], size[0] * size[1]) if size else (1, 0, 0), k


def build_series(rows: list[dict], refs: dict[tuple[str, ...], Reference]) -> dict[str, dict[str, list[Series]]]:
    """metric -> model -> its series, each point judged; rows oldest first (the newest row of a run wins)."""
    by_key: dict[tuple[str, ...], dict[int, dict]] = defaultdict(dict)
    for row in rows:
        by_key[key(row)][int(row["run_id"])] = row
    out: dict[str, dict[str, list[Series]]] = defaultdict(lambda: defaultdict(list))
    for k in sorted(by_key, key=_order):
        runs = by_key[k]
        series = Series(k, next(iter(runs.values())).get("unit") or "")
        metric = k[MATCH.index("metric")]
        values = [(run_id, _value(runs[run_id])) for run_id in sorted(runs)]
        first = next((v for _, v in values if v is not None and not math.isnan(v)), None)
        series.reference = refs.get(k) or (Reference(first, None, "first run") if first is not None else None)
        try:
            if series.reference is not None:
                series.band = band(series.reference.value, metric, series.reference.tolerance)
        except CompareError:
            series.note = "no rule in results.compare.RULES: not judged"
        for run_id, value in values:
            row = runs[run_id]
            if value is None:
                verdict = "failed"
            elif series.note or series.reference is None:
                verdict = "ok"
            elif series.reference.origin == "first run" and run_id == values[0][0] and value == first:
                verdict = "reference"
            else:
                verdict = judge(series.reference.value, value, metric, series.reference.tolerance)
            series.points.append(Point(run_id, run_label(row), value, verdict, row))
        out[metric][k[0]].append(series)
    return out


def _hover(point: Point, series: Series) -> str:
    row, ref = point.row, series.reference
    when = str(row.get("timestamp") or "")[:19]
    against = f"{fmt(ref.value)} ({ref.origin})" if ref else "-"
    return (
        f"run {point.run_id} · {esc(row.get('commit') or 'no commit')[:12]}{' +dirty' if row.get('dirty') else ''}"
        f"<br>{when} UTC<br>{fmt(point.value)} {esc(series.unit)}<br>verdict: {point.verdict}"
        f"<br>reference: {against}<br>{esc(series.label)}"
    )


def model_figure(metric: str, model: str, series: list[Series]):
    """A model's series of one metric over runs: per series a line (markers red where the gate finds a
    regression, green where better) and its tolerance band (a shaded trace, not in the legend)."""
    import plotly.graph_objects as go

    runs = sorted({(p.run_id, p.x) for s in series for p in s.points})
    order = [x for _, x in runs]
    fig = go.Figure()
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        drawn = [p for p in s.points if p.value is not None]
        if s.band is not None and drawn:
            xs = [drawn[0].x, drawn[-1].x] if len(drawn) > 1 else [order[0], order[-1]]
            lo, hi = s.band
            fig.add_trace(
                go.Scatter(
                    x=[xs[0], xs[1], xs[1], xs[0], xs[0]],
                    y=[lo, lo, hi, hi, lo],
                    fill="toself",
                    fillcolor=colour,
                    opacity=0.12,
                    line={"width": 0},
                    mode="lines",
                    hoverinfo="skip",
                    showlegend=False,
                    name=f"{s.label}: ok band",
                    meta="band",
                )
            )
        colours = [REGRESSION if p.verdict in FAILING else BETTER if p.verdict == "better" else colour for p in drawn]
        fig.add_trace(
            go.Scatter(
                x=[p.x for p in drawn],
                y=[p.value for p in drawn],
                mode="lines+markers",
                name=s.label,
                line={"color": colour},
                marker={
                    "color": colours,
                    "size": [13 if p.verdict in FAILING else 8 for p in drawn],
                    "symbol": ["x" if p.verdict in FAILING else "circle" for p in drawn],
                },
                hovertext=[_hover(p, s) for p in drawn],
                hoverinfo="text",
                meta="values",
            )
        )
    unit = series[0].unit
    fig.update_layout(
        title=f"{model}: {metric}",
        template="plotly_white",
        xaxis={
            "title": "run (oldest first) and commit",
            "type": "category",
            "categoryorder": "array",
            "categoryarray": order,
        },  # fmt: skip
        yaxis={"title": f"{metric} ({unit})" if unit else metric},
        legend={"font": {"size": 10}},
        margin={"t": 50, "r": 20},
    )
    return fig


def newest_failing(metric: str, models: dict[str, list[Series]]) -> list[tuple]:
    """The series whose newest point fails: (metric, model, series, value, reference, verdict)."""
    out = []
    for model in sorted(models):
        for s in models[model]:
            p = s.points[-1]
            if p.verdict in FAILING:
                out.append((metric, model, s.label, p.value, s.reference.value if s.reference else None, p.verdict))
    return out


def metric_body(metric: str, models: dict[str, list[Series]]) -> tuple[str, list[tuple[Series, Point]]]:
    """A metric page's body (a figure per model, then the failing points) and its failing points."""
    failing = [(s, p) for ss in models.values() for s in ss for p in s.points if p.verdict in FAILING]
    notes = sorted({s.note for ss in models.values() for s in ss if s.note})
    parts = [
        f'<p class="note">Points over runs (oldest first); red crosses: the gate finds a regression, a failed '
        f"case or a NaN against the series' reference (the committed baseline's value where one has the series, "
        f"else its first run); green: better beyond the tolerance; shaded: the values the gate passes. "
        f"{esc(' '.join(notes))}</p>",
        f"<p>{len(failing)} failing point(s).</p>",
    ]
    for i, model in enumerate(sorted(models)):
        parts.append(figure_div(model_figure(metric, model, models[model]), f"history-{slug(metric)}-{i}"))
    if failing:
        parts.append("<h2>Failing points</h2>")
        parts.append(
            table(
                ("model", "series", "run", "value", "reference", "from", "verdict"),
                [
                    (
                        s.key[0],
                        s.label,
                        p.x,
                        p.value,
                        s.reference.value if s.reference else None,
                        s.reference.origin if s.reference else "-",
                        p.verdict,
                    )  # fmt: skip
                    for s, p in failing
                ],
                [verdict_class(p.verdict) for _, p in failing],
            )
        )
    return "\n".join(parts), failing

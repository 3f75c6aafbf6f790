"""Cost against resolution: per cost metric (counts, times, memory) a log-log figure, a line per model (with
its device, and clip length for video), lines of one family in one legend group, and the crossovers where a
line of one family stops being costlier than a line of another (the interactive form of ``bench sweep``'s
plots; the crossover is interpolated in log-log space as ``bench.plots.crossover`` does).

The x axis is a frame's side, sqrt(W x H) pixels, so 3840x2160 sits at 2880; the hover names the size. Each
point is the newest measurement of its (model, resolution, ...) in the store. Quality metrics (FID, KID, FVD,
IS, precision, recall, GenEval, the training loss) are not costs and are left to the other pages."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatch

from results.frame import parse_resolution
from results.site.baselines import latest
from results.site.html import esc, figure_div, slug, table

QUALITY = ("fid*", "sfid", "kid", "is", "precision", "recall", "fvd", "geneval_*", "train_loss_final")


def is_cost(metric: str) -> bool:
    """Whether a metric is a cost (counts, times, memory), not a quality score."""
    return not any(fnmatch(metric, p) for p in QUALITY)


@dataclass(frozen=True)
class Line:
    """A model's cost at one setting: what must be equal for two points to sit on one line."""

    model: str
    family: str
    device: str
    dtype: str
    batch: str
    variant: str
    frames: int

    @property
    def setting(self) -> tuple:
        """What two lines must share for a crossover between them to mean something."""
        return self.device, self.dtype, self.batch, self.variant, self.frames

    @property
    def label(self) -> str:
        parts = [self.device]
        parts += [f"{self.frames} frames"] if self.frames else []
        parts += [f"batch {self.batch}"] if self.batch not in ("", "1") else []
        parts += [self.dtype] if self.dtype not in ("", "float32") else []
        parts += [self.variant] if self.variant else []
        return f"{self.model} ({', '.join(parts)})"


def lines_of(rows: list[dict]) -> dict[str, dict[Line, list[tuple[float, float, str]]]]:
    """metric -> line -> [(side px, value, resolution)] sorted by side, from the newest ok row of each point."""
    out: dict[str, dict[Line, list]] = defaultdict(lambda: defaultdict(list))
    for row in latest(rows):
        size = parse_resolution(row.get("resolution") or "")
        value = row.get("value")
        if size is None or value is None or row.get("status") != "ok" or not is_cost(row["metric"]) or value <= 0:
            continue
        width, height, frames = size
        line = Line(
            row["model"],
            row.get("family") or row["model"],
            row.get("device") or "",
            row.get("dtype") or "",
            str(row.get("batch") or ""),
            row.get("variant") or "",
            frames,
        )
        out[row["metric"]][line].append((math.sqrt(width * height), float(value), row["resolution"]))
    return {
        metric: {line: sorted(points) for line, points in lines.items()}
        for metric, lines in out.items()
        if any(len(points) > 1 for points in lines.values())  # a plot against resolution needs two sizes
    }


def crossover(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float | None:
    """The side where line a stops being costlier than b (or the reverse), interpolated in log-log space
    between the sizes both have; None when they do not cross there."""
    common = sorted({x for x, _ in a} & {x for x, _ in b})
    ya, yb = dict(a), dict(b)
    for x0, x1 in zip(common, common[1:], strict=False):
        d0, d1 = math.log(ya[x0] / yb[x0]), math.log(ya[x1] / yb[x1])
        if d0 == 0:
            return x0
        if d0 * d1 < 0:
            frac = d0 / (d0 - d1)
            return math.exp(math.log(x0) + frac * (math.log(x1) - math.log(x0)))
    return None


@dataclass(frozen=True)
class Crossover:
    """Where ``cheaper`` becomes cheaper than ``costlier`` as the resolution grows (side px, value there)."""

    cheaper: Line
    costlier: Line
    side: float
    value: float


def crossovers(lines: dict[Line, list], pairs: Iterable[tuple[str, str]] | None = None) -> list[Crossover]:
    """The crossings between lines of different families at the same setting (or only of the ``pairs`` of
    models given, either way round)."""
    wanted = None if pairs is None else {frozenset(p) for p in pairs}
    found = []
    items = sorted(lines.items(), key=lambda item: item[0].label)
    for i, (a, pa) in enumerate(items):
        for b, pb in items[i + 1 :]:
            if a.setting != b.setting or a.family == b.family:
                continue
            if wanted is not None and frozenset((a.model, b.model)) not in wanted:
                continue
            side = crossover([(x, y) for x, y, _ in pa], [(x, y) for x, y, _ in pb])
            if side is None:
                continue
            ya, yb = dict((x, y) for x, y, _ in pa), dict((x, y) for x, y, _ in pb)
            largest = max(set(ya) & set(yb))
            cheaper, costlier = (a, b) if ya[largest] < yb[largest] else (b, a)
            value = _interpolate([(x, y) for x, y, _ in lines[cheaper]], side)
            found.append(Crossover(cheaper, costlier, side, value))
    return found


def _interpolate(points: list[tuple[float, float]], x: float) -> float:
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= x <= x1:
            frac = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0)) if x1 != x0 else 0.0
            return math.exp(math.log(y0) + frac * (math.log(y1) - math.log(y0)))
    return points[-1][1]


def cost_figure(metric: str, unit: str, lines: dict[Line, list], marks: list[Crossover]):
    """The log-log figure of one metric: a trace per line, one trace of every crossover (when there are any)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for line in sorted(lines, key=lambda line: (line.family, line.label)):
        points = lines[line]
        fig.add_trace(
            go.Scatter(
                x=[x for x, _, _ in points],
                y=[y for _, y, _ in points],
                mode="lines+markers",
                name=line.label,
                legendgroup=line.family,
                legendgrouptitle={"text": line.family},
                hovertext=[f"{esc(line.label)}<br>{esc(r)}: {y:.4g} {esc(unit)}" for _, y, r in points],
                hoverinfo="text",
                meta="line",
            )
        )
    if marks:
        fig.add_trace(
            go.Scatter(
                x=[c.side for c in marks],
                y=[c.value for c in marks],
                mode="markers",
                name="crossovers",
                marker={"symbol": "star", "size": 14, "color": "black"},
                hovertext=[
                    f"{esc(c.cheaper.model)} cheaper than {esc(c.costlier.model)}<br>beyond ≈{c.side:.0f} px side"
                    for c in marks
                ],
                hoverinfo="text",
                meta="crossovers",
            )
        )
    fig.update_layout(
        title=f"{metric} against resolution",
        template="plotly_white",
        xaxis={"title": "resolution: a frame's side, sqrt(W x H) px", "type": "log"},
        yaxis={"title": f"{metric} ({unit})" if unit else metric, "type": "log"},
        legend={"font": {"size": 10}, "groupclick": "toggleitem"},
        margin={"t": 50, "r": 20},
    )
    return fig


def cost_body(rows: list[dict], pairs: Iterable[tuple[str, str]] | None = None) -> tuple[str, int]:
    """The cost page's body: a figure per cost metric with lines, and the table of crossovers; and how many
    figures it holds (0: the store has no cost measured at two sizes)."""
    units = {r["metric"]: r.get("unit") or "" for r in rows}
    metrics = lines_of(rows)
    pairs = None if pairs is None else list(pairs)
    if not metrics:
        return '<p class="note">No cost in the store is measured at two resolutions or more.</p>', 0
    parts = [
        '<p class="note">Newest value of each point; lines of one family share a legend group (click a name to '
        "hide it); black stars: crossovers between families"
        + (" (the pairs asked for)" if pairs is not None else "")
        + ".</p>"
    ]
    rows_out = []
    for i, metric in enumerate(sorted(metrics)):
        marks = crossovers(metrics[metric], pairs)
        parts.append(figure_div(cost_figure(metric, units[metric], metrics[metric], marks), f"cost-{slug(metric)}-{i}"))
        rows_out += [(metric, c.cheaper.label, c.costlier.label, round(c.side)) for c in marks]
    if rows_out:
        parts.append("<h2>Crossovers</h2>")
        parts.append(table(("metric", "cheaper beyond the side", "than", "side (px)"), rows_out))
    return "\n".join(parts), len(metrics)

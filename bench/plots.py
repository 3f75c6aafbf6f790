"""Plots of a sweep CSV: cost against tokens (log-log), latency against resolution with crossovers.

A line is one model at one clip length: image rows (``frames`` 0 or absent) are a line per model, video rows
a line per (model, frame count), so 16-frame and 64-frame clips never join into one zig-zag line, and a pair's
crossover is found between lines of the same frame count. ``crossovers`` returns the marked points as data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from results.sweep_csv import read_rows  # noqa: E402

Line = tuple[str, int]  # (model, frames per clip; 0 for an image model)


def _series(rows: list[dict], metric: str, x: str, y: str) -> dict[Line, list[tuple[float, float]]]:
    out: dict[Line, list[tuple[float, float]]] = {}
    for row in rows:
        if row["metric"] == metric and row["status"] == "ok" and row.get(x) and row.get(y):
            line = (row["model"], int(row.get("frames") or 0))
            out.setdefault(line, []).append((float(row[x]), float(row[y])))
    return {line: sorted(points) for line, points in out.items()}


def _label(line: Line) -> str:
    model, frames = line
    return f"{model}, {frames} frames" if frames else model


def crossover(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float | None:
    """The x where series a stops being slower than b (or the reverse), interpolated in log-log space."""
    common = sorted(set(x for x, _ in a) & set(x for x, _ in b))
    ya, yb = dict(a), dict(b)
    for x0, x1 in zip(common, common[1:], strict=False):
        d0, d1 = math.log(ya[x0] / yb[x0]), math.log(ya[x1] / yb[x1])
        if d0 == 0:
            return x0
        if d0 * d1 < 0:
            frac = d0 / (d0 - d1)
            return math.exp(math.log(x0) + frac * (math.log(x1) - math.log(x0)))
    return None


def _pair_crossovers(series: dict[Line, list], pairs) -> list[tuple[str, str, int, float]]:
    """(mamba, attention, frames, x) for each pair's lines of equal frame count that cross."""
    found = []
    for mamba, attention in pairs:
        for model, frames in series:
            if model == mamba and (attention, frames) in series:
                x = crossover(series[(mamba, frames)], series[(attention, frames)])
                if x is not None:
                    found.append((mamba, attention, frames, x))
    return found


def _mark_crossovers(ax, series: dict, pairs, to_x, unit: str) -> None:
    """A dashed line at each crossover, numbered on the plot; the numbered sentences go under the axes, where
    crossovers close together (the field sweep has five within a factor of two) cannot overprint each other."""
    notes = []
    for n, (mamba, attention, frames, x) in enumerate(_pair_crossovers(series, pairs), 1):
        clip = f" ({frames} frames)" if frames else ""
        ax.axvline(to_x(x), color="grey", linestyle="--", linewidth=0.8)
        ax.annotate(
            str(n),
            (to_x(x), 0.03 + 0.07 * ((n - 1) % 3)),  # three heights, so neighbouring numbers stay apart
            xycoords=("data", "axes fraction"),
            fontsize=7,
            ha="center",
            bbox={"boxstyle": "circle,pad=0.2", "fc": "white", "ec": "grey"},
        )
        notes.append(f"{n}: {mamba} cheaper than {attention}{clip} beyond ≈{to_x(x):.0f} {unit}")
    if notes:
        ax.text(0.0, -0.16, "\n".join(notes), transform=ax.transAxes, va="top", fontsize=8)


def _log_log_plot(series: dict, to_x, pairs, unit: str, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 5))
    # more lines than the default 10 colours (the field sweep): 20 colours and alternating markers, so none repeat
    colours = plt.get_cmap("tab20" if len(series) > 10 else "tab10").colors
    for i, (line, points) in enumerate(series.items()):
        ax.plot([to_x(x) for x, _ in points], [y for _, y in points], marker="os^D"[i // 10 % 4] if len(series) > 10
                else "o", color=colours[i % len(colours)], label=_label(line))  # fmt: skip
    _mark_crossovers(ax, series, pairs, to_x, unit)
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # with the crossover sentences under the axes
    plt.close(fig)
    return path


@dataclass(frozen=True)
class _Plot:
    name: str
    metric: str  # sweep rows drawn
    x: str  # column on the x axis (drawn as to_x(x))
    y: str
    to_x: Callable[[float], float]
    unit: str  # of the drawn x
    file: str
    xlabel: str
    ylabel: str  # "{device}": the device of the rows
    title: str


_PLOTS = (
    _Plot(
        "cost",
        "flops",
        "tokens",
        "gmacs",
        lambda x: x,
        "tokens",
        "cost_vs_tokens.png",
        "patch tokens (latent grid / patch², times frames for a clip)",
        "GMACs per forward (batch 1, counted)",
        "Forward cost vs tokens",
    ),
    _Plot(
        "latency",
        "latency",
        "pixels",
        "median_ms",
        math.sqrt,
        "px",
        "latency_vs_resolution.png",
        "resolution (√(W·H) pixels of an image or frame)",
        "median latency per forward (ms, {device})",
        "Latency vs resolution",
    ),
)


def _side_px(rows: list[dict], model: str, frames: int, tokens: float) -> float | None:
    """The side √(W·H) of an image or frame whose input has ``tokens`` patch tokens (per clip), from the
    pixels-per-token ratio of the model's own flops rows."""
    for row in rows:
        if row["model"] == model and row["metric"] == "flops" and int(row.get("frames") or 0) == frames:
            if row.get("tokens") and row.get("pixels"):
                per_token = float(row["pixels"]) * max(frames, 1) / float(row["tokens"])
                return math.sqrt(tokens / max(frames, 1) * per_token)
    return None


def crossovers(csv_path: Path, pairs: list[tuple[str, str]]) -> list[dict]:
    """The crossovers the plots mark, as rows: plot, mamba, attention, frames, x and its unit (tokens of the
    clip or image for cost; the side √(W·H) of a frame or image for latency) and ``side_px``, that side for
    both plots."""
    rows, out = read_rows(csv_path), []
    for p in _PLOTS:
        for mamba, attention, frames, x in _pair_crossovers(_series(rows, p.metric, p.x, p.y), pairs):
            side = p.to_x(x) if p.unit == "px" else _side_px(rows, mamba, frames, x)
            out.append(
                dict(
                    plot=p.name, mamba=mamba, attention=attention, frames=frames, x=p.to_x(x), unit=p.unit, side_px=side
                )
            )
    return out


def plot_sweep(csv_path: Path, out_dir: Path, pairs: list[tuple[str, str]] = ()) -> list[Path]:
    """Write cost_vs_tokens.png and latency_vs_resolution.png (those with data); returns their paths."""
    rows = read_rows(csv_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for p in _PLOTS:
        series = _series(rows, p.metric, p.x, p.y)
        if series:
            device = next((r["device"] for r in rows if r["metric"] == p.metric), "?")
            written.append(
                _log_log_plot(
                    series, p.to_x, pairs, p.unit, out_dir / p.file, p.xlabel, p.ylabel.format(device=device), p.title
                )
            )
    return written

"""One plot of store rows: a metric against resolution, one line per model (log-log), or one bar per model
when the rows have a single resolution. Clips of a video entry (resolution ``TxWxH``) are a line per model and
clip length, against a frame's side."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from mambabench.errors import UserError


def _point(resolution: str) -> tuple[float, int] | None:
    """(sqrt(W * H), frames) of "256", "3840x2160" (frames 0) or a clip "16x256x256"; None for anything else."""
    parts = resolution.lower().split("x")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    if len(values) not in (1, 2, 3):
        return None
    frames = int(values.pop(0)) if len(values) == 3 else 0
    return math.sqrt(values[0] * values[-1]), frames


def _series(rows: list[dict]) -> dict[str, dict[float, float]]:
    """label -> {side: value}: a line per model and device, and per clip length for clips."""
    series: dict[str, dict[float, float]] = defaultdict(dict)
    for r in rows:
        point = _point(r["resolution"])
        if point is not None:
            side, frames = point
            clip = f", {frames} frames" if frames else ""
            series[f"{r['model']} ({r['device']}{clip})"][side] = r["value"]  # the newest row of a point wins
    return series


def plot_metric(rows: list[dict], metric: str, path: str | Path, models: list[str] | None = None) -> Path:
    """Write the plot of ``metric`` (rows with status ok) to ``path``; raises if nothing matches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [
        r
        for r in rows
        if r["metric"] == metric
        and r["status"] == "ok"
        and r["value"] is not None
        and (not models or r["model"] in models)
    ]
    if not chosen:
        known = sorted({r["metric"] for r in rows})
        raise UserError(
            f"no ok rows of metric {metric!r}"
            + (f" for {models}" if models else "")
            + f"; metrics in the store: {', '.join(known) or 'none'}"
        )
    unit = chosen[0]["unit"]
    series = _series(chosen)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if all(len(points) == 1 for points in series.values()):
        names = list(series)
        ax.bar(names, [next(iter(series[n].values())) for n in names])
        ax.set_ylabel(f"{metric} ({unit})")
        ax.tick_params(axis="x", rotation=30)
    else:
        for name, points in sorted(series.items()):
            xs = sorted(points)
            ax.loglog(xs, [points[x] for x in xs], marker="o", label=name)
        ax.set_xlabel("resolution (sqrt(W x H) pixels of an image or frame)")
        ax.set_ylabel(f"{metric} ({unit})")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"{metric} from the results store ({len(chosen)} rows)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""One plot of store rows: a metric against resolution, one line per model (log-log), or one bar per model
when the rows have a single resolution."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path


def _side(resolution: str) -> float | None:
    """sqrt(W * H) of "256" or "3840x2160"; None for anything else."""
    parts = resolution.lower().split("x")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    return math.sqrt(values[0] * values[-1]) if len(values) in (1, 2) else None


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
        raise ValueError(
            f"no ok rows of metric {metric!r}"
            + (f" for {models}" if models else "")
            + f"; metrics in the store: {', '.join(known) or 'none'}"
        )
    unit = chosen[0]["unit"]
    series: dict[str, dict[float, float]] = defaultdict(dict)
    for r in chosen:
        side = _side(r["resolution"])
        if side is not None:
            series[f"{r['model']} ({r['device']})"][side] = r["value"]  # the newest row of a point wins
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
        ax.set_xlabel("resolution (sqrt(W x H) pixels)")
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

"""Plots of a sweep CSV: cost against tokens (log-log), latency against resolution with crossovers."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.sweep import read_rows  # noqa: E402


def _series(rows: list[dict], metric: str, x: str, y: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        if row["metric"] == metric and row["status"] == "ok" and row.get(x) and row.get(y):
            out.setdefault(row["model"], []).append((float(row[x]), float(row[y])))
    return {model: sorted(points) for model, points in out.items()}


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


def _mark_crossovers(ax, series: dict, pairs, to_x, unit: str) -> None:
    for mamba, attention in pairs:
        if mamba in series and attention in series:
            x = crossover(series[mamba], series[attention])
            if x is not None:
                ax.axvline(to_x(x), color="grey", linestyle="--")
                ax.annotate(f"{mamba} cheaper than {attention}\nbeyond ≈{to_x(x):.0f} {unit}", (to_x(x), 0.02),
                            xycoords=("data", "axes fraction"), fontsize=8, rotation=90, va="bottom")  # fmt: skip


def _log_log_plot(series: dict, to_x, pairs, unit: str, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 5))
    for model, points in series.items():
        ax.plot([to_x(x) for x, _ in points], [y for _, y in points], marker="o", label=model)
    _mark_crossovers(ax, series, pairs, to_x, unit)
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_sweep(csv_path: Path, out_dir: Path, pairs: list[tuple[str, str]] = ()) -> list[Path]:
    """Write cost_vs_tokens.png and latency_vs_resolution.png (those with data); returns their paths."""
    rows = read_rows(csv_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    cost = _series(rows, "flops", "tokens", "gmacs")
    if cost:
        written.append(_log_log_plot(cost, lambda x: x, pairs, "tokens", out_dir / "cost_vs_tokens.png",
                                     "patch tokens (latent grid / patch²)", "GMACs per forward (batch 1, counted)",
                                     "Forward cost vs tokens"))  # fmt: skip
    latency = _series(rows, "latency", "pixels", "median_ms")
    if latency:
        device = next((r["device"] for r in rows if r["metric"] == "latency"), "?")
        written.append(_log_log_plot(latency, math.sqrt, pairs, "px", out_dir / "latency_vs_resolution.png",
                                     "resolution (√(W·H) pixels)", f"median latency per forward (ms, {device})",
                                     "Latency vs resolution"))  # fmt: skip
    return written

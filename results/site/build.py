"""Build the site: read the frame once, write every page and plotly.js into one folder.

Pages: ``index.html`` (the landing page), ``metric-<metric>.html`` (value over commits, one per metric),
``cost.html`` (cost against resolution per family, when the store has costs at two sizes or more) and
``table-<table>.html`` (one per paper table). Every page is static and loads ``plotly.min.js`` from beside it:
open ``index.html`` from the file system, copy the folder anywhere."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mambabench.errors import UserError
from results.frame import records
from results.site.baselines import Baseline, references
from results.site.cost import cost_body
from results.site.history import build_series, metric_body, newest_failing
from results.site.html import Link, page, slug, write_plotly_js
from results.site.landing import gate, landing_body
from results.site.tables import find_tables, table_body

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Site:
    """What was built: the folder, the pages (file -> title) and the counts the landing page shows."""

    out: Path
    pages: dict[str, str] = field(default_factory=dict)
    failing_points: int = 0
    failing_rows: int = 0

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def _summary(df: pd.DataFrame, store: str) -> dict:
    stamp = lambda t: "-" if t is None or t != t else str(t)[:16]  # noqa: E731
    return {
        "store": store,
        "rows": len(df),
        "runs": int(df["run_id"].nunique()),
        "commits": int(df["commit"].nunique()),
        "first": stamp(df["timestamp"].min() if len(df) else None),
        "last": stamp(df["timestamp"].max() if len(df) else None),
    }


def build_site(
    df: pd.DataFrame,
    out: Path,
    baselines: Sequence[Baseline] = (),
    runs: Path | None = None,
    pairs: Iterable[tuple[str, str]] | None = None,
    store: str = "",
) -> Site:
    """Write the site of ``df`` (a ``results.frame``) into ``out``: verdicts against ``baselines``, paper
    values from the reports under ``runs``, crossovers between families (or of ``pairs`` only)."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise UserError("the site needs plotly: pip install 'mambabench[results]'") from None
    if df.empty:
        raise UserError(f"the store {store} has no measurement to show (a bench or ablations command writes them)")
    out.mkdir(parents=True, exist_ok=True)
    rows = records(df)
    refs = references(list(baselines))
    site = Site(out)

    history = build_series(rows, refs)
    metric_pages = {f"metric-{slug(metric)}.html": metric for metric in sorted(history)}
    cost, cost_figures = cost_body(rows, pairs)
    tables = find_tables(rows)
    table_links = [Link(t.file, t.title) for t in tables]
    metric_links = [Link(f, m) for f, m in metric_pages.items()]
    cost_links = [Link("cost.html", "cost vs resolution")] if cost_figures else []
    nav = [Link("index.html", "overview"), *cost_links, *metric_links, *table_links]

    def write(file: str, title: str, body: str) -> None:
        (out / file).write_text(page(title, body, nav, file), encoding="utf-8")
        site.pages[file] = title

    newest = []
    for file, metric in metric_pages.items():
        newest += [(file, *row) for row in newest_failing(metric, history[metric])]
        body, failing = metric_body(metric, history[metric])
        site.failing_points += len(failing)
        write(file, f"{metric} over commits", body)
    if cost_figures:
        write("cost.html", "Cost against resolution", cost)
    for t in tables:
        write(t.file, f"Paper table {t.title}", table_body(t, refs, runs))
    gates = gate(list(baselines), rows)
    site.failing_rows = sum(len(g.failing) for g in gates)
    sections = [("Cost", cost_links), ("Over commits", metric_links), ("Paper tables", table_links)]
    write("index.html", "mambabench results", landing_body(_summary(df, store), gates, newest, sections))
    write_plotly_js(out)
    return site

"""The paper tables in the store: a page per table.

- An ablation table (rows ``ablations`` wrote, with ``table`` and ``preset`` in their config): our value of
  each metric per (variant, checkpoint, seed), the gate's verdict where a committed baseline has the row, and
  the paper's values with the report's verdicts (our effect, the paper's, whether they agree) from the
  table's ``report.csv`` (``ablations report`` writes it beside the table's ``results.json``, under
  ``<runs>/tables/<table>-<preset>/``): the store holds our numbers, not the paper's. The figure: our primary
  metric per seed, and the paper's beside it when the report is there.
- A ``bench paper`` table (source ``bench paper <name>``): our newest value of each column per model and
  resolution (the paper's own columns are constants the store leaves out; ``bench paper`` prints them)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from results.compare import judge
from results.frame import config_of
from results.site.baselines import Reference, key, latest
from results.site.html import esc, figure_div, slug, table, verdict_class

PRIMARY = ("fid", "fvd", "geneval_overall")  # what a table's figure shows first, when it has it
REPORT_COLUMNS = ("variant", "label", "checkpoint", "status", "seeds", "ours_effect", "paper_effect", "agrees")


@dataclass
class PaperTable:
    """One table of the store: its title, the file of its page and its rows."""

    title: str
    kind: str  # "ablations" | "bench paper"
    rows: list[dict]
    table: str = ""
    preset: str = ""

    @property
    def file(self) -> str:
        return f"table-{slug(self.title)}.html"


def find_tables(rows: list[dict]) -> list[PaperTable]:
    """The tables the store's rows belong to, ablation tables by (table, preset), then ``bench paper`` ones."""
    ablation: dict[tuple[str, str], list[dict]] = defaultdict(list)
    paper: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        config = config_of(row)
        if row.get("source") == "ablations" and config.get("table"):
            ablation[(str(config["table"]), str(config.get("preset", "")))].append(row | {"_config": config})
        elif (row.get("source") or "").startswith("bench paper "):
            paper[row["source"].removeprefix("bench paper ")].append(row)
    out = [PaperTable(f"{t} ({p})" if p else t, "ablations", r, t, p) for (t, p), r in sorted(ablation.items())]
    return out + [PaperTable(name, "bench paper", r, name) for name, r in sorted(paper.items())]


def read_report(runs: Path | None, t: PaperTable) -> tuple[Path | None, list[dict]]:
    """The table's ``report.csv`` under ``runs`` (its path and rows, strings), or (None, [])."""
    if runs is None:
        return None, []
    path = runs / "tables" / f"{t.table}-{t.preset}" / "report.csv"
    if not path.is_file():
        return path, []
    import pandas as pd

    return path, pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")


def _seed_rows(t: PaperTable, refs: dict[tuple[str, ...], Reference]):
    """(variant, checkpoint, seed) -> metric -> (value, verdict against a baseline or '')."""
    cells: dict[tuple[str, str, int], dict[str, tuple[float | None, str]]] = defaultdict(dict)
    for row in latest(t.rows):
        config = row["_config"]
        ident = (str(config.get("variant", "")), str(config.get("checkpoint", "")), int(config.get("seed") or 0))
        ref, value = refs.get(key(row)), row.get("value")
        verdict = judge(ref.value, value, row["metric"], ref.tolerance) if ref and value is not None else ""
        cells[ident][row["metric"]] = (value, verdict)
    return cells


def ablation_body(t: PaperTable, refs: dict[tuple[str, ...], Reference], runs: Path | None) -> str:
    """An ablation table's page: ours per seed (verdicts against baselines), the paper's and the report's."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cells = _seed_rows(t, refs)
    order = lambda m: (PRIMARY.index(m) if m in PRIMARY else len(PRIMARY), m)  # noqa: E731
    metrics = sorted({m for c in cells.values() for m in c}, key=order)
    primary = metrics[0]
    report_path, report = read_report(runs, t)
    paper_col = f"paper_{primary}" if report and f"paper_{primary}" in report[0] else None
    if report and paper_col is None:
        paper_col = next((c for c in report[0] if c.startswith("paper_") and c != "paper_effect"), None)
    paper = {(r["variant"], r["checkpoint"]): r for r in report}

    parts = [f'<p class="note">Our numbers from the store ({len(t.rows)} row(s)); a red cell: the gate finds a '
             "regression against a committed baseline.</p>"]  # fmt: skip
    headers = ["variant", "checkpoint", "seed", *metrics] + ([paper_col] if paper_col else [])
    body_rows, classes = [], []
    for (variant, checkpoint, seed), values in sorted(cells.items()):
        verdicts = [v for _, v in values.values() if v]
        row = [variant, checkpoint, seed] + [values.get(m, (None, ""))[0] for m in metrics]
        if paper_col:
            cell = paper.get((variant, checkpoint), {}).get(paper_col, "")
            row.append(_number(cell))
        body_rows.append(row)
        classes.append(next((verdict_class(v) for v in verdicts if verdict_class(v) not in ("ok", "better")), ""))
    parts.append(table(headers, body_rows, classes))

    xs = sorted({(v, c) for v, c, _ in cells})
    labels = [f"{v}@{c}" for v, c in xs]
    seeds = sorted({s for _, _, s in cells})
    titles = [f"ours: {primary}"] + ([f"paper: {paper_col}"] if paper_col else [])
    fig = make_subplots(rows=1, cols=2 if paper_col else 1, subplot_titles=titles)
    for s in seeds:
        points = [(label, cells[(v, c, s)][primary][0]) for (v, c), label in zip(xs, labels, strict=True)
                  if (v, c, s) in cells and primary in cells[(v, c, s)]]  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in points],
                y=[p[1] for p in points],
                mode="markers",
                name=f"ours, seed {s}",
                marker={"size": 10},
                meta="seed",
            ),  # fmt: skip
            row=1,
            col=1,
        )
    if paper_col:
        known = [(label, _number(paper.get(x, {}).get(paper_col, ""))) for x, label in zip(xs, labels, strict=True)]
        known = [(label, v) for label, v in known if isinstance(v, float)]
        fig.add_trace(
            go.Bar(
                x=[k[0] for k in known], y=[k[1] for k in known], name="paper", marker={"color": "#888"}, meta="paper"
            ),  # fmt: skip
            row=1,
            col=2,
        )
    fig.update_layout(template="plotly_white", margin={"t": 60, "r": 20}, title=f"{t.title}: {primary} per seed")
    parts.append(figure_div(fig, f"table-{slug(t.title)}"))

    if report:
        parts.append(f"<h2>Report</h2><p class='note'>{esc(report_path)}</p>")
        columns = [c for c in report[0] if c in REPORT_COLUMNS or c.startswith(("ours_", "paper_"))]
        columns = [c for c in columns if not c.endswith(("_seeds", "_min", "_max")) and any(r[c] for r in report)]
        parts.append(
            table(
                columns,
                [[_number(r[c]) for c in columns] for r in report],
                ["regression" if r.get("agrees") == "no" else "" for r in report],
            )
        )
    else:
        where = f" (looked for {esc(report_path)})" if report_path else ""
        parts.append(
            f"<p class='note'>The paper's values and the report's verdicts are not in the store: no report.csv"
            f"{where}; `ablations report` writes it, `results site --runs DIR` says where the runs are.</p>"
        )
    return "\n".join(parts)


def _number(text: str) -> float | str:
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def bench_paper_body(t: PaperTable) -> str:
    """A ``bench paper`` table's page: our newest value of each column per model and resolution."""
    rows = latest(t.rows)
    metrics = sorted({r["metric"] for r in rows})
    cells: dict[tuple[str, str], dict[str, float | None]] = defaultdict(dict)
    for r in rows:
        cells[(r["model"], r.get("resolution") or "")][r["metric"]] = r.get("value")
    body = [[m, r, *map(values.get, metrics)] for (m, r), values in sorted(cells.items())]
    return (
        f'<p class="note">Our newest value of each column of `bench paper {esc(t.table)}` ({len(rows)} row(s)); '
        "the paper's own numbers are constants the store leaves out (`bench paper` prints them beside ours).</p>"
        + table(["model", "resolution", *metrics], body)
    )


def table_body(t: PaperTable, refs: dict[tuple[str, ...], Reference], runs: Path | None) -> str:
    """The page body of one table."""
    return ablation_body(t, refs, runs) if t.kind == "ablations" else bench_paper_body(t)

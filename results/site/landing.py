"""The landing page: what the store holds, and what regressed since the last baseline.

For every committed baseline (``results/baselines/*.csv``), the gate (``results.compare.compare``) runs on
the baseline's rows against the newest row of each series in the store, restricted to the series the store
has: a baseline row the store never measured is counted, not failed (the store may hold other work). The
failing verdicts (regression, failed, NaN) are listed first; then links to every page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from results.compare import PASSING, Comparison, compare
from results.site.baselines import Baseline, key, latest
from results.site.html import Link, esc, table, verdict_class


@dataclass
class Gate:
    """The gate's verdicts of one baseline against the store: compared, failing, and baseline rows unmeasured."""

    baseline: Baseline
    results: list[Comparison]
    unmeasured: int

    @property
    def failing(self) -> list[Comparison]:
        return [c for c in self.results if c.verdict not in PASSING]


def gate(baselines: Sequence[Baseline], rows: list[dict]) -> list[Gate]:
    """Each baseline against the newest store rows of its series."""
    newest = {key(r): r for r in latest(rows)}
    out = []
    for b in baselines:
        wanted = {key(r) for r in b.rows}
        candidate = [newest[k] for k in wanted if k in newest]
        results = [c for c in compare(b.rows, candidate) if c.verdict != "missing"] if candidate else []
        out.append(Gate(b, results, len(wanted) - len(candidate)))
    return out


def landing_body(
    summary: dict,
    gates: list[Gate],
    newest_failing: Sequence[tuple[str, str, str, str, float | None, float | None, str]],
    sections: Sequence[tuple[str, Sequence[Link]]],
) -> str:
    """The landing page's body: the store in one line, the gate's failing rows per baseline, the series whose
    newest run fails against their reference (page file, metric, model, series, value, reference, verdict), the
    links."""
    failing = [(g, c) for g in gates for c in g.failing]
    parts = [
        f"<p>Store <code>{esc(summary['store'])}</code>: {summary['rows']} measurement(s) in {summary['runs']} "
        f"run(s), {summary['commits']} commit(s), {summary['first']} to {summary['last']} (UTC).</p>",
        "<h2>Regressed since the last baseline</h2>",
    ]
    if not gates:
        parts.append('<p class="note">No baseline given (results/baselines/ holds the committed ones).</p>')
    elif failing:
        parts.append(f'<p class="regression">{len(failing)} row(s) fail the gate.</p>')
        parts.append(
            table(
                ("baseline", "model", "variant", "resolution", "metric", "baseline value", "newest", "verdict"),
                [(g.baseline.name, *c.key[:4], c.baseline, c.candidate, c.verdict) for g, c in failing],
                [verdict_class(c.verdict) for _, c in failing],
            )
        )
    else:
        parts.append('<p class="ok">Nothing: every row a baseline shares with the store passes the gate.</p>')
    if gates:
        parts.append(
            table(
                ("baseline", "rows compared", "failing", "baseline rows not in the store"),
                [(g.baseline.name, len(g.results), len(g.failing), g.unmeasured) for g in gates],
                ["regression" if g.failing else "" for g in gates],
            )
        )
    parts.append("<h2>Newest run of a series failing against its reference</h2>")
    if newest_failing:
        parts.append(
            table(
                ("metric", "model", "series", "newest", "reference", "verdict"),
                [row[1:] for row in newest_failing],
                [verdict_class(row[-1]) for row in newest_failing],
            )
        )
    else:
        parts.append('<p class="ok">None (the pages below mark every failing point of the history red).</p>')
    for title, links in sections:
        if links:
            items = "".join(f'<li><a href="{esc(link.file)}">{esc(link.label)}</a></li>' for link in links)
            parts.append(f"<h2>{esc(title)}</h2><ul>{items}</ul>")
    return "\n".join(parts)

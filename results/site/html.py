"""The HTML around the plots: one page template (a navigation bar, a title, the body), tables, and a plotly
figure as a ``<div>`` that draws itself with the ``plotly.min.js`` written once beside the pages (no server,
no network: the pages open from the file system)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PLOTLY_JS = "plotly.min.js"
REGRESSION, BETTER = "#d62728", "#2ca02c"  # the colours of the gate's failing and better verdicts
PASSING_CLASS = {"ok": "ok", "better": "better", "new": "new", "reference": "ok"}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
nav { background: #223; padding: 0.5em 1em; position: sticky; top: 0; z-index: 10; }
nav a { color: #dde; margin-right: 1em; text-decoration: none; font-size: 0.9em; }
nav a.here { color: #fff; font-weight: bold; }
main { padding: 0.5em 1.5em 2em; max-width: 1300px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
th { background: #eef; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.regression, .failed, .missing, .nan { color: #d62728; font-weight: bold; }
.better { color: #2ca02c; } .new { color: #1f77b4; }
.note { color: #666; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class Link:
    """A page in the navigation bar: its file and its label."""

    file: str
    label: str


def esc(value: object) -> str:
    """Text for HTML (None is empty)."""
    return "" if value is None else html.escape(str(value))


def slug(name: str) -> str:
    """A file-name-safe form of a metric, table or model name (``latency_median`` -> ``latency-median``)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "page"


def fmt(value: object, digits: int = 4) -> str:
    """A number to ``digits`` significant figures; anything else as text; None and NaN as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if value != value else f"{value:.{digits}g}"
    return str(value)


def figure_div(fig, div_id: str) -> str:
    """A plotly figure as a ``<div>`` with the id ``div_id`` (the library is loaded once by the page)."""
    import plotly.io as pio

    return pio.to_html(
        fig,
        include_plotlyjs=False,
        full_html=False,
        div_id=div_id,
        default_height="440px",
        config={"displaylogo": False, "responsive": True},
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], row_classes: Iterable[str] = ()) -> str:
    """An HTML table; a cell that is a number is right-aligned; ``row_classes`` colour whole rows."""
    classes = list(row_classes)
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in headers), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        css = f' class="{esc(classes[i])}"' if i < len(classes) and classes[i] else ""
        out.append(f"<tr{css}>")
        for cell in row:
            numeric = isinstance(cell, int | float) and not isinstance(cell, bool)
            out.append(f'<td class="num">{fmt(cell)}</td>' if numeric else f"<td>{esc(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def verdict_class(verdict: str) -> str:
    """The CSS class of a verdict: failing ones are red."""
    return PASSING_CLASS.get(verdict, "nan" if verdict == "not a number" else "regression")


def page(title: str, body: str, nav: Sequence[Link], here: str) -> str:
    """A whole page: the navigation bar (``here`` marked), the title and the body; plotly from the local file."""
    links = "".join(
        f'<a href="{esc(link.file)}"{" class=here" if link.file == here else ""}>{esc(link.label)}</a>' for link in nav
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
        f'<style>{_STYLE}</style><script src="{PLOTLY_JS}"></script></head>'
        f"<body><nav>{links}</nav><main><h1>{esc(title)}</h1>\n{body}\n</main></body></html>\n"
    )


def write_plotly_js(out: Path) -> Path:
    """plotly.js (from the plotly package) once into the site folder; an identical copy is left as it is."""
    from plotly.offline import get_plotlyjs

    path = out / PLOTLY_JS
    code = get_plotlyjs()
    if not path.is_file() or path.stat().st_size != len(code.encode()):
        path.write_text(code, encoding="utf-8")
    return path

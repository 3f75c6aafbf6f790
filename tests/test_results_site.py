"""The static results site (``results site``): built from a tiny store filled through the real store API, its
pages, verdicts, bands and crossovers; then opened in a real headless Chromium (Debian's, driven by
playwright) to check that every page loads with no JS error and that each plot holds the traces and points
the store implies."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from results.cli import app
from results.frame import frame, records
from results.site import build_site
from results.site.baselines import load_baselines
from results.site.cost import crossover, crossovers, lines_of
from results.store import Measurement, ResultsStore

pytest.importorskip("plotly", reason="the site needs plotly (the [results] extra)")

FAMILIES = {"dit-xl/2": "dit", "dim-mo-xl/2": "dim-mo", "dim-teng-s/2-cifar10": "dim-teng"}
DIT = {"256": 100.0, "512": 400.0, "1024": 1600.0}  # quadratic, like attention
DIM = {"256": 150.0, "512": 450.0, "1024": 1300.0}  # dearer at 256, cheaper at 1024: a crossover in between
CHROMIUM = os.environ.get("MAMBABENCH_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _context(commit: str, dirty: int, started: float) -> dict:
    return {"git_commit": commit, "git_dirty": dirty, "host": "test", "cpu": "x86_64", "started": started}


def _ablation(variant: str, seed: int, fid: float) -> Measurement:
    config = {"table": "teng-table6", "preset": "smoke", "variant": variant, "checkpoint": "final", "seed": seed}
    return Measurement(
        model="dim-teng-s/2-cifar10",
        metric="fid",
        value=fid,
        unit="FID",
        resolution="32",
        batch=16,
        source="ablations",
        variant=f"teng-table6/{variant}@final seed={seed} preset=smoke",
        config=config,
    )


def fill_store(path: Path) -> ResultsStore:
    """Three runs: counts of two families at three sizes (they cross between 512 and 1024) and a latency
    (commit aaaa); the same count and a latency 20% slower (commit bbbb, dirty: a regression); FIDs of a paper
    table, two variants times two seeds."""
    store = ResultsStore(path)
    run = store.start_run(_context("a" * 40, 0, 1_700_000_000.0))
    counts = [
        Measurement(model=m, metric="gmacs", value=v, unit="GMAC", resolution=r, device="meta", source="bench flops")
        for m, values in (("dit-xl/2", DIT), ("dim-mo-xl/2", DIM))
        for r, v in values.items()
    ]
    latency = dict(model="dit-xl/2", metric="latency_median", unit="ms", resolution="256", variant="threads=1")
    store.add(run, [*counts, Measurement(value=10.0, **latency)])
    run = store.start_run(_context("b" * 40, 1, 1_700_086_400.0))
    gmacs = Measurement(model="dit-xl/2", metric="gmacs", value=100.0, unit="GMAC", resolution="256", device="meta")
    store.add(run, [gmacs, Measurement(value=12.0, **latency)])
    run = store.start_run(_context("c" * 40, 0, 1_700_172_800.0))
    store.add(run, [_ablation(v, s, fid) for v, s, fid in (("1234", 0, 300.0), ("1234", 1, 302.0), ("12", 0, 310.0))])
    store.add(run, [_ablation("12", 1, 311.0)])
    return store


def write_baseline(folder: Path) -> Path:
    """A baseline whose 512 count of DiT-XL/2 is 300 GMAC: the store's 400 is a regression against it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gmacs.csv"
    path.write_text(
        "model,variant,resolution,metric,value,unit,batch,dtype,device,status\n"
        "dit-xl/2,,512,gmacs,300,GMAC,1,float32,meta,ok\n"
        "uvit-h/2,,512,gmacs,300,GMAC,1,float32,meta,ok\n"  # not in the store: counted, not failed
    )
    return path


def write_report(runs: Path) -> None:
    """The report.csv `ablations report` writes: the paper's values and the effect verdicts."""
    folder = runs / "tables" / "teng-table6-smoke"
    folder.mkdir(parents=True)
    (folder / "report.csv").write_text(
        "variant,label,checkpoint,status,ours_fid,seeds,paper_fid,ours_effect,paper_effect,agrees\n"
        "1234,patterns 1 2 3 4,final,ok,301.0,2,2.92,reference,reference,reference\n"
        "12,patterns 1 2,final,ok,310.5,2,2.91,worse,same,no\n"
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("site")
    store = fill_store(root / "s.sqlite")
    write_report(root / "runs")
    baselines = load_baselines([write_baseline(root / "baselines")])
    site = build_site(frame(store, families=FAMILIES), root / "site", baselines, root / "runs", store=str(store.path))
    return root, site


# what each page's plots hold: div id -> [(trace kind, points)]; a band is a closed polygon of 5 points
EXPECTED = {
    "cost.html": {"cost-gmacs-0": [("line", 3), ("line", 3), ("crossovers", 1)]},
    "metric-gmacs.html": {
        "history-gmacs-0": [("band", 5), ("values", 1)] * 3,  # dim-mo-xl/2: one run of each size
        "history-gmacs-1": [("band", 5), ("values", 2), ("band", 5), ("values", 1), ("band", 5), ("values", 1)],
    },
    "metric-latency-median.html": {"history-latency-median-0": [("band", 5), ("values", 2)]},
    "metric-fid.html": {"history-fid-0": [("band", 5), ("values", 1)] * 4},
    "table-teng-table6-smoke.html": {"table-teng-table6-smoke": [("seed", 2), ("seed", 2), ("paper", 2)]},
    "index.html": {},
}


def test_pages_verdicts_and_links(built):
    root, site = built
    assert set(site.pages) == set(EXPECTED)
    # regressions: DiT-XL/2's 512 count against the baseline (300 -> 400), its latency against run 1 (+20%)
    assert site.failing_points == 2 and site.failing_rows == 1
    index = (root / "site" / "index.html").read_text()
    assert "1 row(s) fail the gate" in index and "gmacs.csv" in index and "regression" in index
    for page in EXPECTED:
        text = (root / "site" / page).read_text()
        assert '<script src="plotly.min.js">' in text and "://" not in text.split("<main>")[0]  # no network
        for other in EXPECTED:
            assert f'href="{other}"' in text  # every page links every other
    assert (root / "site" / "plotly.min.js").stat().st_size > 1_000_000
    table = (root / "site" / "table-teng-table6-smoke.html").read_text()
    assert "2.92" in table and "worse" in table and "agrees" in table  # the paper's values and the verdicts


def test_crossover_is_where_the_families_cross(built):
    root, _ = built
    rows = records(frame(root / "s.sqlite", families=FAMILIES))
    lines = lines_of(rows)["gmacs"]
    (mark,) = crossovers(lines)
    assert mark.cheaper.model == "dim-mo-xl/2" and mark.costlier.model == "dit-xl/2"
    assert 512 < mark.side < 1024
    # in log-log space the ratio dim/dit goes from 1.125 to 0.8125 between 512 and 1024
    frac = math.log(1.125) / (math.log(1.125) - math.log(0.8125))
    assert mark.side == pytest.approx(math.exp(math.log(512) + frac * math.log(2)))
    assert crossovers(lines, [("dit-xl/2", "uvit-h/2")]) == []  # only the pairs asked for
    assert crossover([(1, 1.0), (2, 2.0)], [(1, 3.0), (2, 4.0)]) is None


def test_cli_builds_the_site_and_refuses_bad_input(tmp_path: Path):
    store = fill_store(tmp_path / "s.sqlite").path
    runner = CliRunner()
    result = runner.invoke(
        app, ["site", str(tmp_path / "out"), "--store", str(store), "--pair", "dim-mo-xl/2:dit-xl/2"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "index.html").is_file() and "page(s)" in result.output
    bad = {
        ("--pair", "dit-xl/2"): "MODEL_A:MODEL_B",
        ("--baseline", str(tmp_path / "nope.csv")): "no such file",
        ("--metric", "no_such_metric"): "no measurement",
        ("--since", "yesterday"): "not an ISO date",
    }
    for extra, words in bad.items():
        result = runner.invoke(app, ["site", str(tmp_path / "bad"), "--store", str(store), *extra])
        assert result.exit_code == 2 and words in result.output, (extra, result.output)
    result = runner.invoke(app, ["site", str(tmp_path / "x"), "--store", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 2 and "no results store" in result.output


def _browser():
    """Playwright's sync API and the path of Chromium, or a skip saying what is missing."""
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (scripts/ci_browser.sh installs Debian's; MAMBABENCH_CHROMIUM)")
    return playwright


_PLOTS = """() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
    id: d.id, rendered: d.classList.contains('js-plotly-plot'),
    traces: (d.data || []).map(t => [t.meta, (t.x || []).length])}))"""


def test_every_page_loads_in_chromium_with_its_traces(built):
    playwright = _browser()
    root, _ = built
    started = time.monotonic()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            for name, plots in EXPECTED.items():
                page.goto((root / "site" / name).as_uri(), wait_until="load")
                assert errors == [] and page.evaluate("() => typeof window.Plotly") == "object", (name, errors)
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('.plotly-graph-div'))"
                    ".every(d => d.classList.contains('js-plotly-plot'))",
                    timeout=10_000,
                )
                found = {p["id"]: [tuple(t) for t in p["traces"]] for p in page.evaluate(_PLOTS)}
                assert found == plots, (name, json.dumps(found))
                assert page.locator("nav a").count() == len(EXPECTED)
                assert errors == [], (name, errors)
        finally:
            browser.close()
    assert time.monotonic() - started < 30  # the test's budget is ~15 s; this is the alarm

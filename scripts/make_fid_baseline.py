"""Write a table's FID rows as a committed baseline that ``results compare`` gates on.

    python scripts/make_fid_baseline.py
        Runs Teng et al.'s Table 6 in the smoke preset (built-in data, one thread, about 2 minutes) and writes
        results/baselines/teng-table6-smoke-fid.csv, which CI gates on (tests/test_tables.py) like the GMAC
        baseline. Say why in the commit when it changes.
    python scripts/make_fid_baseline.py --table teng-table6 --preset cpu-builtin --runs R [--out CSV]
        Writes the FID rows of a finished `ablations run --runs R` (its table index, every seed).

Tolerance (a column of the file, FID units):
- smoke: measured run-to-run on the project's 2-core Zen 4 VM, the smoke FIDs were bit-identical over three
  runs at one thread and moved by at most 6e-4 with two threads (another summation order); the tolerance is
  0.05, about 80x that and far below the 0.3-2.3 standard deviation across training seeds, so any change to
  what a variant computes shows while reduction-order noise does not;
- from a store with several seeds per variant: twice the standard deviation of that variant's FID over its
  seeds (at least 0.5): a rerun on other hardware follows another float trajectory, whose FID moves by about
  as much as another seed's would.

A seed whose FID is not a finite number (its run diverged: ``ablations.tables.runner``) has nothing to gate on:
it is left out of the file and of its variant's tolerance, and each one is named on stderr (variant, seed).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from ablations.tables import get_table
from ablations.tables.layout import index_file, measurements
from ablations.tables.runner import run_table
from results.export import write_csv
from results.store import ResultsStore

BASELINES = Path(__file__).resolve().parents[1] / "results" / "baselines"
SMOKE_TOLERANCE = 0.05


def fid_rows(store: ResultsStore, table: str, preset: str) -> list[dict]:
    """The newest FID row of every identity of ``table`` at ``preset`` in the store."""
    prefix, marker = f"{table}/", f" preset={preset} "
    rows = {
        r["variant"]: r
        for r in store.measurements()
        if r["metric"] == "fid" and r["variant"].startswith(prefix) and marker in r["variant"]
    }
    return list(rows.values())


def finished(rows: list[dict]) -> list[dict]:
    """The FID rows with a finite value; the others (diverged runs) named on stderr."""
    kept = []
    for row in rows:
        value = row.get("value")
        if isinstance(value, int | float) and math.isfinite(value):
            kept.append(row)
            continue
        where = row["variant"].split(" preset=")[0]  # table/variant@checkpoint seed=N (``layout.row_identity``)
        why = row.get("detail") if row.get("status") not in (None, "ok") else f"FID {value}"
        print(f"skipped {where}: no finite FID ({why}); not in the baseline", file=sys.stderr)
    return kept


def seed_tolerances(rows: list[dict]) -> dict[str, float]:
    """Twice each variant's FID standard deviation over seeds (at least 0.5), by row identity."""
    by_variant: dict[str, list[dict]] = {}
    for row in rows:
        by_variant.setdefault(row["variant"].split("@")[0], []).append(row)
    out = {}
    for group in by_variant.values():
        values = [r["value"] for r in group]
        spread = statistics.stdev(values) if len(values) >= 2 else 0.0
        out.update({r["variant"]: round(max(0.5, 2 * spread), 2) for r in group})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="teng-table6")
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--runs", type=Path, help="Read a finished run's rows from this runs folder (else: run it).")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or BASELINES / f"{args.table}-{args.preset}-fid.csv"
    table = get_table(args.table)
    if args.runs is None:
        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as scratch:
            store = ResultsStore(Path(scratch) / "store.sqlite")
            run_table(table, args.preset, root=Path(scratch) / "runs", store=store)
            rows = finished(fid_rows(store, args.table, args.preset))
        tolerance = {r["variant"]: SMOKE_TOLERANCE for r in rows}
    else:
        index = index_file(args.runs, table, table.presets[args.preset])
        if not index.is_file():
            raise SystemExit(f"{index}: no results of {args.table} at {args.preset} in {args.runs}")
        results = [r for r in json.loads(index.read_text()) if r.get("fid") is not None]
        rows = [dict(vars(m), run_id="") for r in results for m in measurements(r) if m.metric == "fid"]
        rows = finished(rows)  # the tolerance from finished seeds only
        tolerance = seed_tolerances(rows)
    if not rows:
        raise SystemExit(f"no FID rows of {args.table} at preset {args.preset}")
    write_csv(
        [dict(r, tolerance=tolerance[r["variant"]], run_id="", config="") for r in rows], out, extra=("tolerance",)
    )
    print(f"{len(rows)} rows -> {out}")


if __name__ == "__main__":
    main()

"""CI gate: every registry entry's counted GMACs and parameters equal the committed baseline."""

from __future__ import annotations

from bench.baseline import BASELINE, baseline_rows
from results.compare import compare, load


def test_counts_match_the_committed_baseline():
    failures = [c for c in compare(load(str(BASELINE)), baseline_rows()) if c.verdict != "ok"]
    assert not failures, "\n".join(f"{c.verdict}: {c.key} {c.baseline} -> {c.candidate}" for c in failures[:20])

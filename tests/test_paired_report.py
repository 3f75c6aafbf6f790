"""The paired seed comparison of a table's rows (ablations.tables.paired) and its place in the report: the
statistics on hand-computed cases, and the verdicts of report.csv / report.md for rows that reproduce the paper,
go the other way, straddle 0, lost a seed to divergence, have unpaired seeds or one seed only."""

from __future__ import annotations

import csv
import json
import math

import pytest

from ablations.tables import TABLES
from ablations.tables.layout import index_file
from ablations.tables.paired import T_975, pair, sign_flip_p, t_975, verdict
from ablations.tables.report import build_rows, write_report


def test_three_seeds_by_hand():
    """Differences 2, 3, 4: mean 3, sd 1, interval 3 ± t(0.975, 2) / sqrt(3) = 3 ± 4.302653 / 1.7320508."""
    paired = pair({0: 12.0, 1: 13.0, 2: 14.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert paired.differences == {0: 2.0, 1: 3.0, 2: 4.0} and paired.n == 3
    assert paired.mean == pytest.approx(3.0)
    low, high = paired.interval
    assert low == pytest.approx(3 - 2.4841377, abs=1e-6) and high == pytest.approx(3 + 2.4841377, abs=1e-6)
    # every difference positive: only the observed signs and their mirror image are as extreme, 2 of 8
    assert paired.p_sign_flip == pytest.approx(2 / 8)
    assert verdict(paired, "worse", higher_is_better=False) == "reproduced"  # FID up = worse, as the paper
    assert verdict(paired, "better", higher_is_better=False) == "opposite"
    assert verdict(paired, "worse", higher_is_better=True) == "opposite"  # GenEval up = better: against it
    # the paper claims no effect: the interval (excluding 0 here) decides, against the claim
    assert verdict(paired, "same", higher_is_better=False) == "worse, where the paper has none"
    assert verdict(pair({0: 10.0, 1: 11.0, 2: 9.5}, {0: 10.0, 1: 10.0, 2: 10.0}), "same", False) == (
        "reproduced (no effect)"
    )


def test_t_quantiles_and_sign_flips():
    assert T_975[:3] == (12.706205, 4.302653, 3.182446) and t_975(9) == 2.262157
    exact = {31: 2.0395134, 40: 2.0210754, 60: 2.0002978, 200: 1.9718962, 1000: 1.9623391}  # scipy.stats.t.ppf
    for df, value in exact.items():  # beyond the table: the expansion
        assert t_975(df) == pytest.approx(value, abs=2e-6), df
    with pytest.raises(ValueError):
        t_975(0)
    # 1, -2, 3: observed |sum| 2; the 8 flipped sums are ±2, ±4, ±6 and 0 twice (1 + 2 - 3): 6 of 8 as extreme
    assert sign_flip_p([1.0, -2.0, 3.0]) == pytest.approx(0.75)
    assert sign_flip_p([0.0, 0.0]) == 1.0 and sign_flip_p([5.0]) == 1.0
    assert sign_flip_p([1.0] * 6) == pytest.approx(2 / 64)  # the smallest p six seeds can give


def test_straddling_opposite_single_and_unpaired_seeds():
    straddle = pair({0: 11.0, 1: 9.0, 2: 10.5}, {0: 10.0, 1: 10.0, 2: 10.0})  # +1, -1, +0.5
    assert straddle.interval[0] < 0 < straddle.interval[1]
    assert verdict(straddle, "worse", higher_is_better=False) == "within spread"
    one = pair({0: 12.0, 3: 20.0}, {0: 10.0, 1: 10.0})
    assert one.n == 1 and one.interval is None and one.row_only == (3,) and one.reference_only == (1,)
    assert verdict(one, "worse", higher_is_better=False) == "one seed (no interval): worse"
    assert verdict(one, "worse", higher_is_better=True) == "one seed (no interval): better"
    none = pair({5: 12.0}, {0: 10.0})
    assert none.n == 0 and verdict(none, "worse", higher_is_better=False) == "no paired seeds"


def test_a_diverged_seed_is_listed_and_left_out():
    paired = pair({0: 12.0, 1: math.nan, 2: 14.0, 3: 13.0}, {0: 10.0, 1: 10.0, 2: 10.0, 3: math.inf})
    assert paired.diverged == (1,) and paired.reference_diverged == (3,)
    assert paired.differences == {0: 2.0, 2: 4.0} and paired.row_only == paired.reference_only == ()
    assert paired.mean == pytest.approx(3.0)
    assert paired.interval == pytest.approx((3 - 12.706205, 3 + 12.706205))  # sd sqrt(2), n 2: ± t(0.975, 1)


def _write(tmp_path, table, fids: dict[str, dict[int, float]], **extra) -> None:
    path = index_file(tmp_path, table, table.presets["smoke"])
    path.parent.mkdir(parents=True, exist_ok=True)
    results = [
        {"variant": k, "checkpoint": "final", "seed": s, "fid": f, "n_generated": 16, "n_reference": 16, **extra}
        for k, by_seed in fids.items()
        for s, f in by_seed.items()
    ]
    path.write_text(json.dumps(results))  # NaN as JSON's NaN, as json.dumps writes a diverged score


def test_report_verdicts_diverged_and_unpaired_rows(tmp_path):
    """Teng's Table 4 (paper: every ablation worse than the full model but no-pt, within 1%): one row per
    verdict, and a row with a diverged seed and unpaired seeds, through report.csv and report.md."""
    table = TABLES["teng-table4"]
    _write(
        tmp_path,
        table,
        {
            "full": {0: 50.0, 1: 52.0, 2: 51.0},
            "no-lfe": {0: 55.0, 1: 58.0, 2: 55.0},  # +5 +6 +4: worse, as the paper
            "no-ms": {0: 45.0, 1: 47.0, 2: 47.0},  # -5 -5 -4: better, against the paper
            "no-pt": {0: 50.0, 1: 52.5, 2: 51.0},  # the paper's 2.94 vs 2.92: no claimed effect
            # seed 1 diverged, 5 has no reference; the pairs 0 and 2 (+1, -0.5) straddle 0
            "no-lsc": {0: 51.0, 1: math.nan, 2: 50.5, 5: 70.0},
        },
    )
    rows = {r["variant"]: r for r in build_rows(table, "smoke", tmp_path)}
    assert rows["full"]["verdict"] == "reference" and rows["full"]["n_pairs"] is None
    assert rows["no-lfe"]["verdict"] == "reproduced" and rows["no-lfe"]["agrees"] == "yes"
    assert rows["no-lfe"]["mean_diff"] == pytest.approx(5.0) and rows["no-lfe"]["diff_seeds"] == "0:+5 1:+6 2:+4"
    assert rows["no-lfe"]["ci_low"] == pytest.approx(5 - 4.302653 / math.sqrt(3), abs=1e-6)
    assert rows["no-lfe"]["p_sign_flip"] == pytest.approx(0.25)
    assert rows["no-ms"]["verdict"] == "opposite" and rows["no-ms"]["ours_effect"] == "better"
    assert rows["no-ms"]["agrees"] == "no" and rows["no-ms"]["ci_high"] < 0
    assert (
        rows["no-pt"]["verdict"] == "reproduced (no effect)" and rows["no-pt"]["ci_low"] < 0 < rows["no-pt"]["ci_high"]
    )
    diverged = rows["no-lsc"]
    assert diverged["status"] == "diverged (seed 1)" and diverged["diverged_seeds"] == "1"
    assert diverged["seeds"] == 4 and diverged["ours_fid_seeds"] == "51 nan 50.5 70"  # listed, not dropped
    assert diverged["ours_fid"] == pytest.approx((51 + 50.5 + 70) / 3)  # the mean of the finished seeds
    assert diverged["n_pairs"] == 2 and diverged["diff_seeds"] == "0:+1 2:-0.5"
    assert diverged["unpaired_seeds"] == "row only: 5" and diverged["verdict"] == "within spread"
    assert diverged["ci_low"] < 0 < diverged["ci_high"] and diverged["agrees"] == "no"  # the paper: 6.23, worse

    _, folder = write_report(table, "smoke", tmp_path)
    with open(folder / "report.csv") as f:
        csv_rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert {"diff_seeds", "mean_diff", "ci_low", "ci_high", "p_sign_flip", "n_pairs", "verdict"} <= set(
        csv_rows["no-lfe"]
    )
    assert csv_rows["no-ms"]["verdict"] == "opposite" and csv_rows["no-lsc"]["status"] == "diverged (seed 1)"
    text = (folder / "report.md").read_text()
    assert "verdict rule:" in text and "diverged (NaN/inf; listed, left out of means and pairs): " in text
    line = next(line for line in text.splitlines() if line.startswith(f"| {rows['no-lsc']['label']} |"))
    assert "diverged (seed 1)" in line and "0:+1 2:-0.5" in line and "row only: 5" in line and "(1 diverged)" in line
    line = next(line for line in text.splitlines() if line.startswith(f"| {rows['no-lfe']['label']} |"))
    assert "| reproduced |" in line and f"[{5 - 4.302653 / math.sqrt(3):+.3g}, " in line
    assert (folder / "report.png").stat().st_size > 0


def test_a_result_marked_diverged_or_with_a_nan_loss_counts_as_diverged(tmp_path):
    table = TABLES["teng-table6"]
    _write(tmp_path, table, {"1234": {0: 50.0, 1: 51.0}, "12": {0: 52.0, 1: 53.0}})
    path = index_file(tmp_path, table, table.presets["smoke"])
    results = json.loads(path.read_text())
    results[0] |= {"diverged": "loss is nan at step 20", "fid": None}  # the reference's seed 0
    path.write_text(json.dumps(results))
    rows = {r["variant"]: r for r in build_rows(table, "smoke", tmp_path)}
    assert rows["1234"]["status"] == "diverged (seed 0)" and rows["1234"]["diverged_seeds"] == "0"
    assert rows["12"]["n_pairs"] == 1 and rows["12"]["unpaired_seeds"] == "reference diverged: 0"
    assert rows["12"]["verdict"] == "one seed (no interval): worse"

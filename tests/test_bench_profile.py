"""bench profile (time per op category and block type beside counted MACs), block-level efficiency and the
long-forward path of bench latency (estimate, one run, progress per block)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bench.block_timing import composed_t2md_speedup, t2md_blocks
from bench.cli import app
from bench.inputs import parse_resolution
from bench.latency import estimate_seconds, measure_latency
from bench.profile import CATEGORIES, op_category, profile_model
from bench.timer import gemm_rate
from results.store import ResultsStore


def test_op_categories():
    assert op_category("aten::addmm") == "linear"
    assert op_category("zoo::ssd_scan") == "scan"
    assert op_category("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert op_category("aten::layer_norm") == "norm/elementwise"
    assert op_category("aten::native_layer_norm") == "norm/elementwise"
    assert op_category("zoo::causal_conv1d") == "conv"


def test_profile_splits_time_and_macs_by_category_and_block():
    result = profile_model("t2md-tiny", parse_resolution("256"))
    categories = {r.name: r for r in result.rows if r.kind == "category"}
    blocks = {r.name: r for r in result.rows if r.kind == "block"}
    assert set(categories) == set(CATEGORIES)
    assert sum(r.share_of_time for r in categories.values()) == pytest.approx(1.0)
    assert set(blocks) == {"T2IBlock[SA]", "T2IBlock[HM]", "T2IBlock[WM]"}
    assert all(r.calls == 1 and r.macs > 0 and r.seconds > 0 for r in blocks.values())
    # every counted MAC of the model is in some category; the blocks hold nearly all of them
    counted = sum(r.macs or 0 for r in categories.values())
    assert counted == pytest.approx(result.total_macs, rel=1e-6)
    assert 0.5 * result.total_macs < sum(r.macs for r in blocks.values()) <= result.total_macs
    assert categories["scan"].macs > 0 and categories["attention"].macs > 0
    assert categories["scan"].seconds > 0 and result.gemm_gmacs_per_s > 0


def test_profile_cli_writes_rows_to_the_store(tmp_path):
    store = tmp_path / "s.sqlite"
    out = CliRunner().invoke(app, ["profile", "-m", "dim-mo-tiny", "-r", "32", "--json", "--store", str(store)])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines() if line.startswith("{")]
    assert {r["kind"] for r in rows} == {"category", "block"}
    stored = ResultsStore(store).measurements()
    assert len(stored) == len(rows) and {m["metric"] for m in stored} == {"profile_category_s", "profile_block_s"}
    bad = CliRunner().invoke(app, ["profile", "-m", "no-such-model"])
    assert bad.exit_code == 2


def test_full_width_t2md_blocks_and_composed_speedup():
    """Full-width blocks at a 4x4 token grid (64 px): MACs counted, time measured, the shared projections
    leave the Mamba blocks fewer MACs than the per-direction (reference) path."""
    rows = t2md_blocks("64", parts=("mixer",), kinds=("HM",), paths=("fast", "reference"))
    fast, reference = rows
    assert fast.tokens == 16 and fast.macs < reference.macs and fast.seconds > 0 and fast.gemm_gmacs_per_s > 0
    composed = composed_t2md_speedup("64")
    assert composed["composed_measured_speedup"] > 0 and composed["composed_counted_ratio"] < 1  # tiny grid: SA wins
    assert gemm_rate(tokens=64) > 0


def test_latency_estimate_and_single_run_with_progress():
    macs, gemm, floor_s = estimate_seconds("t2md-tiny", parse_resolution("512"))
    assert macs > 0 and gemm > 0 and floor_s == pytest.approx(macs / gemm / 1e9)
    seen = []
    result = measure_latency(
        "t2md-tiny", parse_resolution("512"), single_run=True, on_block=lambda done, total: seen.append((done, total))
    )
    assert result.runs == 1 and seen == [(1, 3), (2, 3), (3, 3)]


def test_latency_cli_prints_the_estimate_and_rejects_bad_threads():
    out = CliRunner().invoke(app, ["latency", "-m", "dit-tiny", "-r", "32", "--min-time", "0"])
    assert out.exit_code == 0 and "TMAC counted per forward" in out.output
    bad_threads = CliRunner().invoke(app, ["latency", "-m", "dit-tiny", "--threads", "0"])  # the entry point: exit 2
    assert bad_threads.exit_code == 2 and "--threads 0" in bad_threads.output
    for device, message in (("tpu", "not a device"), ("cuda", "no CUDA GPU")):
        bad = CliRunner().invoke(app, ["latency", "-m", "dit-tiny", "--device", device])
        if device == "cuda" and bad.exit_code == 0:  # a machine with a GPU
            continue
        assert bad.exit_code == 2 and message in bad.output and "Traceback" not in bad.output


def test_console_entry_point_exits_with_the_commands_code():
    """``bench`` ends with os._exit (no interpreter teardown): the exit code and the output survive it."""
    import subprocess
    import sys

    argv = ["bench", "latency", "-m", "dit-tiny", "--device", "tpu"]
    code = f"import sys; from bench.cli import run; sys.argv = {argv!r}; run()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not a device" in done.stderr

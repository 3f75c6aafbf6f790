"""bench sweep: failure rows, skipping after OOM, resuming, CSV and plots."""

from __future__ import annotations

from pathlib import Path

from bench.plots import crossover, plot_sweep
from bench.sweep import SweepSettings, classify_failure, read_rows, run_sweep


def fake_case(model, resolution, metric, settings):
    """Latency grows quadratically for 'attn', linearly for 'ssm'; 'huge' runs out of memory at 64 px."""
    side = int(resolution.split("x")[0])
    if model == "huge" and side >= 64:
        return "OOM", "out of memory", {}
    if model == "crash":
        return "error", "RuntimeError: boom", {}
    tokens = (side // 16) ** 2
    cost = tokens**2 / 50 if model == "attn" else 2.0 * tokens
    values = {"gmacs": cost, "tokens": tokens} if metric == "flops" else {"median_ms": cost, "iqr_ms": 0.1}
    return "ok", "", values


def test_oom_skips_larger_sizes_and_rerun_resumes(tmp_path: Path):
    out = tmp_path / "sweep.csv"
    calls = []

    def counting(*args):
        calls.append(args[:3])
        return fake_case(*args)

    rows = run_sweep(["huge", "crash"], ["128", "32", "64"], ["latency"], out, SweepSettings(), run_case=counting)
    status = {(r["model"], r["resolution"]): r["status"] for r in rows}
    assert status == {
        ("huge", "32x32"): "ok", ("huge", "64x64"): "OOM", ("huge", "128x128"): "skipped",
        ("crash", "32x32"): "error", ("crash", "64x64"): "error", ("crash", "128x128"): "error",
    }  # fmt: skip
    assert len(calls) == 5  # the skipped case never ran
    assert len(read_rows(out)) == 6
    again = run_sweep(["huge", "crash"], ["32", "64", "128"], ["latency"], out, run_case=counting)
    assert {r["model"] for r in again} == {"crash"} and len(calls) == 8  # error rows are retried, OOM rows kept
    assert len(run_sweep(["huge"], ["32"], ["latency"], out, force=True, run_case=counting)) == 1


def test_classify_failure():
    assert classify_failure(-9, "")[0] == "OOM"
    assert classify_failure(1, "torch.OutOfMemoryError: CUDA out of memory. Tried")[0] == "OOM"
    assert classify_failure(1, "Traceback\nValueError: bad size") == ("error", "ValueError: bad size")


def test_crossover_and_plots(tmp_path: Path):
    out = tmp_path / "sweep.csv"
    run_sweep(["attn", "ssm"], ["64", "128", "256", "512"], ["flops", "latency"], out, run_case=fake_case)
    rows = read_rows(out)
    lat = {m: sorted((float(r["pixels"]), float(r["median_ms"])) for r in rows
                     if r["model"] == m and r["metric"] == "latency") for m in ("attn", "ssm")}  # fmt: skip
    # attn = t^2/50 and ssm = 2t with t = (side/16)^2 tokens cross at t = 100, a 160 px side; both are power
    # laws, so interpolating in log-log space between 128 and 256 px is exact
    assert abs(crossover(lat["ssm"], lat["attn"]) ** 0.5 - 160) < 1e-6
    paths = plot_sweep(out, tmp_path, [("ssm", "attn")])
    assert [p.name for p in paths] == ["cost_vs_tokens.png", "latency_vs_resolution.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_real_subprocess_case(tmp_path: Path):
    out = tmp_path / "sweep.csv"
    rows = run_sweep(["dit-tiny"], ["64"], ["flops"], out, SweepSettings(timeout_s=300))
    assert rows[0]["status"] == "ok" and float(rows[0]["gmacs"]) > 0 and int(rows[0]["tokens"]) == 16

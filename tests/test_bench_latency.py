"""bench latency: statistics are measured, the unit is what was asked, backends are recorded."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from bench.cli import app
from bench.inputs import Resolution
from bench.latency import measure_latency
from mambabench.errors import UserError
from results.store import ResultsStore


def test_forward_latency_records_statistics_and_backends():
    result = measure_latency("dim-teng-tiny", Resolution(8, 8), min_time=0.0, min_runs=3, threads=1)
    assert result.runs >= 3 and 0 < result.min_s <= result.median_s
    assert result.iqr_s >= 0 and result.samples_per_s == pytest.approx(1 / result.median_s)
    assert result.backends["selective_scan"] == "cpu-cpp" and result.unit == "forward"


def test_sampling_loop_runs_steps_times_the_model(monkeypatch):
    calls = []
    original = torch.nn.Module.__call__

    def counting(self, *args, **kwargs):
        if type(self).__name__ == "DiT":
            calls.append(args[0].shape[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", counting)
    result = measure_latency("dit-tiny", Resolution(64, 64), steps=3, cfg=True, min_time=0.0, min_runs=2, max_runs=2)
    assert result.unit == "3-step sampling (CFG)"
    assert calls == [2] * 3 * (1 + 2)  # warm-up + 2 timed runs, 3 evaluations each, CFG doubles the batch


def test_cli_json_and_errors():
    ok = CliRunner().invoke(app, ["latency", "-m", "uvit-tiny", "-r", "8", "--min-time", "0", "--json"])
    assert ok.exit_code == 0 and '"unit": "forward"' in ok.output and '"device": "cpu"' in ok.output
    bad = CliRunner().invoke(app, ["latency", "-m", "uvit-tiny", "--dtype", "float8"])
    assert bad.exit_code == 2 and "dtype" in bad.output


def test_clip_latency_and_the_entry_s_own_clip_length():
    result = measure_latency("dim-mo-video-tiny", Resolution(8, 12, frames=3), min_time=0.0, min_runs=2, max_runs=2)
    assert result.resolution == "3x8x12" and result.runs == 2 and result.backends["selective_scan"] == "cpu-cpp"
    ok = CliRunner().invoke(app, ["latency", "-m", "latte-tiny", "-r", "8", "--min-time", "0", "--json", "--no-store"])
    assert ok.exit_code == 0 and '"resolution": "4x8x8"' in ok.output


def test_cli_times_one_run_when_the_gemm_floor_is_over_30_s(monkeypatch):
    """`bench latency` on a CPU: a case whose counted MACs at this CPU's GEMM peak take over 30 s runs once, with
    a per-block progress bar in the table mode (the floor is faked here: 40 s)."""
    monkeypatch.setattr("bench.latency.estimate_seconds", lambda *args, **kwargs: (1e12, 50.0, 40.0))
    args = ["latency", "-m", "dit-tiny", "-r", "32", "--no-store"]
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "timing one run" in table.output and "2/2 blocks" in table.output
    rows = CliRunner().invoke(app, [*args, "--json"])
    assert rows.exit_code == 0 and json.loads(rows.output)["runs"] == 1


def test_training_step_runs_backward_and_adamw(monkeypatch):
    """``train=True`` times forward + backward + AdamW: every step moves the weights, the backward of the scan
    runs, and the unit says so."""
    steps, backward_calls = [], []
    original_step = torch.optim.AdamW.step
    original_backward = torch.Tensor.backward

    def counting_step(self, *args, **kwargs):
        steps.append(1)
        return original_step(self, *args, **kwargs)

    def counting_backward(self, *args, **kwargs):
        backward_calls.append(1)
        return original_backward(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting_step)
    monkeypatch.setattr(torch.Tensor, "backward", counting_backward)
    result = measure_latency("dim-teng-tiny", Resolution(8, 8), train=True, min_time=0.0, min_runs=2, max_runs=2)
    assert result.unit == "train step" and result.runs == 2
    assert len(steps) == len(backward_calls) == 3  # the warm-up and two timed steps
    with pytest.raises(UserError, match="--train times one training step"):
        measure_latency("dit-tiny", Resolution(32, 32), train=True, steps=2)


def test_cli_train_rows_carry_their_unit_and_gemm_share(tmp_path):
    store = tmp_path / "s.sqlite"
    args = ["latency", "-m", "dit-tiny", "-r", "32", "--min-time", "0", "--train", "--store", str(store)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0 and "TMAC counted per training step (3x the forward's)" in out.output
    rows = {m["metric"]: m for m in ResultsStore(store).measurements()}
    assert set(rows) == {"latency_median", "latency_iqr", "latency_min", "throughput", "gemm_share"}
    assert rows["latency_median"]["variant"] == "threads=1 unit=train step"
    assert 0 < rows["gemm_share"]["value"] < 1
    bad = CliRunner().invoke(app, ["latency", "-m", "dit-tiny", "--train", "--cfg", "--steps", "2"])
    assert bad.exit_code == 2 and "--train times one training step" in bad.output


def test_sweep_train_metric_rows():
    """A sweep's ``train`` case becomes train_step_* store rows, gated like latencies."""
    from results.compare import rule_for
    from results.sweep_csv import row_measurements

    row = dict(
        model="dit-tiny",
        resolution="32x32",
        metric="train",
        batch="1",
        device="cpu",
        dtype="float32",
        threads="1",
        status="ok",
        detail="",
        median_ms="4.0",
        iqr_ms="0.2",
        samples_per_s="250.0",
    )
    metrics = {m.metric: m.value for m in row_measurements(row)}
    assert metrics == {"train_step_median": 4.0, "train_step_iqr": 0.2, "train_throughput": 250.0}
    assert rule_for("train_step_median").worse == "higher" and rule_for("train_throughput").worse == "lower"

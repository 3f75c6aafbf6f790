"""Failures of the bench commands: one-line errors with exit 2 (never a traceback), failed cases exit 1 and
are retried on a rerun, a killed sweep loses and duplicates nothing, two sweeps on one CSV share the work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import zoo
from bench.cli import app
from bench.inputs import example_inputs, parse_resolution
from bench.sweep import SweepSettings, finished_keys, run_sweep
from mambabench.errors import UserError, run_app
from results.sweep_csv import read_rows


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`bench ARGS` through the console entry's error handling, in this process: (exit code, all output)."""
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as exit_info:
        run_app(app)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


@pytest.mark.parametrize(
    "args, expected",
    [
        (["flops", "-m", "dit-s/2", "--batch", "0", "--no-store"], "--batch 0: must be a whole number >= 1"),
        (["latency", "-m", "dit-tiny", "-r", "32", "--batch", "-1"], "--batch -1"),
        (["latency", "-m", "dit-tiny", "-r", "32", "--threads", "0"], "--threads 0"),
        (["latency", "-m", "dit-tiny", "-r", "32", "--device", "tpu"], "not a device; use cpu or cuda"),
        (["memory", "-m", "no-such-model"], "unknown model 'no-such-model'"),
        (["sweep", "-m", "no-such-model", "-r", "32"], "unknown model 'no-such-model'"),
        (["profile", "-m", "dit-tiny", "--threads", "0"], "--threads 0"),
        (["paper", "teng-table1", "--threads", "0"], "--threads 0"),
        (["flops", "-m", "dit-s/2", "-r", "3840x2160", "--counter", "fvcore", "--no-store"], "use the meta counter"),
        # --frames: video entries only, whole clips, and a size the patch grid takes
        (
            ["flops", "-m", "dit-tiny", "-r", "32", "--frames", "4", "--no-store"],
            "dit-tiny is an image model and takes no frame count (4x32x32): drop --frames, or choose a video entry",
        ),
        (["latency", "-m", "latte-tiny", "-m", "dit-tiny", "-r", "8", "--frames", "2"], "dit-tiny is an image model"),
        (["memory", "-m", "dim-mo-video-tiny", "-r", "8", "--frames", "0"], "--frames 0: a clip needs at least 1"),
        (["sweep", "-m", "dit-tiny", "-m", "latte-tiny", "-r", "8", "--frames", "2"], "dit-tiny is an image model"),
        (["sweep", "--preset", "video", "--frames", "16"], "--frames goes with --model"),
        (["flops", "-m", "latte-tiny", "-r", "2x8x8", "--frames", "3", "--no-store"], "says 2 frames and --frames"),
        (["flops", "-m", "latte-tiny", "-r", "7", "--frames", "3", "--no-store"], "cannot take 3x7x7 px"),
        (["flops", "-m", "latte-xl/2", "-r", "250", "--no-store"], "width 250 -> try [224, 240, 256, 272]"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, args, expected):
    code, output = _cli(monkeypatch, capsys, *args)
    assert code == 2 and expected in " ".join(output.split()), output
    assert "Traceback" not in output and len(output.strip().splitlines()) <= 2  # rich may wrap one long line


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
@pytest.mark.parametrize("command", ["latency", "memory", "sweep"])
def test_cuda_without_a_gpu(monkeypatch, capsys, command):
    code, output = _cli(monkeypatch, capsys, command, "-m", "dit-tiny", "-r", "32", "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in output


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.delenv("MAMBABENCH_DEBUG", raising=False)  # --debug sets it for the process: restored after
    monkeypatch.setattr(sys, "argv", ["bench", "flops", "-m", "dit-s/2", "--batch", "0", "--debug"])
    with pytest.raises(UserError, match="--batch 0"):
        run_app(app)


def test_a_failed_sweep_case_exits_1_and_memory_shows_the_estimate(monkeypatch, capsys, tmp_path):
    def timing_out(model, resolution, metric, settings):
        return "timeout", "over 1 s", {}

    monkeypatch.setattr("bench.cli.memory.run_case_subprocess", timing_out)
    code, output = _cli(
        monkeypatch, capsys, "memory", "-m", "dit-tiny", "-r", "32", "--store", str(tmp_path / "s.sqlite")
    )
    assert code == 1 and "timeout" in output
    row = next(line for line in output.splitlines() if "dit-tiny" in line)
    assert sum(cell.strip().isdigit() for cell in row.split("│")) >= 2  # both estimates, counted on meta
    from results.store import ResultsStore

    stored = {m["metric"]: m["status"] for m in ResultsStore(tmp_path / "s.sqlite").measurements()}
    assert stored == {"memory": "timeout", "memory_inference_estimate": "ok", "memory_train_estimate": "ok"}


def test_meta_forward_leaves_real_forwards_working():
    """A count under `with torch.device("meta")` must not leave meta tensors in the caches (scan orders, position
    tables) that the next real forward of the same process reads."""
    for name in ("dim-teng-tiny", "dit-tiny"):
        entry = zoo.get_entry(name)
        with torch.device("meta"):
            model = entry.build().eval()
            with torch.no_grad():
                model(*example_inputs(entry, parse_resolution("32"), model.patch_size, 1, device="meta"))
        model = entry.build().eval()
        x, t, y = example_inputs(entry, parse_resolution("32"), model.patch_size, 1, device="cpu")
        with torch.no_grad():
            assert torch.isfinite(model(torch.randn_like(x), t, y)).all()


_SLOW_SWEEP = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from bench.sweep import run_sweep

    def case(model, resolution, metric, settings):
        with open(sys.argv[2], "a") as log:
            log.write(f"{model} {resolution}\\n")
        time.sleep(0.4)
        return "ok", "", {"median_ms": 1.0, "iqr_ms": 0.1}

    run_sweep(["a", "b"], ["32", "64", "96", "128"], ["latency"], Path(sys.argv[1]), run_case=case,
              on_row=lambda row: print(row["model"], row["resolution"], flush=True))
""")


def _sweep_process(csv: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _SLOW_SWEEP, str(csv), str(log)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )


def test_killed_sweep_resumes_without_loss_or_duplicates(tmp_path):
    csv, log = tmp_path / "sweep.csv", tmp_path / "cases.log"
    first = _sweep_process(csv, log)
    for _ in range(3):
        first.stdout.readline()
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert len(read_rows(csv)) >= 3
    second = _sweep_process(csv, log)
    second.wait(timeout=60)
    keys = [(r["model"], r["resolution"]) for r in read_rows(csv)]
    assert len(keys) == len(set(keys)) == 8  # every case once
    measured = log.read_text().splitlines()
    assert len(measured) - len(set(measured)) <= 1  # only the case the kill interrupted ran twice


def test_two_sweeps_on_one_csv_do_not_run_a_case_twice(tmp_path):
    csv, log = tmp_path / "sweep.csv", tmp_path / "cases.log"
    sweeps = [_sweep_process(csv, log) for _ in range(2)]
    for sweep in sweeps:
        sweep.wait(timeout=60)
    measured = log.read_text().splitlines()
    assert len(measured) == len(set(measured)) == 8
    assert len(finished_keys(csv)) == 8 and len(read_rows(csv)) == 8


def test_error_rows_are_retried_on_a_rerun(tmp_path):
    outcomes = iter([("error", "RuntimeError: flaky", {}), ("ok", "", {"median_ms": 2.0, "iqr_ms": 0.1})])
    csv = tmp_path / "sweep.csv"

    def run():
        return run_sweep(
            ["m"],
            ["32"],
            ["latency"],
            csv,
            SweepSettings(),
            run_case=lambda *args: next(outcomes),
        )

    assert [r["status"] for r in run()] == ["error"]
    assert [r["status"] for r in run()] == ["ok"]
    assert run() == [] and [r["status"] for r in read_rows(csv)] == ["error", "ok"]

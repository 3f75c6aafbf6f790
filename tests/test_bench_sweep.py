"""bench sweep: failure rows, skipping after OOM, resuming, CSV and plots."""

from __future__ import annotations

from pathlib import Path

import pytest
from figures import drawn_lines

from bench.inputs import parse_resolution
from bench.plots import crossover, crossovers, plot_sweep
from bench.presets import PRESETS, SweepGroup, resolve_groups
from bench.sweep import SweepSettings, classify_failure, run_sweep
from mambabench.errors import UserError
from results.sweep_csv import read_rows, row_measurements


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
        ("huge", "32x32"): "ok",
        ("huge", "64x64"): "OOM",
        ("huge", "128x128"): "skipped",
        ("crash", "32x32"): "error",
        ("crash", "64x64"): "error",
        ("crash", "128x128"): "error",
    }
    assert len(calls) == 5  # the skipped case never ran
    assert len(read_rows(out)) == 6
    again = run_sweep(["huge", "crash"], ["32", "64", "128"], ["latency"], out, run_case=counting)
    assert {r["model"] for r in again} == {"crash"} and len(calls) == 8  # error rows are retried, OOM rows kept
    assert len(run_sweep(["huge"], ["32"], ["latency"], out, force=True, run_case=counting)) == 1


def test_classify_failure():
    assert classify_failure(-9, "")[0] == "OOM"
    assert classify_failure(1, "torch.OutOfMemoryError: CUDA out of memory. Tried")[0] == "OOM"
    assert classify_failure(1, "Traceback\nValueError: bad size") == ("error", "ValueError: bad size")


def test_crossover_and_plots(tmp_path: Path, saved_figures):
    out = tmp_path / "sweep.csv"
    run_sweep(["attn", "ssm"], ["64", "128", "256", "512"], ["flops", "latency"], out, run_case=fake_case)
    rows = read_rows(out)
    lat = {
        m: sorted(
            (float(r["pixels"]), float(r["median_ms"])) for r in rows if r["model"] == m and r["metric"] == "latency"
        )
        for m in ("attn", "ssm")
    }
    # attn = t^2/50 and ssm = 2t with t = (side/16)^2 tokens cross at t = 100, a 160 px side; both are power
    # laws, so interpolating in log-log space between 128 and 256 px is exact
    assert abs(crossover(lat["ssm"], lat["attn"]) ** 0.5 - 160) < 1e-6
    paths = plot_sweep(out, tmp_path, [("ssm", "attn")])
    assert [p.name for p in paths] == ["cost_vs_tokens.png", "latency_vs_resolution.png"]
    assert all(p.is_file() for p in paths) and len(saved_figures) == 2
    cost, latency = (drawn_lines(f) for f in saved_figures)
    assert cost["ssm"] == ([16.0, 64.0, 256.0, 1024.0], [32.0, 128.0, 512.0, 2048.0])  # x: tokens
    assert latency["attn"] == ([64.0, 128.0, 256.0, 512.0], [ms for _, ms in lat["attn"]])  # x: the side in px
    marks = [ln.get_xdata()[0] for ln in saved_figures[1].axes[0].get_lines() if ln.get_label().startswith("_")]
    assert len(marks) == 1 and abs(marks[0] - 160) < 1e-6  # the crossover, marked where it is
    ax = saved_figures[1].axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log") and "ms" in ax.get_ylabel()


def test_real_subprocess_case(tmp_path: Path):
    out = tmp_path / "sweep.csv"
    rows = run_sweep(["dit-tiny"], ["64"], ["flops"], out, SweepSettings(timeout_s=300))
    assert rows[0]["status"] == "ok" and float(rows[0]["gmacs"]) > 0 and int(rows[0]["tokens"]) == 16


def clip_case(model, resolution, metric, settings):
    """Clips: per frame, 'attn' costs t²/50 and 'ssm' 2t for t = (side/16)² tokens; a clip costs T frames."""
    res = parse_resolution(resolution)
    per_frame = (res.width // 16) ** 2
    cost = res.frames * (per_frame**2 / 50 if model == "attn" else 2.0 * per_frame)
    return "ok", "", {"gmacs": cost, "tokens": res.frames * per_frame}


def test_clip_rows_carry_frames_and_each_clip_length_is_its_own_line(tmp_path: Path):
    out = tmp_path / "sweep.csv"
    sizes = ["16x64x64", "16x128x128", "16x256x256", "64x128x128", "64x256x256"]
    rows = run_sweep(["attn", "ssm"], sizes, ["flops"], out, run_case=clip_case)
    assert ("64x128x128", 64, 128 * 128) in {(r["resolution"], r["frames"], r["pixels"]) for r in rows}
    assert run_sweep(["attn", "ssm"], sizes, ["flops"], out, run_case=clip_case) == []  # frames are in the key
    assert [r["resolution"] for r in run_sweep(["ssm"], ["32x64x64"], ["flops"], out, run_case=clip_case)] == [
        "32x64x64"
    ]
    # 16x256² and 64x128² have the same token count; lines of one clip length cross where a frame has 100
    # tokens (160 px), which only holds if 16- and 64-frame rows are never joined into one line
    found = crossovers(out, [("ssm", "attn")])
    assert sorted((c["frames"], round(c["side_px"], 6)) for c in found if c["plot"] == "cost") == [(16, 160), (64, 160)]
    assert [p.name for p in plot_sweep(out, tmp_path, [("ssm", "attn")])] == ["cost_vs_tokens.png"]
    store_rows = row_measurements(rows[0])
    assert store_rows[0].resolution == rows[0]["resolution"] and store_rows[0].config["frames"] == rows[0]["frames"]


def test_groups_take_frames_per_model_and_the_video_preset_covers_the_issue_shapes():
    groups = resolve_groups([SweepGroup(("dit-tiny", "latte-tiny"), ("8", "16x8"), ("flops",))])
    assert [(g.models, g.resolutions) for g in groups] == [
        (("dit-tiny",), ("8x8", "16x8")),
        (("latte-tiny",), ("4x8x8", "4x16x8")),
    ]
    (group,) = resolve_groups([SweepGroup(("latte-tiny",), ("8", "16x8"), ("flops",))], frames=[2, 3])
    assert group.resolutions == ("2x8x8", "3x8x8", "2x16x8", "3x16x8")
    with pytest.raises(UserError, match="dit-tiny is an image model"):
        resolve_groups([SweepGroup(("dit-tiny",), ("8",), ("flops",))], frames=[2])
    video = resolve_groups(list(PRESETS["video"].groups))
    assert {g.models[0] for g in video} == {"latte-xl/2", "dim-mo-video-xl/2"}
    assert all({"16x256x256", "16x512x512", "64x256x256"} <= set(g.resolutions) for g in video)
    assert PRESETS["video"].pairs == (("dim-mo-video-xl/2", "latte-xl/2"),)
    quick = resolve_groups(list(PRESETS["quick"].groups))  # stays image-only
    assert all(parse_resolution(r).frames == 0 for g in quick for r in g.resolutions)


def test_cli_sweep_of_clips(tmp_path: Path, monkeypatch):
    """`bench sweep --frames` end to end, the counts made in this process (``bench.case.run_case``, what the
    case subprocess runs; test_real_subprocess_case covers the subprocess)."""
    from typer.testing import CliRunner

    from bench.case import run_case
    from bench.cli import app
    from results.store import ResultsStore

    def in_process(model, resolutions, settings):
        return {
            r: ("ok", "", run_case(model, r, "flops", settings.batch, "cpu", "float32", 1, 0.0)) for r in resolutions
        }

    monkeypatch.setattr("bench.sweep.run_flops_batch", in_process)
    out, store = tmp_path / "sweep.csv", tmp_path / "s.sqlite"
    args = [
        "sweep",
        "-m",
        "latte-tiny",
        "-r",
        "8",
        "--frames",
        "2",
        "--frames",
        "3",
        "--metric",
        "flops",
        "--out",
        str(out),
        "--store",
        str(store),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {r["resolution"]: r for r in read_rows(out)}
    assert set(rows) == {"2x8x8", "3x8x8"} and rows["3x8x8"]["tokens"] == "48" and rows["3x8x8"]["frames"] == "3"
    assert {m["resolution"] for m in ResultsStore(store).measurements()} == {"2x8x8", "3x8x8"}


def test_the_field_preset_has_every_token_mixer_and_shapes_each_model_takes():
    """`bench sweep --preset field`: softmax attention, Mamba-1, Mamba-2 and linear attention families, each
    size one its model accepts (SANA's 32x latents need sides divisible by 32), each pair a softmax baseline."""
    from zoo.registry import get_entry

    field = PRESETS["field"]
    groups = resolve_groups(list(field.groups))  # raises on a size a model cannot take
    models = {m for g in groups for m in g.models}
    families = {get_entry(m).family for m in models}
    assert {"dit", "pixart", "dim-mo", "dim-teng", "zigma", "dis", "t2md", "sana"} <= families
    assert all(get_entry(b).family in ("dit", "pixart") for _, b in field.pairs)
    assert any("4096x4096" in g.resolutions for g in groups) and field.cases == len(
        {(m, r) for g in groups for m in g.models for r in g.resolutions}
    )

"""bench memory (estimate on meta, measurement in a fresh process), the paper comparisons, the sequence
length column, CSV column migration, and `results plot`."""

from __future__ import annotations

import csv

import pytest
from figures import drawn_lines

from bench.flops import count_flops
from bench.inputs import parse_resolution
from bench.memory import estimate_memory
from bench.paper import (
    composed_block_seconds,
    dig_claims,
    mo_table4,
    paper_measurements,
    sana_claims,
    t2md_table3,
    teng_table1,
)
from bench.sweep import SweepSettings, run_case_subprocess, run_sweep
from mambabench.errors import UserError
from results.plot import plot_metric
from results.store import Measurement, ResultsStore
from results.sweep_csv import COLUMNS, read_rows


def test_memory_estimate_orders():
    inference, train = estimate_memory("dit-tiny", parse_resolution("64"))
    weights = sum(p.numel() * 4 for p in __import__("zoo").create_model("dit-tiny").parameters()) / 2**20
    assert inference > weights and train > 4 * weights and train > inference
    bigger = estimate_memory("dit-tiny", parse_resolution("128"))
    assert bigger[1] > train  # activations grow with the token count


def test_memory_measured_in_a_fresh_process():
    status, detail, values = run_case_subprocess("dit-tiny", "64x64", "memory", SweepSettings())
    assert status == "ok", detail
    assert values["train_peak_mb"] >= values["inference_peak_mb"] >= values["baseline_mb"] > 50
    assert values["source"] == "peak RSS of a fresh process"


def test_sequence_length_counts_padding_and_prefix_tokens():
    dim = count_flops("dim-teng-tiny", parse_resolution("8"))
    dit = count_flops("dit-tiny", parse_resolution("64"))
    assert dit.seq_len == 16  # 8x8 latent, patch 2: patches only
    assert dim.seq_len > 16  # time/class tokens and end-of-line pads come on top of the 4x4 patches


def test_t2md_table3_counted_ratio_tracks_the_paper():
    rows = {r["resolution"]: r for r in t2md_table3()}
    # projections per direction (the paper's accounting) track the paper's H100 speedups ...
    assert rows["2048x2048"]["counted_mac_ratio_per_direction_proj"] == pytest.approx(1.46, abs=0.02)
    assert rows["3840x2160"]["counted_mac_ratio_per_direction_proj"] == pytest.approx(2.12, abs=0.02)
    # ... and projecting once for both directions (same function) leaves fewer MACs to T2MD
    assert rows["2048x2048"]["counted_mac_ratio"] == pytest.approx(1.80, abs=0.02)
    assert rows["3840x2160"]["counted_mac_ratio"] == pytest.approx(2.55, abs=0.02)
    assert rows["3840x2160"]["paper_speedup"] == 2.1


def test_dig_claims_beside_counted_macs():
    """DiG's GPU speed-up claims (2.5x at 1792 px, 1.8x at 2048 px) beside our counted MAC ratios: gated linear
    attention leaves DiG far fewer MACs than DiT's softmax attention at these sizes."""
    rows = {r["resolution"]: r for r in dig_claims()}
    assert rows["1792"]["paper_speedup"] == 2.5 and rows["2048"]["paper_speedup"] == 1.8
    assert rows["1792"]["counted_mac_ratio"] > 2.5 and rows["2048"]["counted_mac_ratio"] > 1.8
    assert rows["2048"]["dit_gmacs"] == pytest.approx(24624.2, rel=1e-3)  # DiT-XL/2 at 2048: the sweep's count


def test_sana_claims_beside_counted_macs():
    """SANA's Table 14 (A100 throughput, latency, speed-up over FLUX-dev) beside our counted MACs: PixArt's softmax
    attention over 16x more tokens leaves it 5.8x Sana-0.6B's MACs at 1024 px and 36x at 4096 px; FLUX has no
    entry; the paper's Table 8 MACs are about twice our counts for both designs."""
    rows = {(r["resolution"], r["paper"]): r for r in sana_claims()}
    assert len(rows) == 8
    assert rows["1024", "Sana-0.6B"]["paper_x_flux"] == 43.0 and rows["4096", "Sana-0.6B"]["paper_x_flux"] == 104.0
    assert rows["4096", "PixArt-Sigma"]["paper_latency_s"] == 186.0 and rows["4096", "FLUX-dev"]["paper_params_b"] == 12
    assert rows["1024", "FLUX-dev"]["gmacs"] == "no entry" and rows["4096", "FLUX-dev"]["model"] == "no entry"
    small, large = (rows[res, "Sana-0.6B"]["pixart_macs_over_model"] for res in ("1024", "4096"))
    assert small == pytest.approx(5.80, abs=0.02) and large == pytest.approx(36.2, abs=0.1)
    assert rows["4096", "Sana-1.6B"]["model"] == "sana-1600m-4k" and rows["1024", "Sana-1.6B"]["params_m"] == 1604.5
    assert all(1.9 < rows["1024", p]["paper_t8_over_ours"] < 2.0 for p in ("Sana-0.6B", "PixArt-Sigma"))
    stored = paper_measurements("sana-claims", list(rows.values()), "meta", "float32", 1)
    assert {m.model for m in stored} == {"sana-600m", "sana-1600m", "sana-1600m-4k", "pixart-alpha-xl/2-1024-ms"}


def test_composed_block_timing_of_text_models():
    """--measure on a CPU: one block of a SANA (or PixArt: the same block signature) entry timed at the token grid
    of the resolution, composed by depth."""
    timed = composed_block_seconds("sana-tiny", "256")
    assert timed["depth"] == 2 and timed["composed_s"] == pytest.approx(2 * timed["block_s"])
    assert timed["block_macs"] > 0


def test_mo_table4_shows_the_missing_attention_term():
    rows = mo_table4()
    paper = [r["paper_dit_over_dim"] for r in rows if r["paper_dit_over_dim"]]
    ours = [r["ours_dit_over_dim"] for r in rows]
    assert max(paper) - min(paper) < 0.01  # thop: DiT and DiM both linear in tokens
    assert ours == sorted(ours) and ours[-1] > 1.5 * ours[0]  # with attention, DiT grows faster
    assert all(r["dit_gmacs"] > r["dit_gmacs_no_attention"] for r in rows)


def test_teng_table1_params_and_pad_free_count():
    rows = {r["size"]: r for r in teng_table1()}
    assert rows["S"]["params_m"] == pytest.approx(50, rel=0.02) and rows["H"]["params_m"] == pytest.approx(
        860, rel=0.01
    )
    assert all(1.4 < r["ours_over_paper"] < 1.6 and r["gmacs_without_pad_tokens"] < r["gmacs"] for r in rows.values())


def test_old_csv_gets_new_columns_without_losing_rows(tmp_path):
    out = tmp_path / "sweep.csv"
    old = ["model", "resolution", "metric", "batch", "device", "dtype", "threads", "status", "gmacs"]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old)
        writer.writeheader()
        writer.writerow(
            dict(
                model="a",
                resolution="32x32",
                metric="flops",
                batch=1,
                device="cpu",
                dtype="float32",
                threads=1,
                status="ok",
                gmacs=3.0,
            )
        )
    run_sweep(["b"], ["32"], ["flops"], out, run_case=lambda *a: ("ok", "", {"gmacs": 5.0, "seq_len": 7}))
    with out.open(newline="") as f:
        assert next(csv.reader(f)) == COLUMNS
    rows = read_rows(out)
    assert [(r["model"], r["gmacs"]) for r in rows] == [("a", "3.0"), ("b", "5.0")] and rows[1]["seq_len"] == "7"


def test_results_plot(tmp_path, saved_figures):
    store = ResultsStore(tmp_path / "s.sqlite")
    run = store.start_run()
    store.add(
        run,
        [
            Measurement(model=m, metric="gmacs", value=v * s, unit="GMAC", resolution=f"{s}x{s}")
            for m, v in (("a", 1.0), ("b", 2.0))
            for s in (256, 512, 1024)
        ],
    )
    path = plot_metric(store.measurements(), "gmacs", tmp_path / "p.png")
    assert path.is_file() and len(saved_figures) == 1
    lines = drawn_lines(saved_figures[0])
    assert lines == {
        "a (cpu)": ([256.0, 512.0, 1024.0], [256.0, 512.0, 1024.0]),
        "b (cpu)": ([256.0, 512.0, 1024.0], [512.0, 1024.0, 2048.0]),
    }
    ax = saved_figures[0].axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log") and ax.get_ylabel() == "gmacs (GMAC)"
    with pytest.raises(UserError, match="metrics in the store: gmacs"):
        plot_metric(store.measurements(), "fid", tmp_path / "q.png")


def test_clip_memory_estimate_and_cli_cases(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    four = estimate_memory("dim-mo-video-tiny", parse_resolution("8"))  # the entry's own 4 frames
    assert four == estimate_memory("dim-mo-video-tiny", parse_resolution("4x8x8"))
    assert estimate_memory("dim-mo-video-tiny", parse_resolution("8", frames=16))[1] > four[1]  # longer clips
    cases = []

    def measured(model, resolution, metric, settings):
        cases.append((model, resolution))
        return "ok", "", {"inference_peak_mb": 1.0, "train_peak_mb": 2.0}

    monkeypatch.setattr("bench.cli.memory.run_case_subprocess", measured)
    args = ["memory", "-m", "latte-tiny", "-r", "8", "-r", "16x8", "--frames", "2", "--store", str(tmp_path / "s")]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert cases == [("latte-tiny", "2x8x8"), ("latte-tiny", "2x16x8")]


def test_results_plot_draws_clips_a_line_per_clip_length(tmp_path, saved_figures):
    from results.plot import _point, _series

    assert _point("3840x2160") == (pytest.approx(2880.0), 0) and _point("16x256x256") == (256.0, 16)
    assert _point("1x2x3x4") is None
    store = ResultsStore(tmp_path / "s.sqlite")
    rows = [
        Measurement("latte-tiny", "gmacs", float(f * side), "GMAC", f"{f}x{side}x{side}", device="meta")
        for f in (4, 16)
        for side in (8, 16)
    ]
    store.add(store.start_run(), rows)
    assert _series(store.measurements()) == {
        "latte-tiny (meta, 4 frames)": {8.0: 32.0, 16.0: 64.0},
        "latte-tiny (meta, 16 frames)": {8.0: 128.0, 16.0: 256.0},
    }
    plot_metric(store.measurements(), "gmacs", tmp_path / "clips.png")
    assert drawn_lines(saved_figures[-1]) == {
        "latte-tiny (meta, 16 frames)": ([8.0, 16.0], [128.0, 256.0]),
        "latte-tiny (meta, 4 frames)": ([8.0, 16.0], [32.0, 64.0]),
    }

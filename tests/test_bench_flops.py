"""bench flops: resolutions, size errors, and counts that agree with the paper and with each other."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.flops import count_flops
from bench.inputs import Resolution, parse_resolution
from mambabench.errors import UserError


def test_parse_resolution():
    assert parse_resolution("256") == Resolution(256, 256)
    assert parse_resolution("3840x2160") == Resolution(3840, 2160)
    for bad in ("", "0", "12x", "axb", "1x2x3x4", "0x8x8"):
        with pytest.raises(UserError, match="expected a size"):
            parse_resolution(bad)


def test_parse_clip_resolution_round_trips():
    clip = parse_resolution("16x256x128")  # how a video row names its size: frames x width x height
    assert clip == Resolution(256, 128, frames=16) and str(clip) == "16x256x128"
    assert parse_resolution("256x128", frames=16) == clip == parse_resolution("16x256x128", frames=16)
    assert str(parse_resolution("256")) == "256x256"  # an image row is unchanged
    with pytest.raises(UserError, match="says 16 frames and --frames says 8: give one"):
        parse_resolution("16x256x256", frames=8)
    with pytest.raises(UserError, match="--frames 0: a clip needs at least 1 frame"):
        parse_resolution("256", frames=0)


def test_dit_flops_match_paper_and_scale_with_tokens():
    small = count_flops("dit-xl/2", Resolution(256, 256))
    assert small.input_shape == (1, 4, 32, 32)
    assert abs(small.macs / 1e9 - 118.64) < 0.1  # DiT Table 4, MACs
    assert sum(small.by_category.values()) == small.flops
    uhd = count_flops("dit-xl/2", Resolution(3840, 2160))
    assert uhd.input_shape == (1, 4, 270, 480)  # width x height -> latent (h, w)
    assert uhd.by_category["attention"] > uhd.by_category["linear"]  # quadratic term dominates at 4K


def test_bad_resolution_names_working_sizes():
    with pytest.raises(UserError, match=r"multiples of 16 .* width 250 -> try \[224, 240, 256, 272\]"):
        count_flops("dit-xl/2", Resolution(250, 256))
    result = CliRunner().invoke(app, ["flops", "--model", "dit-xl/2", "--res", "250"])
    assert result.exit_code == 2 and "try" in result.output


def test_cli_json_rows():
    result = CliRunner().invoke(app, ["flops", "-m", "uvit-tiny", "-r", "8", "-r", "16x8", "--json"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and '"input_shape": [1, 3, 8, 16]' in lines[1]


def test_table_shows_the_linear_attention_share():
    """The printed table has a column for linear attention (SANA's and DiG's ops, one category), as for softmax
    attention and the scans; a present category is never printed as 0%."""
    from bench.cli.flops import SHARE_COLUMNS, _share

    assert [c for _, c in SHARE_COLUMNS] == ["attention", "linear attention", "scan", "linear", "conv"]
    sana, dig = count_flops("sana-tiny", Resolution(256, 256)), count_flops("dig-tiny", Resolution(64, 64))
    assert sana.by_category["linear attention"] > 0 and dig.by_category["linear attention"] > 0
    assert all(_share(c, "linear attention").rstrip("%").lstrip("<") != "0" for c in (sana, dig))
    assert _share(count_flops("dit-tiny", Resolution(64, 64)), "linear attention") == "0%"
    result = CliRunner().invoke(app, ["flops", "-m", "sana-tiny", "-r", "256", "--no-store"])
    assert result.exit_code == 0 and "lin attn = linear and gated linear attention" in " ".join(result.output.split())


@pytest.mark.parametrize("name", ["dit-s/2", "dim-mo-s/2"])
def test_fvcore_agrees_within_one_percent_at_256(name):
    from bench.fvcore_counter import fvcore_macs

    fv, by_op = fvcore_macs(name, Resolution(256, 256))
    ours = count_flops(name, Resolution(256, 256)).macs
    assert abs(fv - ours) / ours < 0.01
    assert by_op["linear"] > 0 and (by_op.get("attention", 0) > 0 or by_op.get("selective_scan", 0) > 0)


def test_cli_counts_clips_and_rows_name_their_frames(tmp_path):
    from results.store import ResultsStore

    store = tmp_path / "s.sqlite"
    args = ["flops", "-m", "latte-tiny", "-m", "dim-mo-video-tiny", "-r", "8", "--frames", "2", "--json", "--store"]
    result = CliRunner().invoke(app, [*args, str(store)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [(r["model"], r["resolution"], r["input_shape"]) for r in rows] == [
        ("latte-tiny", "2x8x8", [1, 3, 2, 8, 8]),
        ("dim-mo-video-tiny", "2x8x8", [1, 3, 2, 8, 8]),
    ]
    assert {m["resolution"] for m in ResultsStore(store).measurements()} == {"2x8x8"}
    default = CliRunner().invoke(app, ["flops", "-m", "latte-tiny", "-r", "16x8", "--json", "--no-store"])
    assert json.loads(default.output)["input_shape"] == [1, 3, 4, 8, 16]  # the entry's own 4 frames, W x H

"""mo-table3 mechanics in seconds: the smoke preset shrunk (8 px, 4 frames, 2 steps, 4 clips) trains and samples
the registry's video models, scores FVD through the real code with a random I3D of StyleGAN-V's interface (stub
features: the real network is user-supplied), reports ours beside every row of the paper's Table 3, and reuses
finished runs; video-image joint training through the trainer on a stand-in model that takes Latte's
``use_image_num``; and the errors when the I3D or the model support is missing."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from random_i3d import write_random_i3d
from torch import nn
from typer.testing import CliRunner

from ablations.cli import app
from ablations.experiment import RunConfig
from ablations.fvd import I3DMissing
from ablations.tables import TABLES
from ablations.tables.report import write_report
from ablations.tables.runner import run_table
from ablations.train import Trainer
from ablations.video_train import append_image_frames
from mambabench.errors import UserError
from results.store import ResultsStore
from zoo import entries

PAPER_TABLE3 = {"Latte": 477.97, "Latte+IMG": 333.61, "DiM": 358.75, "DiM+IMG": 206.83}  # Mo & Tian, Table 3


def _seconds_scale(table):
    smoke = table.presets["smoke"]
    tiny = dataclasses.replace(smoke, res=8, frames=4, steps=2, batch=2, n_samples=4, ref_n=4, sample_steps=2)
    return dataclasses.replace(table, presets={"smoke": tiny})


@pytest.fixture
def i3d(tmp_path, monkeypatch):
    monkeypatch.setattr("ablations.fvd._cache_dir", lambda: tmp_path / "cache")  # FVD's, not the kernels' cache
    path = write_random_i3d(tmp_path / "i3d_torchscript.pt")
    monkeypatch.setenv("MAMBABENCH_I3D", str(path))
    return path


def test_mo_table3_smoke_mechanics(tmp_path, i3d):
    table, runs = _seconds_scale(TABLES["mo-table3"]), tmp_path / "runs"
    store = ResultsStore(tmp_path / "store.sqlite")
    lines: list[str] = []
    results = run_table(table, "smoke", root=runs, store=store, log=lines.append)
    assert sorted(r["variant"] for r in results) == ["dim", "dim-img", "latte", "latte-img"]
    assert all(r["fvd"] > 0 and r["n_generated"] == r["n_reference"] == 4 and r["frames"] == 4 for r in results)
    assert not any(": not run:" in line for line in lines)

    folder = next(runs.glob("runs/dim-mo-video-*/samples/*"))
    assert {p.name for p in folder.iterdir()} >= {"clips", "samples.gif", "grid.png", "meta.json"}
    assert np.load(next((folder / "clips").glob("*.npy"))).shape == (3, 4, 8, 8)

    rows, report = write_report(table, "smoke", runs)
    by_label = {r["label"]: r for r in rows}
    assert {label: by_label[label]["paper_fvd"] for label in PAPER_TABLE3} == PAPER_TABLE3
    ours = {r["variant"]: r["fvd"] for r in results}
    assert by_label["DiM"]["ours_fvd"] == ours["dim"] and by_label["Latte"]["ours_fvd"] == ours["latte"]
    assert by_label["DiM+IMG"]["ours_fvd"] == ours["dim-img"] and by_label["LVDM"]["status"] == "paper only"
    assert by_label["Latte+IMG"]["paper_effect"] == "better" and by_label["Latte"]["paper_effect"] == "worse"
    text = (report / "report.md").read_text()
    assert "477.97" in text and "2886.9" in text and "FVD sample count: 4 generated vs 4 reference" in text
    assert "cannot run yet" not in text
    fvds = [m for m in store.measurements() if m["metric"] == "fvd"]
    assert len(fvds) == 4 and {m["unit"] for m in fvds} == {"FVD"}

    again: list[str] = []
    run_table(table, "smoke", root=runs, log=again.append)
    assert sum("scored already" in line for line in again) == 4 and not any(": training " in line for line in again)

    # an interrupted scoring resumes: a lost clip is sampled again (the same clip), the rest are kept
    clip = sorted((folder / "clips").glob("*.npy"))[1]
    kept = np.load(clip)
    clip.unlink()
    next((folder.parents[1] / "scores").glob("*.json")).unlink()  # the same run's score
    resumed = run_table(table, "smoke", root=runs, log=lambda _: None)
    assert np.array_equal(np.load(clip), kept)
    assert {r["variant"]: r["fvd"] for r in resumed} == pytest.approx(ours)


def test_missing_i3d_stops_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr("ablations.fvd._cache_dir", lambda: tmp_path / "cache")
    monkeypatch.delenv("MAMBABENCH_I3D", raising=False)
    with pytest.raises(I3DMissing, match="i3d_torchscript.pt"):
        run_table(_seconds_scale(TABLES["mo-table3"]), "smoke", root=tmp_path / "runs", log=lambda _: None)
    assert not (tmp_path / "runs" / "runs").exists()
    result = CliRunner().invoke(app, ["run", "mo-table3", "--preset", "smoke", "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "i3d_torchscript.pt" in result.output and "--i3d PATH" in result.output


class JointStandIn(nn.Module):
    """A video model with Latte's ``use_image_num``: a per-frame conv, then a temporal mix over the video frames
    only (the trailing image frames skip it). Records what it was called with."""

    calls: list[tuple[tuple[int, ...], int]] = []
    image_labels: list[tuple[torch.Tensor, torch.Tensor | None]] = []  # (clip labels, image labels) per call
    image_joint = True  # the contract's declaration (zoo.models.base)

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.in_channels, self.out_channels, self.num_classes, self.conditioning = (
            in_channels,
            in_channels,
            num_classes,
            "class",
        )
        self.conv = nn.Conv3d(in_channels, in_channels, (1, 3, 3), padding=(0, 1, 1))
        self.temporal = nn.Linear(in_channels, in_channels)
        self.label = nn.Embedding(num_classes + 1, in_channels)

    def null_condition(self, batch: int, device=None) -> torch.Tensor:  # the null label, for condition dropout
        return torch.full((batch,), self.num_classes, dtype=torch.long, device=device)

    def forward(self, x, t, y, use_image_num: int = 0, image_cond=None):
        JointStandIn.calls.append((tuple(x.shape), use_image_num))
        JointStandIn.image_labels.append((y.clone(), image_cond))
        h = self.conv(x) + self.label(y).view(len(y), -1, 1, 1, 1)
        video, images = h[:, :, : x.shape[2] - use_image_num], h[:, :, x.shape[2] - use_image_num :]
        mixed = video + self.temporal(video.mean(2, keepdim=True).movedim(1, -1)).movedim(-1, 1)
        return torch.cat([mixed, images], dim=2)


def test_image_joint_training_appends_frames_of_other_clips(tmp_path, monkeypatch):
    inputs = entries.InputSpec(
        in_channels=3, latent=False, image_size=8, conditioning="class", num_classes=10, frames=4
    )
    entry = entries.ModelEntry("test-video-joint", "test", JointStandIn, {}, inputs)
    monkeypatch.setitem(entries.REGISTRY, entry.name, entry)
    JointStandIn.calls.clear()
    JointStandIn.image_labels.clear()
    config = RunConfig(model=entry.name, data="videoshapes", res=8, batch=2, steps=2, image_joint=3)
    summary = Trainer(config, tmp_path / "run").run()
    assert summary["final_loss"] is not None and np.isfinite(summary["final_loss"])
    assert JointStandIn.calls == [((2, 3, 7, 8, 8), 3)] * 2  # 4 frames + 3 images, and the model told so
    # each image is conditioned on its own video's label: with two clips a batch, the other clip's
    JointStandIn.image_labels.clear()
    Trainer(dataclasses.replace(config, cfg_dropout=0.0, steps=1), tmp_path / "labels").run()
    ((clip_labels, image_labels),) = JointStandIn.image_labels
    assert torch.equal(image_labels, clip_labels.flip(0).view(-1, 1).expand(-1, 3))

    clips = torch.arange(3 * 2 * 5 * 2 * 2, dtype=torch.float32).view(3, 2, 5, 2, 2)
    joined, sources = append_image_frames(clips, 4, torch.Generator().manual_seed(0))
    assert joined.shape == (3, 2, 9, 2, 2) and torch.equal(joined[:, :, :5], clips) and sources.shape == (3, 4)
    for b in range(3):
        for k in range(5, 9):
            owners = [o for o in range(3) for f in range(5) if torch.equal(joined[b, :, k], clips[o, :, f])]
            assert owners == [sources[b, k - 5]] and owners[0] != b  # a frame of another clip, as reported

    monkeypatch.setattr(JointStandIn, "image_joint", False)  # the same forward, undeclared: refused, saying why
    with pytest.raises(UserError, match="JointStandIn does not declare image_joint"):
        Trainer(dataclasses.replace(config, steps=1), tmp_path / "undeclared")
    monkeypatch.undo()

    latte = RunConfig(model="latte-tiny", data="videoshapes", res=8, batch=2, steps=1, image_joint=8)
    assert Trainer(latte, tmp_path / "latte").model_kwargs == {"use_image_num": 8}  # the video models take it
    with pytest.raises(UserError, match="latte-tiny is a video model"):
        Trainer(dataclasses.replace(latte, data="builtin", image_joint=0), tmp_path / "latte")
    with pytest.raises(UserError, match="dim-teng-tiny is an image model"):
        Trainer(RunConfig(model="dim-teng-tiny", data="videoshapes", steps=1), tmp_path / "dim")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["image_joint"] == 3

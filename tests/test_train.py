"""The trainer: exact resume, DDP equivalence (2 gloo processes under torchrun), non-finite loss, folder
guards, --init-from at another resolution, learned sigma, T2MD's stages, and the CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from ablations.cli import app
from ablations.experiment import DistillConfig, RunConfig, parse_overrides
from ablations.run_folder import latest_checkpoint, load_run_model
from ablations.train import NonFiniteLoss, Trainer, train
from mambabench.errors import UserError

TINY = dict(model="dim-teng-tiny", batch=4, lr=1e-3, ema=0.9, log_every=1)


def _params(folder, key="model"):
    return torch.load(latest_checkpoint(folder), map_location="cpu")[key]


def test_resume_gives_identical_parameters(tmp_path):
    straight = RunConfig(**TINY, steps=6, ckpt_every=3)
    train(straight, tmp_path / "straight")
    interrupted = RunConfig(**TINY, steps=6, ckpt_every=3)
    Trainer(interrupted, tmp_path / "resumed").run(stop_after=3)  # as if killed after the step-3 checkpoint
    assert not (tmp_path / "resumed" / "done.json").exists()
    train(interrupted, tmp_path / "resumed", resume=True)
    a, b = _params(tmp_path / "straight"), _params(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ema_a, ema_b = _params(tmp_path / "straight", "ema"), _params(tmp_path / "resumed", "ema")
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert not torch.equal(a["pos_embed"], Trainer(RunConfig(**TINY, steps=1), tmp_path / "fresh").model.pos_embed)


def test_folder_guards(tmp_path):
    train(RunConfig(**TINY, steps=1), tmp_path / "run")
    with pytest.raises(UserError, match="--resume"):
        Trainer(RunConfig(**TINY, steps=1), tmp_path / "run")
    with pytest.raises(UserError, match="another configuration"):
        Trainer(RunConfig(**{**TINY, "lr": 0.5}, steps=1), tmp_path / "run")


def test_non_finite_loss_names_step_and_checkpoint(tmp_path):
    config = RunConfig(**{**TINY, "lr": 1e30, "grad_clip": None}, steps=12, ckpt_every=1)
    with pytest.raises(NonFiniteLoss, match=r"at step \d+; last good checkpoint: .*step-\d+\.pt"):
        train(config, tmp_path / "run")


def test_ddp_two_processes_match_one(tmp_path):
    """The documented multi-process launch: torchrun around the CLI (gloo on CPU)."""
    config = RunConfig(model="dim-teng-tiny", batch=4, lr=1e-3, ema=0.9, steps=3, ckpt_every=3)
    train(config, tmp_path / "one")
    cli = [
        "train",
        "-m",
        "dim-teng-tiny",
        "--batch",
        "4",
        "--lr",
        "1e-3",
        "--ema",
        "0.9",
        "--steps",
        "3",
        "--ckpt-every",
        "3",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "two"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            "-m",
            "ablations.cli",
            *cli,
        ],
        check=True,
        env=env,
        timeout=300,
    )
    assert json.loads((tmp_path / "two" / "done.json").read_text())["world"] == 2
    a, b = _params(tmp_path / "one"), _params(tmp_path / "two")
    assert set(a) == set(b) and all(torch.allclose(a[k], b[k], atol=2e-5, rtol=1e-4) for k in a)


def test_init_from_another_resolution_resizes_learned_positions(tmp_path):
    train(RunConfig(model="uvit-tiny", batch=4, steps=1, ema=0.0), tmp_path / "low")
    config = RunConfig(
        model="uvit-tiny", overrides={"input_size": 16}, res=16, batch=4, steps=1, init_from=str(tmp_path / "low")
    )
    trainer = Trainer(config, tmp_path / "high")
    low = _params(tmp_path / "low", "ema")
    assert trainer.model.pos_embed.shape[1] == 2 + 64 and low["pos_embed"].shape[1] == 2 + 16
    assert torch.equal(trainer.model.pos_embed[:, :2], low["pos_embed"][:, :2])  # time and label tokens kept
    assert torch.equal(trainer.model.patch_embed.proj.weight, low["patch_embed.proj.weight"])


def test_learned_sigma_model_trains_with_the_hybrid_loss_in_pixel_space(tmp_path):
    summary = train(RunConfig(model="dit-tiny", space="pixel", batch=4, steps=2), tmp_path / "dit")
    record = json.loads((tmp_path / "dit" / "log.jsonl").read_text().splitlines()[-1])
    assert "vb" in record and record["loss"] == pytest.approx(record["mse"] + record["vb"], rel=1e-4)
    assert summary["final_loss"] is not None
    with pytest.raises(UserError, match="--vae DIR"):
        RunConfig(model="dit-tiny")  # fine to build; the error comes when resolving the model
        Trainer(RunConfig(model="dit-tiny", steps=1), tmp_path / "latent")


def test_t2md_stages_from_a_teacher_run(tmp_path):
    train(RunConfig(model="pixart-tiny", space="pixel", batch=4, steps=2, lr=1e-3), tmp_path / "teacher")
    spec = DistillConfig(teacher=str(tmp_path / "teacher"), mamba_init="attention", teacher_forcing_steps=2)
    student = RunConfig(model="t2md-tiny", space="pixel", batch=4, steps=4, lr=1e-3, log_every=1, distill=spec)
    trainer = Trainer(student, tmp_path / "student")
    _, _, teacher = load_run_model(tmp_path / "teacher")
    assert torch.equal(trainer.model.blocks[0].attn.qkv.weight, teacher.blocks[0].attn.qkv.weight)  # transferred
    frozen_mlp = trainer.model.blocks[0].mlp.fc1.weight.clone()
    trainer.run()
    records = [json.loads(line) for line in (tmp_path / "student" / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records] == ["teacher_forcing"] * 2 + ["distill"] * 2
    assert {"mse", "pseudo", "mixer"} <= set(records[-1])
    assert torch.equal(trainer.model.blocks[0].mlp.fc1.weight, frozen_mlp)  # only token mixers train


def test_parse_overrides():
    assert parse_overrides(["depth=4", "scan_patterns='12'", "pad_tokens=false", "name=abc"]) == {
        "depth": 4,
        "scan_patterns": "12",
        "pad_tokens": False,
        "name": "abc",
    }
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["depth"])


def test_cli_train_sample_every_sampler_and_score(tmp_path, monkeypatch):
    """The README's engine walkthrough on the built-in data set, end to end."""
    monkeypatch.setenv("MAMBABENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "-m",
            "dim-teng-tiny",
            "--steps",
            "4",
            "--batch",
            "4",
            "--ckpt-every",
            "2",
            "--out",
            str(run),
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000002.pt", "step-0000004.pt"]
    for sampler in ("ddpm", "ddim", "dpm-solver"):
        result = runner.invoke(
            app,
            [
                "sample",
                "--run",
                str(run),
                "--sampler",
                sampler,
                "--steps",
                "5",
                "--n",
                "6",
                "--cfg",
                "1.5",
                "--batch",
                "4",
            ],
        )
        assert result.exit_code == 0, result.output
        folder = run / "samples" / f"{sampler}-5steps-cfg1.5-8px-n6"
        assert len(list((folder / "images").glob("*.png"))) == 6 and (folder / "grid.png").is_file()
    result = runner.invoke(app, ["fid", "--run", str(run), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output.strip().splitlines()[-1])
    assert scores["fid"] > 0 and scores["n_generated"] == 6 and scores["reference"] == "builtin train 8px"
    bad = runner.invoke(app, ["train", "-m", "dim-teng-tiyn", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "dim-teng-tiny" in bad.output

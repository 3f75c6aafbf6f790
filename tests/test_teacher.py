"""The released PixArt-alpha teacher: diffusers' hub layout with its null caption (``caption_projection.
y_embedding``) loads and is the caption CFG guides against, students distil from such a file, and the paper
preset of T2MD's Table 1 names every file it needs before any work starts."""

from __future__ import annotations

import warnings

import pytest
import torch
from typer.testing import CliRunner

import zoo
from ablations.cli import app
from ablations.experiment import DistillConfig, RunConfig
from ablations.tables import get_table
from ablations.tables.needs import check_needs, preset_needs, teacher_path
from mambabench.errors import UserError
from zoo.checkpoints import export_state_dict

_TINY = dict(input_size=8, hidden_size=64, num_heads=4, caption_channels=32, caption_tokens=6, depth=2)


def _released_diffusers_file(path, null: torch.Tensor, **overrides):
    """A PixArt-alpha transformer in diffusers' hub layout, as diffusers' conversion script writes it: with the
    original null caption under ``caption_projection.y_embedding``."""
    safetensors = pytest.importorskip("safetensors.torch")
    model = zoo.create_model("pixart-tiny", **_TINY, layout="SAx2", **overrides)
    state = export_state_dict(model, "pixart", layout="diffusers")
    assert not any("y_embedding" in k for k in state)  # diffusers' own model has no such tensor
    state["caption_projection.y_embedding"] = null
    safetensors.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return model


def test_diffusers_null_caption_loads_and_is_the_cfg_null(tmp_path):
    null = torch.randn(6, 32)
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    source = _released_diffusers_file(path, null)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing kept: the file's null caption is used
        model = zoo.create_model("pixart-tiny", pretrained=path, **_TINY, layout="SAx2")
    assert torch.equal(model.y_embedder.y_embedding, null)
    assert torch.equal(model.null_condition(2)[1], null)
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    with torch.no_grad():  # the same network otherwise
        source.y_embedder.y_embedding.copy_(null)
        assert torch.allclose(model(x, t, None), source(x, t, None), atol=1e-6)


def test_student_distils_from_a_released_file_and_inherits_its_null_caption(tmp_path):
    from ablations.train import Trainer

    null = torch.randn(6, 32)
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    _released_diffusers_file(path, null, in_channels=3)  # a pixel-space twin: same layout, CPU-sized
    config = RunConfig(
        model="t2md-tiny",
        overrides={**_TINY, "layout": "SA-HM", "pos_embed": "pixart", "in_channels": 3},
        data="builtin",
        res=8,
        space="pixel",
        steps=1,
        batch=2,
        distill=DistillConfig(teacher=str(path), teacher_forcing_steps=1),
    )
    trainer = Trainer(config, tmp_path / "student")
    assert torch.equal(trainer.teacher.y_embedder.y_embedding, null)
    assert torch.equal(trainer.model.y_embedder.y_embedding, null)  # transferred: CFG guides against it
    trainer.run()


def test_paper_preset_lists_every_file_before_any_work(tmp_path, monkeypatch):
    monkeypatch.delenv("MAMBABENCH_TEACHER", raising=False)
    monkeypatch.delenv("MAMBABENCH_TEXT_ENCODER", raising=False)
    table = get_table("table1")
    paper = table.presets["paper"]
    needs = preset_needs(table, paper, tmp_path / "data", None)
    assert [n.present for n in needs] == [False, False, False, False]
    with pytest.raises(UserError, match="4 missing.*--teacher PATH.*t5-v1_1-xxl.*--vae DIR.*t2md"):
        check_needs(table, paper, tmp_path / "data", None)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", "table1", "--preset", "paper", "--runs", str(runs)])
    assert result.exit_code == 2 and "MISSING the released teacher" in result.output and not runs.exists()
    teacher = tmp_path / "PixArt-XL-2-512x512.pth"
    teacher.write_bytes(b"x")
    monkeypatch.setenv("MAMBABENCH_TEACHER", str(teacher))
    needs = preset_needs(table, paper, tmp_path / "data", None)
    assert needs[0].present and not needs[1].present
    pipeline = tmp_path / "PixArt-XL-2-512x512"  # diffusers' folder stands for its transformer's weights
    (pipeline / "transformer").mkdir(parents=True)
    (pipeline / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    monkeypatch.setenv("MAMBABENCH_TEACHER", str(pipeline))
    assert teacher_path(paper).endswith("transformer/diffusion_pytorch_model.safetensors")
    assert preset_needs(table, paper, tmp_path / "data", None)[0].present
    assert table.presets["smoke-text"].text_encoder == "tiny-t5"
    assert preset_needs(table, table.presets["smoke-text"]) == []

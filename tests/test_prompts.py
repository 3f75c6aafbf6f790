"""Prompts in, images out (ablations.generate_prompts, ``ablations sample --prompts``): GenEval's folder
layout, prompt files of both shapes, CFG against the null caption with the prompt's mask, and resume."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from ablations.cli import app  # noqa: E402
from ablations.experiment import RunConfig  # noqa: E402
from ablations.generate_prompts import generate_from_prompts, read_prompts  # noqa: E402
from ablations.samplers import guided  # noqa: E402
from ablations.text_encoder import build_tiny_t5  # noqa: E402
from ablations.train import train  # noqa: E402
from mambabench.errors import UserError  # noqa: E402


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("prompts")
    t5 = build_tiny_t5(root / "t5")
    overrides = {"caption_channels": 32, "caption_tokens": 16, "input_size": 8, "in_channels": 3, "depth": 2}
    overrides["layout"] = "SAx2"
    config = RunConfig(
        model="pixart-tiny",
        overrides=overrides,
        data="captioned-shapes",
        res=8,
        space="pixel",
        batch=4,
        steps=2,
        text_encoder=str(t5),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAMBABENCH_CACHE", str(root / "cache"))  # the caption cache of this module's run
        train(config, root / "run")
    return root / "run", t5


def test_read_prompts_of_both_shapes_and_bad_ones(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("a photo of a red circle\n\n  a photo of two   blue squares\n")
    assert read_prompts(text) == [{"prompt": "a photo of a red circle"}, {"prompt": "a photo of two blue squares"}]
    meta = tmp_path / "evaluation_metadata.jsonl"
    rows = [{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}]
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_prompts(meta) == rows
    meta.write_text('{"tag": "colors"}\n')
    with pytest.raises(UserError, match='non-empty "prompt"'):
        read_prompts(meta)
    meta.write_text("a photo of a bench\n")
    with pytest.raises(UserError, match="not a JSON line"):
        read_prompts(meta)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(UserError, match="no prompts"):
        read_prompts(tmp_path / "empty.txt")


def test_guidance_passes_the_prompt_mask_to_both_halves():
    seen = {}

    def model(x, t, y, mask=None):
        seen["y"], seen["mask"] = y, mask
        return torch.zeros(x.shape[0], 6, *x.shape[2:])

    y, null = torch.ones(2, 4, 8), torch.zeros(2, 4, 8)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    guided(model, y, null, 4.5, 3, mask=mask)(torch.zeros(2, 3, 4, 4), torch.zeros(2))
    assert torch.equal(seen["mask"], torch.cat([mask, mask])) and torch.equal(seen["y"][2:], null)


def test_geneval_layout_and_resume(text_run, tmp_path):
    run, _ = text_run
    meta = tmp_path / "evaluation_metadata.jsonl"
    rows = [
        {
            "tag": "colors",
            "include": [{"class": "circle", "count": 1, "color": "red"}],
            "prompt": "a photo of a red circle",
        },
        {"tag": "counting", "include": [{"class": "square", "count": 2}], "prompt": "a photo of two blue squares"},
    ]
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = generate_from_prompts(run, meta, n=3, steps=4, cfg=3.0, batch=4, out=tmp_path / "geneval")
    for i, row in enumerate(rows):
        folder = out / f"{i:05d}"
        assert json.loads((folder / "metadata.jsonl").read_text()) == row
        assert sorted(p.name for p in (folder / "samples").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    kept = (out / "00001" / "samples" / "00002.png").read_bytes()
    (out / "00001" / "samples" / "00002.png").unlink()
    first = (out / "00000" / "samples" / "00000.png").stat().st_mtime_ns
    generate_from_prompts(run, meta, n=3, steps=4, cfg=3.0, batch=2, out=tmp_path / "geneval")
    assert (out / "00001" / "samples" / "00002.png").read_bytes() == kept  # same image, alone, in another batch
    assert (out / "00000" / "samples" / "00000.png").stat().st_mtime_ns == first


def test_sample_command_with_prompts(text_run, tmp_path):
    run, t5 = text_run
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a green triangle\n")
    result = CliRunner().invoke(
        app, ["sample", "--run", str(run), "--prompts", str(prompts), "--n", "2", "--steps", "3", "--cfg", "2"]
    )
    assert result.exit_code == 0, result.output
    folder = run / "prompts" / "prompts" / "ddim-3steps-cfg2-8px-n2"
    assert (folder / "00000" / "samples" / "00001.png").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1, 2]\n")
    result = CliRunner().invoke(app, ["sample", "--run", str(run), "--prompts", str(bad)])
    assert result.exit_code == 2 and 'non-empty "prompt"' in result.output

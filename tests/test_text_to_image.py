"""The text-to-image path end to end at smoke size, through the commands a user types: caption folder ->
T5 caption cache (the tiny T5) -> a PixArt teacher -> a T2MD student distilled from it (teacher forcing, then
L_soft + L_feature) -> prompts (GenEval's metadata) -> images in GenEval's folder layout."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from ablations.caption_data import CaptionedShapes  # noqa: E402
from ablations.cli import app  # noqa: E402
from ablations.experiment import DistillConfig, RunConfig  # noqa: E402
from ablations.train import train  # noqa: E402

_SMALL = {"input_size": 8, "hidden_size": 32, "num_heads": 2, "caption_channels": 32, "caption_tokens": 16}
_SMALL.update(depth=2, in_channels=3, d_state=8, headdim=16)


def test_captions_cache_distillation_prompts_geneval_folder(tmp_path):
    shapes = CaptionedShapes(size=8, length=12)
    data = tmp_path / "captions"
    data.mkdir()
    rows = []
    for i in range(len(shapes)):
        Image.fromarray(shapes[i][0].permute(1, 2, 0).numpy()).save(data / f"{i:03d}.png")
        rows.append({"file": f"{i:03d}.png", "caption": shapes.captions[i]})
    (data / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    runner = CliRunner()
    teacher = tmp_path / "teacher"
    args = ["train", "-m", "pixart-tiny", "--data", f"captions:{data}", "--text-encoder", "tiny-t5", "--res", "8"]
    args += ["--space", "pixel", "--steps", "4", "--batch", "4", "--out", str(teacher), "--device", "cpu"]
    args += [f"--set={k}={v}" for k, v in {**_SMALL, "layout": "SAx2"}.items()]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((teacher / "config.json").read_text())["text_encoder"] == "tiny-t5"

    student = RunConfig(
        model="t2md-tiny",
        overrides={**_SMALL, "layout": "SA-HM", "pos_embed": "pixart"},
        data=f"captions:{data}",
        res=8,
        space="pixel",
        steps=4,
        batch=4,
        text_encoder="tiny-t5",
        distill=DistillConfig(teacher=str(teacher), teacher_forcing_steps=2),
    )
    summary = train(student, tmp_path / "student")
    log = [json.loads(line) for line in (tmp_path / "student" / "log.jsonl").read_text().splitlines()]
    assert summary["steps"] == 4 and {r["stage"] for r in log} >= {"distill"}
    cache = json.loads((teacher / "data.json").read_text())["caption_cache"]
    assert json.loads((tmp_path / "student" / "data.json").read_text())["caption_cache"] == cache  # encoded once

    prompts = tmp_path / "evaluation_metadata.jsonl"
    metadata = [
        {"tag": "position", "include": [], "prompt": "a photo of a blue square left of a green triangle"},
        {"tag": "counting", "include": [{"class": "circle", "count": 2}], "prompt": "a photo of two red circles"},
    ]
    prompts.write_text("".join(json.dumps(m) + "\n" for m in metadata))
    out = tmp_path / "geneval"
    args = ["sample", "--run", str(tmp_path / "student"), "--prompts", str(prompts), "--n", "2"]
    args += ["--sampler", "dpm-solver", "--steps", "3", "--cfg", "4.5", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["00000", "00001"]
    for i, row in enumerate(metadata):
        assert json.loads((out / f"{i:05d}" / "metadata.jsonl").read_text()) == row
        images = sorted((out / f"{i:05d}" / "samples").iterdir())
        assert [p.name for p in images] == ["00000.png", "00001.png"]
        with Image.open(images[0]) as image:
            assert image.size == (8, 8)

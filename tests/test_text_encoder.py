"""The T5 text path (ablations.text_encoder): a tiny T5 built from a T5Config with a sentencepiece vocabulary
trained on the built-in captions, the folder checks, the resumable caption cache, latents of caption data,
and training of a text model that reads the cache."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from ablations.experiment import RunConfig, config_hash  # noqa: E402
from ablations.text_encoder import (  # noqa: E402
    CaptionCache,
    TextEncoder,
    TextEncoderMissing,
    build_tiny_t5,
    open_caption_cache,
    resolve_text_encoder,
    write_caption_cache,
)
from mambabench.errors import UserError  # noqa: E402

CAPTIONS = ["a photo of two red circles", "a photo of a blue square left of a green triangle", "a photo of a cat"]


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return build_tiny_t5(tmp_path_factory.mktemp("t5") / "tiny-t5")


def test_tiny_t5_encodes_with_pixart_tokenisation(t5):
    encoder = TextEncoder(t5)
    embeddings, mask = encoder.encode(CAPTIONS, tokens=16)
    assert embeddings.shape == (3, 16, 32) and mask.shape == (3, 16) and mask.dtype == torch.bool
    assert mask[:, 0].all() and not mask[:, -1].any()  # padded to max_length, mask kept
    assert mask[1].sum() > mask[0].sum()  # the longer caption has more tokens
    ids = encoder.tokenizer(CAPTIONS[:1]).input_ids[0]
    assert ids[-1] == encoder.tokenizer.eos_token_id  # add_special_tokens: T5's </s>
    assert not torch.allclose(embeddings[0], embeddings[1])


def test_missing_or_foreign_folders_are_user_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("MAMBABENCH_TEXT_ENCODER", raising=False)
    with pytest.raises(TextEncoderMissing, match="google/t5-v1_1-xxl"):
        resolve_text_encoder(None)
    with pytest.raises(TextEncoderMissing, match="no config.json.*google/t5-v1_1-xxl"):
        resolve_text_encoder(tmp_path / "nowhere")
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text(json.dumps({"model_type": "clip_text_model"}))
    with pytest.raises(UserError, match="holds clip_text_model, not a T5 encoder.*PixArt-alpha"):
        resolve_text_encoder(tmp_path / "clip")


def test_settings_variable_and_diffusers_pipeline_layout(t5, tmp_path, monkeypatch):
    monkeypatch.setenv("MAMBABENCH_TEXT_ENCODER", str(t5))
    assert resolve_text_encoder(None) == t5
    pipeline = tmp_path / "pipeline"
    (pipeline / "text_encoder").mkdir(parents=True)
    (pipeline / "tokenizer").mkdir()
    for file in t5.iterdir():
        target = "tokenizer" if "token" in file.name or file.name == "spiece.model" else "text_encoder"
        (pipeline / target / file.name).write_bytes(file.read_bytes())
    assert TextEncoder(pipeline).encode(CAPTIONS[:1], 8)[0].shape == (1, 8, 32)


def test_caption_cache_resumes_and_refuses_other_captions(t5, tmp_path):
    encoder = TextEncoder(t5)
    out = write_caption_cache(CAPTIONS, encoder, tmp_path / "cache", tokens=12, shard_size=2, batch=2)
    cache = CaptionCache(out)
    embeddings, mask = cache.lookup([2, 0])
    direct, direct_mask = encoder.encode([CAPTIONS[2], CAPTIONS[0]], 12)
    assert torch.equal(mask, direct_mask)
    torch.testing.assert_close(embeddings, direct.bfloat16().float())
    (out / "captions-00000.pt").write_bytes(b"kept")  # a finished shard is not encoded again
    (out / "captions-00001.pt").unlink()
    (out / "manifest.json").unlink()
    write_caption_cache(CAPTIONS, encoder, out, tokens=12, shard_size=2, batch=2)
    assert (out / "captions-00000.pt").read_bytes() == b"kept" and (out / "captions-00001.pt").is_file()
    with pytest.raises(UserError, match="other captions"):
        write_caption_cache(CAPTIONS[:2], encoder, out, tokens=12, shard_size=2)
    with pytest.raises(UserError, match="32-channel embeddings, the model takes 4096"):
        open_caption_cache(CAPTIONS, 12, 4096, t5, folder=tmp_path / "other")


def test_text_model_trains_on_the_caption_cache(t5, tmp_path, monkeypatch):
    from ablations.train import Trainer

    monkeypatch.setenv("MAMBABENCH_CACHE", str(tmp_path / "cache"))
    overrides = {"caption_channels": 32, "caption_tokens": 16, "input_size": 8, "in_channels": 3}
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
    trainer = Trainer(config, tmp_path / "run")
    assert trainer.captions is not None and trainer.captions.tokens == 16
    seen = []
    original = trainer.model.forward
    trainer.model.forward = lambda x, t, cond=None, mask=None: seen.append(mask) or original(x, t, cond, mask)
    trainer.run()
    assert seen and seen[0] is not None and seen[0].shape == (4, 16) and not seen[0].all()
    caches = [p for p in (tmp_path / "cache" / "captions").iterdir() if p.is_dir()]
    assert len(caches) == 1  # encoded once, shared by every run
    without = RunConfig(**{**config.to_dict(), "text_encoder": None})
    assert config_hash(without) != config_hash(config)


def test_class_model_on_caption_data_is_a_user_error(tmp_path):
    from ablations.train import Trainer

    config = RunConfig(model="dit-s/2", data="captioned-shapes", res=16, space="pixel", steps=1, batch=2)
    with pytest.raises(UserError, match="class-conditional"):
        Trainer(config, tmp_path / "run")


def test_latents_of_caption_data_keep_captions_and_their_cache(t5, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    from ablations.caption_data import CaptionedShapes
    from ablations.latents import LatentShards, write_latent_shards

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    ).eval()
    data = CaptionedShapes(16, 6)
    out = write_latent_shards(data, vae, tmp_path / "latents", shard_size=4, batch=4)
    shards = LatentShards(out)
    assert shards.captions == data.captions and shards.labels == list(range(6))
    cache = open_caption_cache(shards.captions, 16, 32, t5, folder=out / "captions")
    assert len(cache) == 6 and (out / "captions" / "manifest.json").is_file()
    assert open_caption_cache(shards.captions, 16, 32, None, folder=out / "captions").count == 6  # no encoder needed


def test_latents_command_encodes_captions_and_training_reads_them(t5, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    from PIL import Image
    from typer.testing import CliRunner

    from ablations.caption_data import CaptionedShapes
    from ablations.cli import app
    from ablations.train import Trainer

    torch.manual_seed(0)
    diffusers.AutoencoderKL(
        block_out_channels=(8, 8),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    ).save_pretrained(tmp_path / "vae")
    shapes, data = CaptionedShapes(16, 4), tmp_path / "data"
    data.mkdir()
    for i in range(4):
        Image.fromarray(shapes[i][0].permute(1, 2, 0).numpy()).save(data / f"{i}.png")
        (data / f"{i}.txt").write_text(shapes.captions[i])
    out = tmp_path / "latents"
    args = ["latents", "--data", f"captions:{data}", "--vae", str(tmp_path / "vae"), "--res", "16"]
    result = CliRunner().invoke(app, [*args, "--text-encoder", str(t5), "--tokens", "16", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "captions" / "manifest.json").is_file() and json.loads((out / "captions.json").read_text())
    missing = CliRunner().invoke(app, [*args, "--text-encoder", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "google/t5-v1_1-xxl" in missing.output and not (tmp_path / "x").exists()
    overrides = {"caption_channels": 32, "caption_tokens": 16, "input_size": 8, "depth": 1, "layout": "SA"}
    # the tiny VAE halves the side: its 8x8 latents of 16 px images are what a 64 px image gives the SD VAE
    config = RunConfig(model="pixart-tiny", overrides=overrides, data=f"latents:{out}", res=64, batch=2, steps=1)
    trainer = Trainer(config, tmp_path / "run")  # no text encoder: the cache beside the latents is enough
    assert trainer.captions.folder == out / "captions"
    trainer.run()

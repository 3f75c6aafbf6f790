"""``zoo.create_model(name, pretrained=PATH)``: official checkpoint layouts in their real containers.

The official layouts are written down here from the public code (facebookresearch/DiT ``models.py``,
Vchitect/Latte ``models/latte.py``, baofff/U-ViT ``libs/uvit.py``, PixArt-alpha ``PixArt.py`` /
``PixArtMS.py``, tyshiwo1/DiM-DiffusionMamba ``mamba_attn_diff/models/*.py`` and its vendored
``mamba_simple.py``) as key -> shape descriptions,
independently of ``zoo.checkpoints``; the diffusers layout comes from diffusers' own ``PixArtTransformer2DModel``,
which is also the reference computation for PixArt-alpha.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import zoo
from zoo.checkpoints import export_state_dict, load_pretrained


def _dit_official_keys(depth: int, d: int, p: int, c_in: int, classes: int, tokens: int) -> dict[str, tuple]:
    keys = {
        "x_embedder.proj.weight": (d, c_in, p, p),
        "x_embedder.proj.bias": (d,),
        "pos_embed": (1, tokens, d),
        "t_embedder.mlp.0.weight": (d, 256),
        "t_embedder.mlp.0.bias": (d,),
        "t_embedder.mlp.2.weight": (d, d),
        "t_embedder.mlp.2.bias": (d,),
        "y_embedder.embedding_table.weight": (classes + 1, d),
        "final_layer.linear.weight": (p * p * 2 * c_in, d),
        "final_layer.linear.bias": (p * p * 2 * c_in,),
        "final_layer.adaLN_modulation.1.weight": (2 * d, d),
        "final_layer.adaLN_modulation.1.bias": (2 * d,),
    }
    for i in range(depth):
        for name, out, inp in (
            ("attn.qkv", 3 * d, d),
            ("attn.proj", d, d),
            ("mlp.fc1", 4 * d, d),
            ("mlp.fc2", d, 4 * d),
            ("adaLN_modulation.1", 6 * d, d),
        ):
            keys[f"blocks.{i}.{name}.weight"], keys[f"blocks.{i}.{name}.bias"] = (out, inp), (out,)
    return keys


def _uvit_official_keys(depth: int, d: int, p: int, c: int, classes: int, grid: int, conv: bool) -> dict[str, tuple]:
    extras = 1 + int(classes > 0)
    keys = {
        "patch_embed.proj.weight": (d, c, p, p),
        "patch_embed.proj.bias": (d,),
        "pos_embed": (1, extras + grid * grid, d),
        "norm.weight": (d,),
        "norm.bias": (d,),
        "decoder_pred.weight": (p * p * c, d),
        "decoder_pred.bias": (p * p * c,),
    }
    if classes > 0:
        keys["label_emb.weight"] = (classes, d)
    if conv:
        keys["final_layer.weight"], keys["final_layer.bias"] = (c, c, 3, 3), (c,)
    blocks = [f"in_blocks.{i}" for i in range(depth // 2)] + ["mid_block"]
    blocks += [f"out_blocks.{i}" for i in range(depth // 2)]
    for block in blocks:
        for name, shape in (
            ("norm1.weight", (d,)),
            ("norm1.bias", (d,)),
            ("attn.qkv.weight", (3 * d, d)),
            ("attn.proj.weight", (d, d)),
            ("attn.proj.bias", (d,)),
            ("norm2.weight", (d,)),
            ("norm2.bias", (d,)),
            ("mlp.fc1.weight", (4 * d, d)),
            ("mlp.fc1.bias", (4 * d,)),
            ("mlp.fc2.weight", (d, 4 * d)),
            ("mlp.fc2.bias", (d,)),
        ):
            keys[f"{block}.{name}"] = shape
        if block.startswith("out_blocks"):
            keys[f"{block}.skip_linear.weight"], keys[f"{block}.skip_linear.bias"] = (d, 2 * d), (d,)
    return keys


def _pixart_official_keys(depth: int, d: int, p: int, c_in: int, cap: int, tokens: int, grid: int, ms: bool):
    keys = {
        "x_embedder.proj.weight": (d, c_in, p, p),
        "x_embedder.proj.bias": (d,),
        "pos_embed": (1, grid * grid, d),
        "t_embedder.mlp.0.weight": (d, 256),
        "t_embedder.mlp.0.bias": (d,),
        "t_embedder.mlp.2.weight": (d, d),
        "t_embedder.mlp.2.bias": (d,),
        "t_block.1.weight": (6 * d, d),
        "t_block.1.bias": (6 * d,),
        "y_embedder.y_embedding": (tokens, cap),
        "y_embedder.y_proj.fc1.weight": (d, cap),
        "y_embedder.y_proj.fc1.bias": (d,),
        "y_embedder.y_proj.fc2.weight": (d, d),
        "y_embedder.y_proj.fc2.bias": (d,),
        "final_layer.scale_shift_table": (2, d),
        "final_layer.linear.weight": (p * p * 2 * c_in, d),
        "final_layer.linear.bias": (p * p * 2 * c_in,),
    }
    if ms:
        for name in ("csize_embedder", "ar_embedder"):
            keys |= {
                f"{name}.mlp.0.weight": (d // 3, 256),
                f"{name}.mlp.0.bias": (d // 3,),
                f"{name}.mlp.2.weight": (d // 3, d // 3),
                f"{name}.mlp.2.bias": (d // 3,),
            }
    for i in range(depth):
        keys[f"blocks.{i}.scale_shift_table"] = (6, d)
        for name, out, inp in (
            ("attn.qkv", 3 * d, d),
            ("attn.proj", d, d),
            ("cross_attn.q_linear", d, d),
            ("cross_attn.kv_linear", 2 * d, d),
            ("cross_attn.proj", d, d),
            ("mlp.fc1", 4 * d, d),
            ("mlp.fc2", d, 4 * d),
        ):
            keys[f"blocks.{i}.{name}.weight"], keys[f"blocks.{i}.{name}.bias"] = (out, inp), (out,)
    return keys


def _official_sincos(dim: int, grid: int, base: int | None = None, scale: float = 1.0) -> torch.Tensor:
    """MAE/DiT/PixArt ``get_2d_sincos_pos_embed`` (numpy; meshgrid w first; first half of the channels from
    grid[0], the column coordinate). ``base``: PixArt's base_size (positions / (grid / base) / scale)."""
    pos = np.arange(grid, dtype=np.float32)
    if base is not None:
        pos = pos / (grid / base) / scale
    mesh = np.stack(np.meshgrid(pos, pos), axis=0).reshape(2, -1)
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))

    def one(coords):
        out = np.einsum("m,d->md", coords, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return torch.from_numpy(np.concatenate([one(mesh[0]), one(mesh[1])], axis=1)).float()[None]


def _random_like(keys: dict[str, tuple], generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {k: torch.randn(shape, generator=generator) * 0.05 for k, shape in keys.items()}


def _shapes(state: dict) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _inputs(shape=(2, 4, 8, 8), classes: int = 10):
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(shape, generator=g),
        torch.tensor([3.0, 700.0]),
        torch.randint(0, classes, (shape[0],), generator=g),
    )


# ---------------------------------------------------------------- DiT


def test_dit_official_checkpoint_loads_and_reproduces_outputs(tmp_path):
    model = zoo.create_model("dit-tiny").eval()
    with torch.no_grad():  # adaLN-Zero starts at the identity: randomise so outputs depend on every weight
        for p in model.parameters():
            p.normal_(0, 0.05)
    exported = export_state_dict(model, "dit")
    assert _shapes(exported) == _dit_official_keys(2, 64, 2, 4, 10, 16)
    assert (exported["pos_embed"] - _official_sincos(64, 4)).abs().max() < 1e-6  # DiT's own table
    path = tmp_path / "DiT-tiny-32x32.pt"
    torch.save(exported, path)  # the released files are plain state dicts
    loaded = zoo.create_model("dit-tiny", pretrained=path).eval()
    x, t, y = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded(x, t, y), model(x, t, y))
    torch.save({"model": exported, "ema": exported}, tmp_path / "train.pt")  # DiT's training checkpoints
    assert torch.equal(
        zoo.create_model("dit-tiny", pretrained=tmp_path / "train.pt").blocks[1].mlp.fc2.weight,
        model.blocks[1].mlp.fc2.weight,
    )


def test_dit_official_fixed_table_is_checked(tmp_path):
    state = _random_like(_dit_official_keys(2, 64, 2, 4, 10, 16), torch.Generator().manual_seed(0))
    state["pos_embed"] = _official_sincos(64, 4)
    zoo.create_model("dit-tiny", pretrained=state)
    state["pos_embed"] = state["pos_embed"] + 1e-2
    with pytest.raises(ValueError, match="pos_embed differs from DiT's fixed sin-cos table"):
        zoo.create_model("dit-tiny", pretrained=state)


def test_full_size_dit_xl_official_layouts_on_meta():
    for grid in (16, 32):  # DiT-XL-2-256x256.pt and -512x512.pt
        keys = _dit_official_keys(28, 1152, 2, 4, 1000, grid * grid)
        state = {k: torch.empty(s, device="meta") for k, s in keys.items()}
        state["pos_embed"] = _official_sincos(1152, grid)
        with torch.device("meta"):
            model = zoo.create_model("dit-xl/2", pretrained=state, input_size=2 * grid)
        assert sum(p.numel() for p in model.parameters()) == 674_834_720


# ---------------------------------------------------------------- Latte


def _latte_official_keys(depth: int, d: int, p: int, c_in: int, classes: int, tokens: int, frames: int):
    """Vchitect/Latte ``models/latte.py`` (UCF-101: ``extras: 2``, a class table): DiT's keys and its frame table."""
    return {**_dit_official_keys(depth, d, p, c_in, classes, tokens), "temp_embed": (1, frames, d)}


def _official_frame_sincos(dim: int, frames: int) -> torch.Tensor:
    """Latte's ``get_1d_sincos_temp_embed``: [sin | cos] of the frame index with MAE's frequencies (numpy)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2))
    out = np.einsum("m,d->md", np.arange(frames, dtype=np.float64), omega)
    return torch.from_numpy(np.concatenate([np.sin(out), np.cos(out)], axis=1)).float()[None]


def test_latte_official_checkpoint_loads_and_reproduces_outputs(tmp_path):
    model = zoo.create_model("latte-tiny").eval()
    with torch.no_grad():  # adaLN-Zero starts at the identity: randomise so outputs depend on every weight
        for p in model.parameters():
            p.normal_(0, 0.05)
    exported = export_state_dict(model, "latte", frames=4)
    assert _shapes(exported) == _latte_official_keys(4, 64, 2, 3, 10, 16, 4)
    assert (exported["pos_embed"] - _official_sincos(64, 4)).abs().max() < 1e-6
    assert (exported["temp_embed"] - _official_frame_sincos(64, 4)).abs().max() < 1e-6
    path = tmp_path / "ucf101.pt"
    torch.save({"ema": exported}, path)  # as Latte's released file: the EMA weights under "ema"
    loaded = zoo.create_model("latte-tiny", pretrained=path).eval()
    g = torch.Generator().manual_seed(2)
    x, t, y = torch.randn(2, 3, 4, 8, 8, generator=g), torch.tensor([3, 700]), torch.tensor([1, 10])
    with torch.no_grad():
        assert torch.equal(loaded(x, t, y), model(x, t, y))
    state = dict(exported, temp_embed=exported["temp_embed"] + 1e-2)
    with pytest.raises(ValueError, match="temp_embed differs from Latte's fixed sin-cos table of 4 frames"):
        zoo.create_model("latte-tiny", pretrained=state)


def test_full_size_latte_xl_ucf101_layout_on_meta():
    keys = _latte_official_keys(28, 1152, 2, 4, 101, 256, 16)  # ucf101.pt: 256 px, 16 frames, 101 classes
    state = {k: torch.empty(s, device="meta") for k, s in keys.items()}
    state["pos_embed"], state["temp_embed"] = _official_sincos(1152, 16), _official_frame_sincos(1152, 16)
    with torch.device("meta"):
        model = zoo.create_model("latte-xl/2", pretrained=state)
    assert sum(p.numel() for p in model.parameters()) == 673_799_072  # the docstring's count, class table included


# ---------------------------------------------------------------- strictness and bad files


def test_strict_load_names_the_keys_and_the_model(tmp_path):
    good = export_state_dict(zoo.create_model("dit-tiny"), "dit")
    missing = {k: v for k, v in good.items() if k != "blocks.0.attn.qkv.weight"}
    with pytest.raises(ValueError, match=r"does not fit dit-tiny: 1 missing \(blocks\.0\.attn\.qkv\.weight\)"):
        zoo.create_model("dit-tiny", pretrained=missing)
    with pytest.raises(ValueError, match=r"1 unexpected \(blocks\.2\.attn\.qkv\.weight\)"):
        zoo.create_model("dit-tiny", pretrained={**good, "blocks.2.attn.qkv.weight": torch.zeros(3)})
    wrong = {**good, "y_embedder.embedding_table.weight": torch.zeros(12, 64)}
    with pytest.raises(ValueError, match=r"1 mis-shaped \(y_embedder\.embedding_table\.weight \(12, 64\) in the check"):
        zoo.create_model("dit-tiny", pretrained=wrong)
    torch.save(good, tmp_path / "dit.pt")
    with pytest.raises(
        ValueError, match=r"dit.pt does not fit dit-tiny depth=3: 10 missing \(blocks.2.attn.qkv.weight;"
    ):
        zoo.create_model("dit-tiny", pretrained=tmp_path / "dit.pt", depth=3)


def test_a_file_that_is_not_a_checkpoint_is_a_one_line_error(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    for path, match in (
        (text, "notes.pt: not a checkpoint"),
        (tmp_path / "absent.pt", "absent.pt: no such"),
        (tmp_path / "x.safetensors", "x.safetensors: not a safetensors"),
    ):
        if path.suffix == ".safetensors":
            path.write_bytes(b"\x00" * 20)
        with pytest.raises(ValueError, match=match) as info:
            zoo.create_model("dit-tiny", pretrained=path)
        assert "\n" not in str(info.value)
    torch.save({"step": torch.tensor(3), "notes": "x"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not a checkpoint"):
        zoo.create_model("dit-tiny", pretrained=tmp_path / "other.pt")


def test_checkpoint_mistakes_are_user_errors(tmp_path):
    from mambabench.errors import UserError
    from zoo.errors import CheckpointMismatch, NotACheckpoint

    with pytest.raises(NotACheckpoint) as info:
        zoo.create_model("dit-tiny", pretrained=tmp_path / "absent.pt")
    assert isinstance(info.value, UserError)
    good = export_state_dict(zoo.create_model("dit-tiny"), "dit")
    for state in ({**good, "pos_embed": good["pos_embed"] + 1e-2}, {**good, "extra": torch.zeros(1)}):
        with pytest.raises(CheckpointMismatch) as info:
            zoo.create_model("dit-tiny", pretrained=state)
        assert isinstance(info.value, UserError)


def test_every_layout_reads_back_what_it_writes():
    """Export then import through the same rules is the identity on our names, for every registered layout."""
    from zoo.checkpoints import LAYOUTS

    for family, layouts in LAYOUTS.items():
        name = next(n for n in zoo.list_models(family) if "tiny" in zoo.get_entry(n).tags)
        model = zoo.create_model(name)
        for layout in layouts:
            state, _, _ = layout.to_ours(layout.from_ours(model, frames=4), model, name)
            for key in layout.keep:
                state.setdefault(key, model.state_dict()[key])
            ours = model.state_dict()
            assert list(state) == list(ours) or set(state) == set(ours), (family, layout.name)
            assert all(torch.equal(state[k], v) for k, v in ours.items()), (family, layout.name)


# ---------------------------------------------------------------- U-ViT


def test_uvit_nnet_ema_loads_and_reproduces_outputs(tmp_path):
    model = zoo.create_model("uvit-tiny").eval()
    assert _shapes(model.state_dict()) == _uvit_official_keys(2, 64, 2, 3, 11, 4, conv=True)
    torch.save(export_state_dict(model, "uvit"), tmp_path / "nnet_ema.pth")
    loaded = zoo.create_model("uvit-tiny", pretrained=tmp_path / "nnet_ema.pth").eval()
    x, t, y = _inputs((2, 3, 8, 8))
    with torch.no_grad():
        assert torch.equal(loaded(x, t, y), model(x, t, y))
    with pytest.raises(ValueError, match=r"pos_embed \(1, 18, 64\) in the checkpoint vs \(1, 66, 64\).*input_size=8"):
        zoo.create_model("uvit-tiny", pretrained=tmp_path / "nnet_ema.pth", input_size=16)


def test_full_size_uvit_official_layouts_on_meta():
    for name, depth, d, conv in (("uvit-l/2", 20, 1024, True), ("uvit-h/2", 28, 1152, False)):
        keys = _uvit_official_keys(depth, d, 2, 4, 1001, 16, conv)
        with torch.device("meta"):
            zoo.create_model(name, pretrained={k: torch.empty(s) for k, s in keys.items()})
    keys = _uvit_official_keys(12, 512, 2, 3, 0, 16, conv=True)  # cifar10_uvit_small.pth
    with torch.device("meta"):
        zoo.create_model("uvit-s/2-cifar10", pretrained={k: torch.empty(s) for k, s in keys.items()})


# ---------------------------------------------------------------- PixArt-alpha


_TINY_MS = dict(
    input_size=16, hidden_size=48, depth=2, layout="SAx2", num_heads=4, caption_channels=32, caption_tokens=6
)


def _text_inputs(shape=(2, 4, 8, 8)):
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(shape, generator=g), torch.randn(shape[0], 6, 32, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    return x, torch.tensor([10.0, 500.0]), y, mask


@pytest.mark.parametrize("name, overrides", [("pixart-tiny", {}), ("pixart-alpha-xl/2-1024-ms", _TINY_MS)])
def test_pixart_original_pth_loads_and_reproduces_outputs(tmp_path, name, overrides):
    model = zoo.create_model(name, **overrides).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    exported = export_state_dict(model, "pixart")
    d, ms = model.x_embedder.proj.out_channels, bool(overrides)
    assert _shapes(exported) == _pixart_official_keys(len(model.blocks), d, 2, 4, 32, 6, model.base_size, ms)
    expected = _official_sincos(d, model.base_size, model.base_size, model.lewei_scale)
    assert (exported["pos_embed"] - expected).abs().max() < 1e-5  # PixArt's own (float32 positions) table
    torch.save({"state_dict": exported}, tmp_path / "PixArt.pth")  # the .pth files nest it under state_dict
    loaded = zoo.create_model(name, pretrained=tmp_path / "PixArt.pth", **overrides).eval()
    x, t, y, mask = _text_inputs((2, 4, 16, 12))
    with torch.no_grad():
        assert torch.equal(loaded(x, t, y, mask), model(x, t, y, mask))
    if ms:  # 1024-MS: lewei_scale 2; a model asked for scale 1 is told which scale the table is
        with pytest.raises(ValueError, match="lewei_scale=2, pass that"):
            zoo.create_model(name, pretrained=tmp_path / "PixArt.pth", **{**overrides, "lewei_scale": 1.0})
    else:
        with pytest.raises(ValueError, match="base grid is 8x8: pass input_size=8"):
            zoo.create_model(name, pretrained=tmp_path / "PixArt.pth", input_size=16)


def _diffusers_pixart(ms: bool):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    ref = diffusers.PixArtTransformer2DModel(
        num_attention_heads=4,
        attention_head_dim=12,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        sample_size=16,
        patch_size=2,
        norm_type="ada_norm_single",
        caption_channels=32,
        cross_attention_dim=48,
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        attention_bias=True,
        use_additional_conditions=ms,
        interpolation_scale=2 if ms else 1,
    ).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.1)
    return ref


@pytest.mark.parametrize("ms", [False, True])
def test_pixart_diffusers_safetensors_match_diffusers_outputs(tmp_path, ms):
    safetensors = pytest.importorskip("safetensors.torch")
    ref = _diffusers_pixart(ms)
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    safetensors.save_file(ref.state_dict(), str(path))
    overrides = (
        {**_TINY_MS, "lewei_scale": 2.0}
        if ms
        else {k: _TINY_MS[k] for k in ("input_size", "hidden_size", "depth", "layout", "num_heads")}
    )
    name = "pixart-alpha-xl/2-1024-ms" if ms else "pixart-tiny"
    with pytest.warns(UserWarning, match="holds no y_embedder.y_embedding"):
        model = zoo.create_model(name, pretrained=path, **overrides).eval()
    x, t, y, mask = _text_inputs((2, 4, 16, 12))  # non-square: resolution (128, 96), aspect ratio 16/12
    added = {"resolution": torch.tensor([[128.0, 96.0]] * 2), "aspect_ratio": torch.tensor([[16 / 12]] * 2)}
    with torch.no_grad():
        theirs = ref(
            x,
            encoder_hidden_states=y,
            timestep=t,
            encoder_attention_mask=mask.long(),
            return_dict=False,
            added_cond_kwargs=added if ms else {"resolution": None, "aspect_ratio": None},
        )[0]
        ours = model(x, t, y, mask)
    assert (ours - theirs).abs().max() < 1e-5
    exported = export_state_dict(model, "pixart", layout="diffusers")
    assert _shapes(exported) == _shapes(ref.state_dict())
    assert all(torch.equal(exported[k], v) for k, v in ref.state_dict().items())
    torch.save(exported, tmp_path / "diffusion_pytorch_model.bin")
    with pytest.warns(UserWarning):
        again = zoo.create_model(name, pretrained=tmp_path / "diffusion_pytorch_model.bin", **overrides).eval()
    with torch.no_grad():
        assert torch.equal(again(x, t, y, mask), ours)


def test_full_size_pixart_1024_ms_official_and_diffusers_layouts_on_meta():
    diffusers = pytest.importorskip("diffusers")
    keys = _pixart_official_keys(28, 1152, 2, 4, 4096, 120, 64, ms=True)
    state = {k: torch.empty(s, device="meta") for k, s in keys.items()}
    state["pos_embed"] = _official_sincos(1152, 64, 64, 2.0)  # PixArt-XL-2-1024-MS.pth: lewei_scale 2
    with torch.device("meta"):
        model = zoo.create_model("pixart-alpha-xl/2-1024-ms", pretrained=state)
        base = zoo.create_model("pixart-alpha-xl/2")
        extra = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("csize_", "ar_")))
        assert (
            extra == 493_056 == sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in base.parameters())
        )
        ref = diffusers.PixArtTransformer2DModel(  # the published transformer/config.json of PixArt-XL-2-1024-MS
            num_attention_heads=16,
            attention_head_dim=72,
            in_channels=4,
            out_channels=8,
            num_layers=28,
            sample_size=128,
            patch_size=2,
            norm_type="ada_norm_single",
            caption_channels=4096,
            cross_attention_dim=1152,
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            attention_bias=True,
        )
        assert ref.use_additional_conditions and ref.config.interpolation_scale in (None, 2)
        with pytest.warns(UserWarning, match="y_embedding"):
            load_pretrained(model, ref.state_dict(), "pixart", "pixart-alpha-xl/2-1024-ms")


# ---------------------------------------------------------------- DiM (Teng) and our own files


def _dim_teng_official_keys(depth: int, d: int, p: int, c: int, classes: int, grid: int) -> dict[str, tuple]:
    """tyshiwo1/DiM-DiffusionMamba ``Mamba2DModel`` as its DiM configs build it (rms, no_ff, is_extra_tokens,
    use_a4m_adapter, use_pad_token, ada_norm_single, encoder_start_blk_id=1, mamba_d_conv=3, d_state 16)."""
    k, inner, rank = 3, 2 * d, -(-d // 16)
    keys = {
        "pos_embed.proj.weight": (d, c, p, p),  # UViTPatchEmbed
        "pos_embed.proj.bias": (d,),
        "additional_embed": (1, 1 + int(classes > 0) + grid * grid, d),
        "adaln_single.emb.timestep_embedder.linear_1.weight": (d, 256),
        "adaln_single.emb.timestep_embedder.linear_1.bias": (d,),
        "adaln_single.emb.timestep_embedder.linear_2.weight": (d, d),
        "adaln_single.emb.timestep_embedder.linear_2.bias": (d,),
        "adaln_single.linear.weight": (3 * d, d),
        "adaln_single.linear.bias": (3 * d,),
        "a4m_adapter.first_smoother.weight": (d, 1, 3, 3),
        "a4m_adapter.first_smoother.bias": (d,),
        "a4m_adapter.last_smoother.weight": (d, 1, 3, 3),
        "a4m_adapter.last_smoother.bias": (d,),
        "a4m_adapter.pad_token_dec_split": (1, k, d),
        "a4m_adapter.pad_token": (1, d, k),
        "norm_out.norm.weight": (d,),
        "proj_out_1.weight": (2 * d, d),
        "proj_out_1.bias": (2 * d,),
        "proj_out_2.weight": (p * p * c, d),
        "proj_out_2.bias": (p * p * c,),
    }
    if classes > 0:
        keys["label_emb.weight"] = (classes + 1, d)
        keys["adaln_single.emb.class_embedder.embedding_table.weight"] = (classes + 1, d)
    for i in range(depth):
        block = f"transformer_blocks.{i}"
        keys |= {
            f"{block}.norm1.norm.weight": (d,),
            f"{block}.scale_shift_table": (3, d),
            f"{block}.attn1.in_proj.weight": (2 * inner, d),
            f"{block}.attn1.conv1d.weight": (inner, 1, k),
            f"{block}.attn1.conv1d.bias": (inner,),
            f"{block}.attn1.x_proj.weight": (rank + 32, inner),
            f"{block}.attn1.dt_proj.weight": (inner, rank),
            f"{block}.attn1.dt_proj.bias": (inner,),
            f"{block}.attn1.A_log": (inner, 16),
            f"{block}.attn1.D": (inner,),
            f"{block}.attn1.out_proj.weight": (d, inner),
        }
        if i >= depth - (depth - 1) // 2:  # is_skip_list
            if d <= 512:
                keys[f"{block}.skip_linear.weight"], keys[f"{block}.skip_linear.bias"] = (d, 2 * d), (d,)
            else:
                for j in (0, 1):
                    keys[f"{block}.skip_linear.{j}.weight"], keys[f"{block}.skip_linear.{j}.bias"] = (d, d), (d,)
    return keys


def _dim_teng_pairs(m) -> dict[str, torch.Tensor]:
    """Official key -> the tensor of ours it must equal (in the official shape)."""
    pairs = {
        "pos_embed.proj.weight": m.x_embedder.proj.weight,
        "label_emb.weight": m.label_token.weight,
        "additional_embed": m.pos_embed,
        "adaln_single.emb.timestep_embedder.linear_1.weight": m.t_embedder.mlp[0].weight,
        "adaln_single.emb.timestep_embedder.linear_2.bias": m.t_embedder.mlp[2].bias,
        "adaln_single.emb.class_embedder.embedding_table.weight": m.label_adaln.weight,
        "adaln_single.linear.weight": m.t_block[1].weight,
        "a4m_adapter.first_smoother.weight": m.first_conv.weight,
        "a4m_adapter.last_smoother.bias": m.last_conv.bias,
        "a4m_adapter.pad_token": m.padding.tokens.t()[None],  # (1, d, k)
        "a4m_adapter.pad_token_dec_split": m.split_tokens[None],  # (1, k, d)
        "transformer_blocks.2.norm1.norm.weight": m.blocks[2].norm.weight,
        "transformer_blocks.2.scale_shift_table": m.blocks[2].scale_shift_table,
        "transformer_blocks.4.skip_linear.weight": m.blocks[4].skip_proj.weight,
        "norm_out.norm.weight": m.norm_final.weight,
        "proj_out_1.weight": m.final_modulation[1].weight,
        "proj_out_2.bias": m.linear_out.bias,
    }
    for name in (
        "in_proj.weight",
        "conv1d.weight",
        "conv1d.bias",
        "x_proj.weight",
        "dt_proj.weight",
        "dt_proj.bias",
        "A_log",
        "D",
        "out_proj.weight",
    ):
        pairs[f"transformer_blocks.3.attn1.{name}"] = m.blocks[3].mixer.get_parameter(name)
    return pairs


def _dim_teng_official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    return _random_like(_dim_teng_official_keys(5, 64, 2, 3, 10, 4), torch.Generator().manual_seed(seed))


def test_dim_teng_official_nnet_ema_loads_into_the_right_parameters(tmp_path):
    state = _dim_teng_official_state()
    state["a4m_adapter.pad_token"][0, 5, 1] = 7.0  # channel 5 of padding token 1
    state["a4m_adapter.pad_token_dec_split"][0, 2, 9] = 8.0  # channel 9 of split token 2
    torch.save(state, tmp_path / "nnet_ema.pth")  # train_ldm_discrete.py saves nnet_ema.state_dict() as is
    model = zoo.create_model("dim-teng-tiny", pretrained=tmp_path / "nnet_ema.pth").eval()
    assert model.padding.tokens[1, 5] == 7.0 and model.split_tokens[2, 9] == 8.0
    for key, ours in _dim_teng_pairs(model).items():
        assert torch.equal(ours, state[key]), key
    # adapter_attn4mamba.py lateral_token_pad: column w+i of every row and row h+i hold pad_token[0, :, i]
    grid = model.padding.pad(torch.zeros(1, 16, 64), 4, 4).reshape(7, 7, 64)
    for i in range(3):
        assert torch.equal(grid[0, 4 + i], state["a4m_adapter.pad_token"][0, :, i])
        assert torch.equal(grid[4 + i, 0], state["a4m_adapter.pad_token"][0, :, i])
    # every official tensor lands somewhere, once: the model holds exactly as many numbers
    assert sum(v.numel() for v in state.values()) == sum(p.numel() for p in model.parameters())

    exported = export_state_dict(model, "dim-teng")  # the inverse: our names back to the official ones
    assert _shapes(exported) == _shapes(state) and all(torch.equal(exported[k], v) for k, v in state.items())
    again = zoo.create_model("dim-teng-tiny", pretrained=exported).eval()
    x, t, y = _inputs((2, 3, 8, 8))
    with torch.no_grad():
        assert torch.equal(again(x, t, y), model(x, t, y))


def test_dim_teng_official_layout_is_strict_and_names_the_keys(tmp_path):
    good = _dim_teng_official_state()
    missing = {k: v for k, v in good.items() if k != "transformer_blocks.3.attn1.A_log"}
    with pytest.raises(
        ValueError,
        match=r"Mamba2DModel\) does not fit dim-teng-tiny: 1 missing "
        r"\(transformer_blocks\.3\.attn1\.A_log\)$",
    ):
        zoo.create_model("dim-teng-tiny", pretrained=missing)
    extra = {**good, "transformer_blocks.0.ff.net.0.proj.weight": torch.zeros(256, 64)}  # a no_ff=False model
    with pytest.raises(ValueError, match=r"1 unexpected \(transformer_blocks\.0\.ff\.net\.0\.proj\.weight\)"):
        zoo.create_model("dim-teng-tiny", pretrained=extra)
    untransposed = {**good, "a4m_adapter.pad_token": torch.zeros(1, 3, 64)}
    with pytest.raises(
        ValueError,
        match=r"1 mis-shaped \(a4m_adapter\.pad_token \(1, 3, 64\) in the checkpoint "
        r"vs \(1, 64, 3\) in the model \(padding\.tokens\)\)",
    ):
        zoo.create_model("dim-teng-tiny", pretrained=untransposed)
    torch.save(good, tmp_path / "nnet_ema.pth")
    fit = r"nnet_ema\.pth: the official DiM layout .* does not fit dim-teng-tiny depth=7: 26 missing"
    fit += r" \(transformer_blocks\.5\.scale_shift_table;.*2 unexpected \(transformer_blocks\.3\.skip_linear"
    with pytest.raises(ValueError, match=fit):
        zoo.create_model("dim-teng-tiny", pretrained=tmp_path / "nnet_ema.pth", depth=7)
    with pytest.raises(ValueError, match=r"pos_embed \(1, 18, 64\) in the checkpoint vs \(1, 66, 64\).*input_size=8"):
        zoo.create_model("dim-teng-tiny", pretrained=tmp_path / "nnet_ema.pth", input_size=16)


def test_dim_teng_official_file_as_init_from_is_resized(tmp_path):
    from ablations.run_folder import init_from_run

    torch.save(_dim_teng_official_state(), tmp_path / "nnet_ema.pth")  # as the 512 fine-tune starts from 256
    model = zoo.create_model("dim-teng-tiny", input_size=16)
    assert init_from_run(model, tmp_path / "nnet_ema.pth", family="dim-teng") == ["pos_embed"]
    assert model.pos_embed.shape == (1, 66, 64)


@pytest.mark.parametrize(
    "name, depth, d, c, classes, grid",
    [
        ("dim-teng-h/2", 49, 1536, 4, 1000, 16),
        ("dim-teng-h/2-512", 49, 1536, 4, 1000, 32),
        ("dim-teng-l/2", 49, 1024, 4, 1000, 16),
        ("dim-teng-s/2-cifar10", 25, 512, 3, 10, 16),
    ],
)
def test_full_size_dim_teng_official_layouts_on_meta(name, depth, d, c, classes, grid):
    keys = _dim_teng_official_keys(depth, d, 2, c, classes, grid)
    with torch.device("meta"):
        model = zoo.create_model(name, pretrained={k: torch.empty(s) for k, s in keys.items()})
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(math.prod(s) for s in keys.values())
    if name == "dim-teng-s/2-cifar10":  # configs/cifar10_S_DiM.py, counted on the official model (issue #14)
        assert count == 50_568_716


def test_dim_teng_state_dict_in_our_names_loads(tmp_path):
    model = zoo.create_model("dim-teng-tiny")
    torch.save(model.state_dict(), tmp_path / "ours.pt")
    loaded = zoo.create_model("dim-teng-tiny", pretrained=tmp_path / "ours.pt")
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    )


# ---------------------------------------------------------------- the training side and the CLI


def test_init_from_and_teacher_accept_official_files(tmp_path):
    from ablations.experiment import DistillConfig, RunConfig
    from ablations.run_folder import CheckpointError
    from ablations.train import Trainer

    teacher = zoo.create_model("pixart-tiny", in_channels=3)
    with torch.no_grad():
        for p in teacher.parameters():
            p.normal_(0, 0.05)
    torch.save({"state_dict": export_state_dict(teacher, "pixart")}, tmp_path / "PixArt-tiny.pth")
    spec = DistillConfig(teacher=str(tmp_path / "PixArt-tiny.pth"))
    student = RunConfig(model="t2md-tiny", space="pixel", batch=2, steps=1, distill=spec)
    trainer = Trainer(student, tmp_path / "student")
    assert torch.equal(trainer.teacher.blocks[1].mlp.fc1.weight, teacher.blocks[1].mlp.fc1.weight)
    assert torch.equal(trainer.model.blocks[0].attn.qkv.weight, teacher.blocks[0].attn.qkv.weight)  # transferred

    config = RunConfig(
        model="pixart-tiny", space="pixel", batch=2, steps=1, init_from=str(tmp_path / "PixArt-tiny.pth")
    )
    assert torch.equal(Trainer(config, tmp_path / "init").model.t_block[1].weight, teacher.t_block[1].weight)
    (tmp_path / "bad.pth").write_text("x")
    with pytest.raises(CheckpointError, match="bad.pth: not a checkpoint"):
        Trainer(
            RunConfig(model="pixart-tiny", space="pixel", steps=1, init_from=str(tmp_path / "bad.pth")),
            tmp_path / "bad",
        )


def test_zoo_show_says_where_official_weights_are():
    from zoo.cli import app

    shown = CliRunner().invoke(app, ["show", "pixart-alpha-xl/2-1024-ms"])
    assert shown.exit_code == 0 and "PixArt-XL-2-1024-MS.pth" in shown.output
    assert 'zoo.create_model("pixart-alpha-xl/2-1024-ms", pretrained=PATH)' in shown.output
    assert (
        "dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt" in CliRunner().invoke(app, ["show", "dit-xl/2"]).output
    )
    assert "none are published" in CliRunner().invoke(app, ["show", "dit-s/2"]).output
    shown = CliRunner().invoke(app, ["show", "dim-teng-h/2"])
    assert "1ETllUm8Dpd8-vDHefQEXEWF9whdbyhL5" in shown.output and "nnet_ema.pth" in shown.output
    assert 'zoo.create_model("dim-teng-h/2", pretrained=PATH)' in shown.output

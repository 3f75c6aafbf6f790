"""SANA and its ReLU linear attention: the op against the O(L^2) definition (values, gradients, FLOPs, meta),
the model against diffusers' ``SanaTransformer2DModel`` (same weights through the diffusers checkpoint layout,
outputs within 1e-5 in float32 on the CPU, square and non-square latents, with and without the 4K model's
sin-cos table), loading a ``save_pretrained`` folder with ``pretrained=``, the full-size counts, and NVlabs/Sana's
own ``.pth`` layout (written down here from its code): loaded, compared with the same weights through diffusers'
names and diffusers' model, exported back, its ``pos_embed`` buffer checked, bf16 files cast."""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

import zoo
from zoo import ops
from zoo.checkpoints import export_state_dict
from zoo.ops import kernel_choice, linear_attention
from zoo.ops.dispatch import simulate_device
from zoo.ops.flops import linear_attention_flops
from zoo.ops.linear_attention import linear_attention_reference, linear_attention_torch

# ---------------------------------------------------------------- the op


def _qkv(b=2, h=3, lq=37, lk=37, d=8, dv=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.randn(*shape, generator=g, dtype=dtype) for shape in ((b, h, lq, d), (b, h, lk, d), (b, h, lk, dv))
    )


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_linear_attention_matches_the_quadratic_definition(device, monkeypatch):
    module = importlib.import_module("zoo.ops.linear_attention")  # (the package attribute is the function)
    monkeypatch.setattr(module, "CHUNK", 16)  # several chunks on the CPU row
    q, k, v = _qkv(lq=37, lk=29, dv=5)
    leaves = [a.clone().requires_grad_(True) for a in (q, k, v)]
    with simulate_device(device):
        out = linear_attention(*leaves)
    assert kernel_choice.last_used()["linear_attention"] == ("torch" if device == "cuda" else "torch-chunked")
    ref_leaves = [a.clone().requires_grad_(True) for a in (q, k, v)]
    ref = linear_attention_reference(*ref_leaves)
    assert out.shape == (2, 3, 37, 5) and torch.allclose(out, ref, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(out)
    (out * grad).sum().backward()
    (ref * grad).sum().backward()
    for ours, theirs in zip(leaves, ref_leaves, strict=True):
        assert torch.allclose(ours.grad, theirs.grad, rtol=1e-4, atol=1e-6)


def test_linear_attention_dtype_chunks_and_meta():
    q, k, v = _qkv(dtype=torch.float32)
    whole = linear_attention_torch(q, k, v)
    assert torch.allclose(linear_attention_torch(q, k, v, chunk=7), whole, atol=1e-6)
    half = linear_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert half.dtype == torch.bfloat16  # float32 sums, cast back (diffusers' processor)
    with pytest.raises(ValueError, match="do not fit"):
        linear_attention(q, k[..., :4], v)
    meta = linear_attention(*(a.to("meta") for a in _qkv(dv=6)))
    assert meta.device.type == "meta" and meta.shape == (2, 3, 37, 6)
    torch.library.opcheck(torch.ops.zoo.linear_attention, (*_qkv(dtype=torch.float32), 1e-15))


def test_linear_attention_flops_are_the_two_state_matmuls():
    q, k, v = (a.to("meta") for a in _qkv(b=1, h=4, lq=100, lk=60, d=32, dv=16))
    with FlopCounterMode(display=False) as counter:
        linear_attention(q, k, v)
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    assert (
        counts["zoo.linear_attention"]
        == 2 * 4 * (60 + 100) * 32 * 17
        == linear_attention_flops(q.shape, k.shape, v.shape)
    )


# ---------------------------------------------------------------- the model against diffusers

_TINY = dict(input_size=8, hidden_size=64, depth=2, head_dim=16, cross_heads=4, caption_channels=32, caption_tokens=6)


def _diffusers_sana(interpolation_scale=None):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    ref = diffusers.SanaTransformer2DModel(
        in_channels=32,
        out_channels=32,
        num_attention_heads=4,
        attention_head_dim=16,
        num_layers=2,
        num_cross_attention_heads=4,
        cross_attention_head_dim=16,
        cross_attention_dim=64,
        caption_channels=32,
        mlp_ratio=2.5,
        sample_size=8,
        patch_size=1,
        interpolation_scale=interpolation_scale,
    ).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.1)
    return ref


def _inputs(shape):
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(shape, generator=g), torch.randn(shape[0], 6, 32, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    return x, torch.tensor([10.0, 500.0]), y, mask


def _theirs(ref, x, t, y, mask):
    with torch.no_grad():
        return ref(x, encoder_hidden_states=y, timestep=t, encoder_attention_mask=mask.long(), return_dict=False)[0]


def test_sana_tiny_matches_diffusers_and_loads_its_folder(tmp_path):
    ref = _diffusers_sana()
    folder = tmp_path / "Sana_tiny_diffusers" / "transformer"
    ref.save_pretrained(folder)
    with pytest.warns(UserWarning, match="holds no y_embedder.y_embedding"):
        model = zoo.create_model("sana-tiny", pretrained=folder.parent).eval()  # the pipeline folder
    for shape in ((2, 32, 8, 8), (2, 32, 6, 10)):  # the training grid and a non-square one
        x, t, y, mask = _inputs(shape)
        theirs = _theirs(ref, x, t, y, mask)
        with torch.no_grad():
            ours = model(x, t, y, mask)
        assert ours.shape == shape and (ours - theirs).abs().max() < 1e-5
    exported = export_state_dict(model, "sana", layout="diffusers")
    assert exported.keys() == ref.state_dict().keys()
    assert all(torch.equal(exported[k], v) for k, v in ref.state_dict().items())


def test_sana_4k_position_table_matches_diffusers():
    ref = _diffusers_sana(interpolation_scale=2.0)
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    model = zoo.create_model("sana-1600m-4k", **{**_TINY, "interpolation_scale": 2.0})
    with pytest.warns(UserWarning):
        from zoo.checkpoints import load_pretrained

        load_pretrained(model.eval(), state, "sana")
    for shape in ((1, 32, 8, 8), (1, 32, 4, 12)):
        x, t, y, mask = _inputs((2, *shape[1:]))
        with torch.no_grad():
            assert (model(x, t, y, mask) - _theirs(ref, x, t, y, mask)).abs().max() < 1e-5


def test_sana_flops_equal_diffusers_count():
    """Our formula for the linear attention is the two matmuls diffusers runs (its bmms): the counts agree op
    for op. Torch counts nothing for diffusers' masked cross-attention on the CPU (SDPA's CPU kernel has no
    formula); ours counts it through ``zoo.attention``, so the totals differ by exactly that."""
    ref = _diffusers_sana()
    model = zoo.create_model("sana-tiny")
    x, t, y, mask = _inputs((2, 32, 8, 6))
    counts = []
    for run in (lambda: _theirs(ref, x, t, y, mask), lambda: model(x, t, y, mask)):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            run()
        counts.append({str(op): n for op, n in counter.get_flop_counts()["Global"].items()})
    theirs, ours = counts
    assert ours["zoo.linear_attention"] == theirs["aten.bmm"] > 0
    assert ours["zoo.attention"] == 2 * (2 * 2 * 4 * 48 * 6 * 16 * 2)  # 2 blocks; batch 2, 4 heads, 48 x 6 tokens
    assert sum(ours.values()) - ours["zoo.attention"] == sum(theirs.values())
    assert ours["aten.convolution"] == theirs["aten.convolution"]


def test_full_size_entries_and_bench_flops_on_meta():
    from bench.cli import app

    with torch.device("meta"):
        for name, paper in (("sana-600m", 590), ("sana-1600m", 1604), ("sana-1600m-4k", 1604)):
            params = sum(p.numel() for p in zoo.create_model(name).parameters()) / 1e6
            assert abs(params - paper) / paper < 0.01
    result = CliRunner().invoke(app, ["flops", "-m", "sana-1600m", "-r", "1024", "--json", "--no-store"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["input_shape"] == [1, 32, 32, 32]  # DC-AE: 32x down
    tokens, heads, layers = 32 * 32, 70, 20
    assert row["by_category"]["linear attention"] == layers * 2 * heads * 2 * tokens * 32 * 33
    assert zoo.get_entry("sana-1600m").weights and ops.linear_attention is linear_attention


# ---------------------------------------------------------------- NVlabs/Sana's own .pth layout
# Written down here from NVlabs/Sana's code (diffusion/model/nets/sana.py, sana_multi_scale.py, sana_blocks.py,
# basic_modules.py: SanaMS with attn_type linear, ffn_type glumbconv, y_norm) and from what diffusers'
# scripts/convert_sana_to_diffusers.py maps each key to, independently of zoo.checkpoints.


def _sana_official_keys(depth: int, d: int, cap: int, tokens: int, grid: int, c_in: int = 32, p: int = 1):
    """The ``state_dict`` of a ``.pth`` file: SanaMS's parameters and buffers (``pos_embed``: the training
    grid's table, ``y_embedder.y_embedding``: the null caption), GLUMBConv hidden h = int(2.5 d)."""
    h = int(2.5 * d)
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
        "attention_y_norm.weight": (d,),
        "final_layer.scale_shift_table": (2, d),
        "final_layer.linear.weight": (p * p * c_in, d),
        "final_layer.linear.bias": (p * p * c_in,),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        keys |= {
            b + "scale_shift_table": (6, d),
            b + "attn.qkv.weight": (3 * d, d),  # LiteLA: timm Attention without qkv bias
            b + "attn.proj.weight": (d, d),
            b + "attn.proj.bias": (d,),
            b + "cross_attn.q_linear.weight": (d, d),
            b + "cross_attn.q_linear.bias": (d,),
            b + "cross_attn.kv_linear.weight": (2 * d, d),
            b + "cross_attn.kv_linear.bias": (2 * d,),
            b + "cross_attn.proj.weight": (d, d),
            b + "cross_attn.proj.bias": (d,),
            b + "mlp.inverted_conv.conv.weight": (2 * h, d, 1, 1),
            b + "mlp.inverted_conv.conv.bias": (2 * h,),
            b + "mlp.depth_conv.conv.weight": (2 * h, 1, 3, 3),
            b + "mlp.depth_conv.conv.bias": (2 * h,),
            b + "mlp.point_conv.conv.weight": (d, h, 1, 1),  # use_bias (True, True, False)
        }
    return keys


def _sana_sincos(dim: int, grid: int, scale: float) -> torch.Tensor:
    """NVlabs/Sana's ``get_2d_sincos_pos_embed(dim, grid, pe_interpolation=scale, base_size=grid)`` (numpy,
    float32 positions, meshgrid w first, sin then cos per axis), as ``initialize_weights`` fills ``pos_embed``."""
    import numpy as np

    pos = np.arange(grid, dtype=np.float32) / (grid / grid) / scale
    mesh = np.stack(np.meshgrid(pos, pos), axis=0).reshape(2, -1)
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))

    def one(coords):
        out = np.einsum("m,d->md", coords, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return torch.from_numpy(np.concatenate([one(mesh[0]), one(mesh[1])], axis=1)).float()[None]


def _official_state(seed=5, grid=8, scale=None):
    g = torch.Generator().manual_seed(seed)
    keys = _sana_official_keys(2, 64, 32, 6, grid)
    state = {k: torch.randn(s, generator=g) * 0.1 for k, s in keys.items()}
    state["pos_embed"] = torch.zeros(keys["pos_embed"]) if scale is None else _sana_sincos(64, grid, scale)
    return state


def _official_to_diffusers(state: dict, depth: int, qkv_order=(0, 1, 2)) -> dict:
    """What convert_sana_to_diffusers.py does: renames, attn.qkv chunked in 3 (q, k, v) along dim 0,
    kv_linear in 2 (k, v); pos_embed and y_embedding not carried over."""
    prefixes = {
        "x_embedder.proj.": "patch_embed.proj.",
        "t_embedder.mlp.0.": "time_embed.emb.timestep_embedder.linear_1.",
        "t_embedder.mlp.2.": "time_embed.emb.timestep_embedder.linear_2.",
        "t_block.1.": "time_embed.linear.",
        "y_embedder.y_proj.fc1.": "caption_projection.linear_1.",
        "y_embedder.y_proj.fc2.": "caption_projection.linear_2.",
        "attention_y_norm.": "caption_norm.",
        "final_layer.linear.": "proj_out.",
        "final_layer.scale_shift_table": "scale_shift_table",
    }
    out = {}
    for key, value in state.items():
        for old, new in prefixes.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = value
    for i in range(depth):
        b, t = f"blocks.{i}.", f"transformer_blocks.{i}."
        out[t + "scale_shift_table"] = state[b + "scale_shift_table"]
        q, k, v = (state[b + "attn.qkv.weight"].chunk(3)[j] for j in qkv_order)
        out |= {t + "attn1.to_q.weight": q, t + "attn1.to_k.weight": k, t + "attn1.to_v.weight": v}
        for leaf in ("weight", "bias"):
            out[t + f"attn1.to_out.0.{leaf}"] = state[b + f"attn.proj.{leaf}"]
            out[t + f"attn2.to_q.{leaf}"] = state[b + f"cross_attn.q_linear.{leaf}"]
            out[t + f"attn2.to_k.{leaf}"], out[t + f"attn2.to_v.{leaf}"] = state[
                b + f"cross_attn.kv_linear.{leaf}"
            ].chunk(2)
            out[t + f"attn2.to_out.0.{leaf}"] = state[b + f"cross_attn.proj.{leaf}"]
            out[t + f"ff.conv_inverted.{leaf}"] = state[b + f"mlp.inverted_conv.conv.{leaf}"]
            out[t + f"ff.conv_depth.{leaf}"] = state[b + f"mlp.depth_conv.conv.{leaf}"]
        out[t + "ff.conv_point.weight"] = state[b + "mlp.point_conv.conv.weight"]
    return out


def _run(model, shape=(2, 32, 8, 6)):
    x, t, y, mask = _inputs(shape)
    with torch.no_grad():
        return model.eval()(x, t, y, mask)


def test_sana_official_pth_loads_like_the_diffusers_layout_and_round_trips(tmp_path):
    import warnings

    from zoo.checkpoints import load_pretrained

    state = _official_state()
    assert {k: tuple(v.shape) for k, v in export_state_dict(zoo.create_model("sana-tiny"), "sana").items()} == (
        _sana_official_keys(2, 64, 32, 6, 8)
    )
    path = tmp_path / "Sana_tiny.pth"
    torch.save({"state_dict": state}, path)  # the published container
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the null caption is in the file: nothing kept, no warning
        model = zoo.create_model("sana-tiny", pretrained=path)
    report = load_pretrained(zoo.create_model("sana-tiny"), path, "sana")
    assert (report.layout, report.dropped, report.kept) == ("official", ["pos_embed"], [])
    ours = model.state_dict()
    assert set(ours) == set(state) - {"pos_embed"} and all(torch.equal(v, state[k]) for k, v in ours.items())

    # the same weights through diffusers' names (the conversion script's split), read by the diffusers layout
    with pytest.warns(UserWarning, match="holds no y_embedder.y_embedding"):
        via_diffusers = zoo.create_model("sana-tiny", pretrained=_official_to_diffusers(state, 2))
    out = _run(model)
    assert torch.equal(out, _run(via_diffusers))
    with pytest.warns(UserWarning):  # q and k swapped: the comparison would see it
        swapped = zoo.create_model("sana-tiny", pretrained=_official_to_diffusers(state, 2, qkv_order=(1, 0, 2)))
    assert (out - _run(swapped)).abs().max() > 1e-3

    exported = export_state_dict(model, "sana", layout="official")
    assert exported.keys() == state.keys() and all(torch.equal(exported[k], v) for k, v in state.items())
    torch.save({"state_dict": exported}, tmp_path / "again.pth")
    assert torch.equal(_run(zoo.create_model("sana-tiny", pretrained=tmp_path / "again.pth")), out)


def test_sana_official_pth_against_diffusers_model():
    ref = _diffusers_sana()
    state = _official_state(seed=6)
    ref.load_state_dict(_official_to_diffusers(state, 2), strict=True)
    model = zoo.create_model("sana-tiny", pretrained=state)
    x, t, y, mask = _inputs((2, 32, 8, 8))
    assert (_run(model, x.shape) - _theirs(ref, x, t, y, mask)).abs().max() < 1e-5


def test_sana_official_pth_bf16_tables_and_errors(tmp_path):
    from zoo.errors import CheckpointMismatch

    tiny4k = dict(_TINY, interpolation_scale=2.0)
    # the 4K file: bf16 (Sana_1600M_4Kpx_BF16.pth), its sin-cos table included, cast to the model's float32
    state = {k: v.bfloat16() for k, v in _official_state(scale=2.0).items()}
    path = tmp_path / "Sana_4K_tiny_BF16.pth"
    torch.save({"state_dict": state}, path)
    model = zoo.create_model("sana-1600m-4k", pretrained=path, **tiny4k)
    assert all(v.dtype == torch.float32 and torch.equal(v, state[k].float()) for k, v in model.state_dict().items())
    with torch.device("meta"):
        meta = zoo.create_model("sana-1600m-4k", pretrained=path, **tiny4k)
    assert {p.dtype for p in meta.parameters()} == {torch.float32}

    def fails(match, name="sana-tiny", **overrides):
        with pytest.raises(CheckpointMismatch, match=match) as error:
            zoo.create_model(name, pretrained=fixed, **overrides)
        assert "\n" not in str(error.value)

    fixed = dict(_official_state(), **{"blocks.1.cross_attn.kv_linear.weight": torch.zeros(128, 65)})
    fails(r"blocks\.1\.cross_attn\.kv_linear\.weight \(128, 65\) in the checkpoint vs \(128, 64\)")
    fixed = _official_state(scale=2.0)  # the 4K table into a model without one
    fails("not the zero buffer.*interpolation_scale=2, input_size=8")
    fixed = _official_state(scale=1.0)  # the 2K model's pe_interpolation into the 4K one
    fails("pe_interpolation=2.*pass interpolation_scale=1", "sana-1600m-4k", **tiny4k)
    fixed = _official_state()  # zeros: a model without a table
    fails("pass interpolation_scale=None", "sana-1600m-4k", **tiny4k)
    fixed = _official_state(grid=16, scale=2.0)
    fails("16x16 training grid.*pass input_size=16", "sana-1600m-4k", **tiny4k)
    # a zero buffer of another training grid (the 512 px files into a 1024 px entry): unused, accepted
    zoo.create_model("sana-tiny", pretrained=_official_state(grid=4))
    # SANA-Sprint's logvar head (unused by the denoiser): dropped and reported
    from zoo.checkpoints import load_pretrained

    logvar = {"logvar_linear.weight": torch.ones(1, 64), "logvar_linear.bias": torch.ones(1)}
    report = load_pretrained(zoo.create_model("sana-tiny"), dict(_official_state(), **logvar), "sana")
    assert (report.layout, sorted(report.dropped)) == ("official", [*sorted(logvar), "pos_embed"])
    fixed = dict(_official_state(), **{"blocks.0.attn.q_norm.weight": torch.ones(64)})  # SANA 1.5
    fails("1 unexpected \\(blocks.0.attn.q_norm.weight\\)")


@pytest.mark.parametrize(
    "name,depth,width,grid",
    [("sana-600m", 28, 1152, 32), ("sana-1600m", 20, 2240, 32), ("sana-1600m-4k", 20, 2240, 128)],
)
def test_sana_paper_size_official_layout_loads_on_meta(name, depth, width, grid):
    import math

    keys = _sana_official_keys(depth, width, 2304, 300, grid)
    state = {k: torch.empty(s, device="meta", dtype=torch.bfloat16) for k, s in keys.items()}
    with torch.device("meta"):
        model = zoo.create_model(name, pretrained=state)
    assert sum(p.numel() for p in model.parameters()) == sum(
        math.prod(s) for k, s in keys.items() if k not in ("pos_embed", "y_embedder.y_embedding")
    )

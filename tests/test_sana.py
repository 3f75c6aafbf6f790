"""SANA and its ReLU linear attention: the op against the O(L^2) definition (values, gradients, FLOPs, meta),
the model against diffusers' ``SanaTransformer2DModel`` (same weights through the diffusers checkpoint layout,
outputs within 1e-5 in float32 on the CPU, square and non-square latents, with and without the 4K model's
sin-cos table), loading a ``save_pretrained`` folder with ``pretrained=``, and the full-size counts."""

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

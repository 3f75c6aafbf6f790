"""DiG (hustvl/DiG) and its op, gated linear attention: the op against the step-by-step recurrence (and fla's
pure-PyTorch reference when fla is installed), the CUDA rows' glue, the FLOP formula, and the model."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

import zoo
from zoo import ops
from zoo.ops import kernel_choice
from zoo.ops.dispatch import simulate_device
from zoo.ops.flops import gated_linear_attention_flops
from zoo.ops.gated_linear_attention import gla_chunked, gla_reference

GLA = importlib.import_module("zoo.ops.gated_linear_attention")  # (the package attribute is the function)


def _qkvg(b=2, h=3, length=150, dk=8, dv=5, dtype=torch.float64, seed=0, gate_scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(b, h, length, dk, generator=gen, dtype=dtype) for _ in range(2))
    v = torch.randn(b, h, length, dv, generator=gen, dtype=dtype)
    g = F.logsigmoid(gate_scale * torch.randn(b, h, length, dk, generator=gen, dtype=dtype))
    return q, k, v, g


def _fla_naive():
    """fla's ``naive_recurrent_gla`` (layout (B, T, H, K)), read from its file so that fla's package import
    (Triton kernels, einops) is not needed; None where fla is not installed."""
    try:
        from fla.ops.gla.naive import naive_recurrent_gla

        return naive_recurrent_gla
    except Exception:
        pass
    spec = importlib.util.find_spec("fla")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "ops", "gla", "naive.py")
    if not os.path.exists(path):
        return None
    module_spec = importlib.util.spec_from_file_location("_fla_gla_naive", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.naive_recurrent_gla


def _check_against_reference(out, leaves, ref_fn, rtol=1e-4, atol=1e-4):
    ref_leaves = [a.detach().clone().requires_grad_(True) for a in leaves]
    ref = ref_fn(*ref_leaves)
    assert out.shape == ref.shape and torch.allclose(out.double(), ref.double(), rtol=rtol, atol=atol)
    grad = torch.randn_like(out)
    (out * grad).sum().backward()
    (ref * grad.to(ref.dtype)).sum().backward()
    for ours, theirs in zip(leaves, ref_leaves, strict=True):
        assert torch.allclose(ours.grad.double(), theirs.grad.double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_gla_matches_the_recurrence(device, monkeypatch):
    monkeypatch.setattr(GLA, "fla_chunk_gla", lambda: None)  # the PyTorch row, fla installed or not
    leaves = [a.clone().requires_grad_(True) for a in _qkvg()]  # 150 tokens: three chunks, the last partial
    with simulate_device(device):
        out = ops.gated_linear_attention(*leaves)
    assert kernel_choice.last_used()["gated_linear_attention"] == "torch-chunked"
    _check_against_reference(out, leaves, gla_reference)


def test_gla_strong_decay_and_scale_dtype_meta():
    q, k, v, g = _qkvg(dtype=torch.float32)
    strong = torch.full_like(g, -80.0)  # exp(80) would overflow a factorised exp(b_t) exp(-b_s)
    out = ops.gated_linear_attention(q, k, v, strong)
    assert torch.isfinite(out).all() and torch.allclose(out.double(), gla_reference(q, k, v, strong), atol=1e-5)
    assert torch.allclose(
        ops.gated_linear_attention(q, k, v, g, scale=1.0).double(), gla_reference(q, k, v, g, 1.0), atol=1e-4
    )
    assert torch.allclose(gla_chunked(q, k, v, g, 0.5, chunk=7), gla_chunked(q, k, v, g, 0.5), atol=1e-4)
    assert ops.gated_linear_attention(*(a.bfloat16() for a in (q, k, v, g))).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="do not fit"):
        ops.gated_linear_attention(q, k[..., :4], v, g)
    meta = ops.gated_linear_attention(*(a.to("meta") for a in (q, k, v, g)))
    assert meta.device.type == "meta" and meta.shape == (2, 3, 150, 5)
    small = _qkvg(length=20, dtype=torch.float32)
    torch.library.opcheck(torch.ops.zoo.gated_linear_attention, (*small, 0.35))


def test_gla_matches_fla_naive_reference():
    naive = _fla_naive()
    if naive is None:
        pytest.skip("flash-linear-attention (fla) is not installed: no fla.ops.gla.naive to compare with")
    leaves = [a.clone().requires_grad_(True) for a in _qkvg(dtype=torch.float32)]
    out = ops.gated_linear_attention(*leaves)

    def fla(q, k, v, g):  # fla's layout is (B, T, H, K); its default scale is K ** -0.5, as ours
        o, _ = naive(*(a.transpose(1, 2) for a in (q, k, v, g)))
        return o.transpose(1, 2)

    _check_against_reference(out, leaves, fla)


def test_gla_fla_row_glue_through_the_naive_oracle(monkeypatch):
    """The CUDA row that calls fla's chunk_gla, run on CPU tensors with fla's naive recurrence in its place."""

    def oracle(q, k, v, g, scale=None):  # chunk_gla's signature and layout
        o = gla_reference(*(a.transpose(1, 2) for a in (q, k, v, g)), scale).transpose(1, 2)
        return o.to(q.dtype), None

    monkeypatch.setattr(GLA, "fla_chunk_gla", lambda: oracle)
    leaves = [a.clone().requires_grad_(True) for a in _qkvg(length=40)]
    with simulate_device("cuda"):
        out = ops.gated_linear_attention(*leaves)
    assert kernel_choice.last_used()["gated_linear_attention"] == "fla"
    _check_against_reference(out, leaves, gla_reference)


def test_gla_flops_are_the_chunked_matmuls():
    q, k, v, g = (a.to("meta") for a in _qkvg(b=1, h=4, length=300, dk=32, dv=16))
    with FlopCounterMode(display=False) as counter:
        ops.gated_linear_attention(q, k, v, g)
    counts = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    per_token = 64 * 32 + 64 * 16 + 2 * 32 * 16
    assert (
        counts["zoo.gated_linear_attention"]
        == 2 * 4 * 300 * per_token
        == gated_linear_attention_flops(q.shape, v.shape)
    )
    assert gated_linear_attention_flops((1, 1, 10, 4), (1, 1, 10, 4)) == 2 * 10 * (10 * 4 * 2 + 2 * 16)


# ---------------------------------------------------------------- the model


def _randomise(model):
    torch.manual_seed(0)
    for p in model.parameters():  # adaLN-Zero starts as the identity: give every branch a signal
        if p.dim() > 1 and not p.abs().sum():
            torch.nn.init.normal_(p, std=0.05)
    return model


@pytest.mark.parametrize("hw", [(8, 8), (8, 12), (6, 10)])
def test_tiny_forward_any_grid_and_gradients(hw):
    model = _randomise(zoo.create_model("dig-tiny", depth=3))  # odd: the row-major order is restored at the end
    x = torch.randn(2, 4, *hw)
    out = model(x, torch.tensor([3.0, 500.0]), torch.tensor([1, 10]))
    assert out.shape == (2, 8, *hw) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert model(x, torch.tensor([3.0, 500.0])).shape == out.shape  # no labels: the null label


def test_block_order_follows_the_official_loop():
    """On a square grid our bookkeeping (current grid, flips, transposes) is models_dig.py's loop verbatim (depth
    8: the flips and the transposes cancel, as at the paper depths)."""
    model = _randomise(zoo.create_model("dig-tiny", depth=8, long_skip=True)).eval()
    x, t, y = torch.randn(1, 4, 8, 8), torch.tensor([10.0]), torch.tensor([2])
    h = w = 4
    tokens = model.x_embedder(x) + zoo.layers.pos_embed.sincos_2d_like(x, 64, h, w)
    c = model.t_embedder(t) + model.y_embedder(y)
    skips, depth = [], len(model.blocks)
    for i, block in enumerate(model.blocks):
        tokens = block(tokens, c, (h, w), skips.pop() if i > depth // 2 else None).flip(1)
        if i % 2 == 1:
            tokens = tokens.reshape(1, h, w, -1).transpose(1, 2).flatten(1, 2)
        if i < depth // 2 - 1:
            skips.append(tokens)
    expected = zoo.layers.patch.unpatchify(model.final_layer(tokens, c), h, w, 2, 8)
    assert torch.allclose(model(x, t, y), expected, atol=1e-6)


def test_paper_entries_and_bench_flops_on_meta():
    from bench.cli import app

    with torch.device("meta"):
        model = zoo.create_model("dig-xl/2")
        block = model.blocks[0]
        assert (len(model.blocks), block.attn.num_heads, block.attn.key_dim, block.mlp.intermediate_size) == (
            28,
            18,
            576,
            3072,
        )
        for name in ("dig-s/2", "dig-b/2", "dig-l/2", "dig-xl/2", "dig-s/2-u", "dig-xl/2-u"):
            assert zoo.get_entry(name).family == "dig"
    result = CliRunner().invoke(app, ["flops", "-m", "dig-xl/2", "-r", "256", "--json", "--no-store"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    tokens, layers, heads = 256, 28, 18
    assert row["by_category"]["linear attention"] == layers * gated_linear_attention_flops(
        (1, heads, tokens, 32), (1, heads, tokens, 64)
    )
    assert row["by_category"]["linear attention"] > 0

"""DiT and U-ViT: forward passes at tiny size, non-square inputs, CFG, and DiT's MACs in closed form."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import zoo


def _randomise(model: torch.nn.Module) -> torch.nn.Module:
    """DiT zero-initialises its output layers; random weights make outputs informative for tests."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


def _meta_macs(name: str, latent: int) -> float:
    with torch.device("meta"):
        model = zoo.create_model(name)
        x = torch.empty(1, 4, latent, latent)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x, torch.zeros(1), torch.zeros(1, dtype=torch.long))
    return counter.get_total_flops() / 2


def dit_macs_closed_form(depth: int, d: int, patch: int, latent: int, c_in: int = 4, c_out: int = 8) -> int:
    """Forward multiply-accumulates of DiT at batch 1, derived by hand from the architecture."""
    L = (latent // patch) ** 2
    patch_embed = L * c_in * patch * patch * d
    t_embed = 256 * d + d * d
    per_block = L * (3 * d * d + d * d) + 2 * L * L * d + L * 8 * d * d + 6 * d * d  # qkv+proj, QK^T+AV, MLP, adaLN
    final = 2 * d * d + L * d * patch * patch * c_out
    return patch_embed + t_embed + depth * per_block + final


@pytest.mark.parametrize("name,depth,d,patch", [("dit-xl/2", 28, 1152, 2), ("dit-s/4", 12, 384, 4)])
def test_dit_macs_match_closed_form_and_paper(name, depth, d, patch):
    counted = _meta_macs(name, 32)
    assert counted == dit_macs_closed_form(depth, d, patch, 32)
    paper = zoo.get_entry(name).paper.gflops
    assert abs(counted / 1e9 - paper) / paper < 0.002


def test_dit_forward_any_grid_and_the_label_reaches_each_sample_alone():
    model = _randomise(zoo.create_model("dit-tiny")).eval()
    x, t, y = torch.randn(2, 4, 8, 12), torch.tensor([10, 500]), torch.tensor([1, 10])
    out = model(x, t, y)
    assert out.shape == (2, 8, 8, 12)
    other = model(x, t, torch.tensor([4, 10]))
    assert (other[0] - out[0]).abs().max() > 1e-3 and torch.allclose(other[1], out[1], atol=1e-6)
    with pytest.raises(ValueError, match="not divisible by the patch size 2"):
        model(torch.randn(1, 4, 9, 8), t[:1], y[:1])


def test_dit_trains_one_step():
    model = _randomise(zoo.create_model("dit-tiny"))
    out = model(torch.randn(2, 4, 8, 8), torch.tensor([1, 2]), torch.tensor([0, 1]))
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_uvit_forward_conditional_and_unconditional_and_other_grids():
    model = _randomise(zoo.create_model("uvit-tiny")).eval()
    out = model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), torch.tensor([0, 10]))
    assert out.shape == (2, 3, 8, 8)
    assert model(torch.randn(1, 3, 12, 8), torch.tensor([1]), torch.tensor([0])).shape == (1, 3, 12, 8)
    x = torch.randn(1, 3, 8, 8)  # no labels: the null label (10), as for every class model (zoo.models.base)
    assert torch.equal(model(x, torch.tensor([1])), model(x, torch.tensor([1]), torch.tensor([10])))
    uncond = zoo.create_model("uvit-tiny", num_classes=0)
    assert uncond.label_emb is None and uncond(x, torch.tensor([1])).shape == (1, 3, 8, 8)


def test_uvit_has_long_skips_in_lifo_order():
    with torch.device("meta"):
        model = zoo.create_model("uvit-h/2")
    assert len(model.in_blocks) == 14 and len(model.out_blocks) == 14  # "depth 28" is 29 blocks
    assert all(b.skip_linear is not None for b in model.out_blocks)
    assert all(b.skip_linear is None for b in model.in_blocks) and model.mid_block.skip_linear is None

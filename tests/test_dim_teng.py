"""DiM (Teng et al.): scan schedule, block-level permutations, ablation switches, non-square grids."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo.layers.scan_order import scan_permutation
from zoo.models.dim_teng import DiMBlock, cyclic_block_scans, official_block_scans


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_schedule_is_the_official_codes():
    # the official configs' block schedules (depth 25: S/2 on CIFAR-10; depth 49: L/2 and H/2)
    assert official_block_scans("1234", 25) == "1234123412341432143214321"
    assert official_block_scans("1234", 49) == "1234123412341234123412341432143214321432143214321"
    assert official_block_scans("12", 9) == "121212121" and official_block_scans("1", 9) == "1" * 9
    assert cyclic_block_scans("1234", 6) == "123412"
    model = zoo.create_model("dim-teng-tiny")
    assert model.block_scans == ["row", "row_reversed", "col", "row_reversed", "row"]  # 12321
    assert set(zoo.create_model("dim-teng-tiny", scan_patterns="1").block_scans) == {"row"}
    assert zoo.create_model("dim-teng-tiny", block_scans="44444").block_scans == ["col_reversed"] * 5
    for bad in (dict(scan_patterns="15"), dict(block_scans="1234")):
        with pytest.raises(ValueError, match="pattern numbers|patterns for 5 blocks"):
            zoo.create_model("dim-teng-tiny", **bad)
    with pytest.raises(ValueError, match="earlier blocks"):
        zoo.create_model("dim-teng-tiny", skips={2: (3,)})


def test_the_schedule_changes_what_a_model_with_the_same_weights_computes():
    torch.manual_seed(0)
    official = zoo.create_model("dim-teng-tiny", depth=9).eval()
    cyclic = zoo.create_model("dim-teng-tiny", depth=9, block_scans=cyclic_block_scans("1234", 9)).eval()
    cyclic.load_state_dict(official.state_dict())
    x, t, y = torch.randn(1, 3, 8, 8), torch.tensor([500]), torch.tensor([1])
    with torch.no_grad():
        a, b = official(x, t, y), cyclic(x, t, y)
    assert (a - b).abs().max() > 1e-3 * a.abs().max()


def test_rho_padding_cycles_the_tokens_along_the_pad_positions():
    from zoo.layers.padding import EndOfLinePadding

    h, w, k = 2, 4, 3
    lateral, rho = EndOfLinePadding(1, k), EndOfLinePadding(1, k, layout="rho")
    with torch.no_grad():
        lateral.tokens.copy_(torch.arange(k, dtype=torch.float)[:, None] + 100)
        rho.tokens.copy_(lateral.tokens)
    x = torch.zeros(1, h * w, 1)
    grid_l = lateral.pad(x, h, w).reshape(h + k, w + k)
    grid_r = rho.pad(x, h, w).reshape(h + k, w + k)
    pads = grid_r[grid_r >= 100] - 100  # row-major pad positions of the rho layout: 0, 1, 2, 0, 1, 2, ...
    assert pads.tolist() == [i % k for i in range(len(pads))]
    assert torch.equal(grid_l[:h], grid_r[:h])  # right-hand columns agree
    assert grid_l[h:].eq(torch.arange(k)[:, None] + 100).all()  # lateral: row h + i is token i
    real = torch.randn(1, h * w, 1)
    assert torch.equal(rho.unpad(rho.pad(real, h, w), h, w), real)
    assert (
        zoo.create_model("dim-teng-tiny", pad_layout="rho")(x.new_zeros(1, 3, 8, 6), torch.tensor([1])).shape[-1] == 6
    )


class _CumSum(nn.Module):
    """An order-dependent stand-in mixer: each token becomes the sum of itself and all tokens before it."""

    def forward(self, x):
        return x.cumsum(dim=1)


def test_block_scans_in_its_order_and_returns_canonical_order():
    h, w, prefix, d = 3, 4, 2, 8
    block = DiMBlock(d, skip=False, mamba_kwargs=dict(d_state=4, d_conv=3))
    with torch.no_grad():
        block.scale_shift_table.zero_()
    block.norm = nn.Identity()
    x = torch.randn(1, prefix + h * w, d)
    cond = torch.zeros(1, 3 * d)
    # an elementwise mixer gives the same result in every order: permutation and its inverse agree
    block.mixer = nn.Tanh()
    plain = block(x, cond, prefix, None)
    for order in ("row_reversed", "col", "col_reversed"):
        assert torch.allclose(block(x, cond, prefix, scan_permutation(h, w, order)), plain)
    # an order-dependent mixer sees the column-major sequence, with the prefix in front
    block.mixer = _CumSum()
    out = block(x, cond, prefix, scan_permutation(h, w, "col")) - x
    grid = x[0, prefix:].reshape(h, w, d)
    expected_r1c0 = x[0, :prefix].sum(0) + grid[0, 0] + grid[1, 0]  # column 0 is read top to bottom first
    assert torch.allclose(out[0, prefix + 1 * w + 0], expected_r1c0, atol=1e-5)


def test_output_does_not_depend_on_internal_order_for_token_wise_mixers():
    """With token-wise mixers (no mixing along the sequence), every schedule must give the same output: the
    permutations into and out of each block's scan order, the padding and the skips all line up."""
    outputs = []
    for patterns in ("1234", "3", "24", "1"):
        torch.manual_seed(0)
        model = zoo.create_model("dim-teng-tiny", scan_patterns=patterns).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.1)
        for block in model.blocks:
            block.mixer = nn.Tanh()
        x = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(1))
        outputs.append(model(x, torch.tensor([3, 700]), torch.tensor([1, 10])))
    for out in outputs[1:]:
        assert torch.allclose(out, outputs[0], atol=1e-5)


def test_real_mixers_make_the_schedule_matter():
    results = []
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for patterns in ("1234", "1"):
        torch.manual_seed(0)
        model = zoo.create_model("dim-teng-tiny", scan_patterns=patterns).eval()
        results.append(model(x, torch.tensor([3]), torch.tensor([1])))
    assert (results[0] - results[1]).abs().max() > 1e-2 * results[0].abs().max()


def test_ablation_switches_remove_their_parts():
    full = zoo.create_model("dim-teng-tiny")
    d, k, skips = 64, 3, 2
    no_pad = zoo.create_model("dim-teng-tiny", pad_tokens=False)
    assert no_pad.padding is None and no_pad.split_tokens is None and _count(full) - _count(no_pad) == 2 * k * d
    no_conv = zoo.create_model("dim-teng-tiny", local_conv=False)
    assert no_conv.first_conv is None and _count(full) - _count(no_conv) == 2 * (9 * d + d)
    no_skip = zoo.create_model("dim-teng-tiny", long_skip=False)
    assert all(b.skip_proj is None for b in no_skip.blocks)
    assert _count(full) - _count(no_skip) == skips * (2 * d * d + d)
    x, t, y = torch.randn(1, 3, 8, 8), torch.tensor([5]), torch.tensor([2])
    for model in (no_pad, no_conv, no_skip, zoo.create_model("dim-teng-tiny", scan_patterns="1")):
        assert model(x, t, y).shape == x.shape


def test_cifar10_entry_keeps_the_official_label_table():
    with torch.device("meta"):
        model = zoo.create_model("dim-teng-s/2-cifar10")
    assert _count(model) == 50_568_716  # configs/cifar10_S_DiM.py: num_embeds_ada_norm=10, trained unconditionally
    assert (
        model.label_token.num_embeddings == 11 and zoo.get_entry("dim-teng-s/2-cifar10").inputs.conditioning == "none"
    )
    assert zoo.get_entry("dim-teng-h/2-512").config["pad_layout"] == "rho"


def test_wide_models_merge_skips_with_two_linears():
    with torch.device("meta"):
        model = zoo.create_model("dim-teng-h/2")
    decoder = model.blocks[-1]
    assert decoder.skip_proj is None and decoder.skip_proj_x.in_features == 1536
    assert sum(b.skip_proj_x is not None for b in model.blocks) == 24


def test_non_square_and_other_resolutions():
    model = zoo.create_model("dim-teng-tiny").eval()
    for shape in ((8, 12), (16, 16), (4, 6)):
        x = torch.randn(1, 3, *shape)
        assert model(x, torch.tensor([1]), torch.tensor([0])).shape == x.shape
    x = torch.randn(1, 3, 8, 8)  # no labels: the null class, as the official code does
    assert torch.equal(model(x, torch.tensor([1])), model(x, torch.tensor([1]), torch.tensor([10])))
    with torch.device("meta"):  # 3840x2160 image -> 270x480 latent on the paper's 512-px model
        big = zoo.create_model("dim-teng-h/2-512")
        out = big(torch.empty(1, 4, 270, 480), torch.zeros(1), torch.zeros(1, dtype=torch.long))
    assert out.shape == (1, 4, 270, 480)


def test_cfg_guides_every_channel():
    model = zoo.create_model("dim-teng-tiny").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    x = torch.randn(1, 3, 8, 8).repeat(2, 1, 1, 1)
    t, y = torch.tensor([9, 9]), torch.tensor([4, 10])
    plain = model(x, t, y)
    assert not torch.allclose(plain[0], plain[1])  # the null class (10) is a real, different input


def test_training_works_after_an_inference_mode_forward():
    """Cached scan permutations built under inference_mode must not leak inference tensors into training."""
    model = zoo.create_model("dim-teng-tiny")
    x, t, y = torch.randn(1, 3, 8, 10), torch.tensor([5]), torch.tensor([2])
    with torch.inference_mode():
        model(x, t, y)
    model(x, t, y).square().mean().backward()

"""DiffuSSM (zoo/models/diffussm.py): forward on square, non-square and odd-length inputs (the hourglass pads the
pixel sequence to a multiple of M and crops it back), the null condition, gradients, the paper-size parameter
count against a closed form of the derived layout and against the paper, and FLOPs counted on the meta device
against hand formulas (the dense layers and the S4D scan)."""

from __future__ import annotations

import pytest
import torch

import zoo
from bench.flops import count_flops
from bench.inputs import Resolution
from zoo.ops.flops import selective_scan_flops
from zoo.summary import count_parameters


def _tiny(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    model = zoo.create_model("diffussm-tiny", **overrides).eval()
    with torch.no_grad():  # zero-initialised output layers would make every prediction 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_forward_square_non_square_and_the_null_condition():
    model = _tiny()
    t, y = torch.tensor([3, 700]), torch.tensor([1, 10])
    with torch.no_grad():
        for h, w in ((8, 8), (6, 10), (5, 7)):  # 35 pixels: odd, padded to 36
            x = torch.randn(2, 4, h, w)
            out = model(x, t, y)
            assert out.shape == (2, 8, h, w) and torch.isfinite(out).all()
        null = model.null_condition(2)
        assert null.tolist() == [10, 10] and torch.equal(model(x, t), model(x, t, null))
        assert not torch.allclose(model(x, t, torch.tensor([1, 2])), model(x, t, null))


def test_hourglass_pads_an_odd_pixel_sequence_and_crops_it_back():
    """The model sees the row-major pixel sequence, zero-padded to a multiple of M: a 3 x 5 grid (15 pixels)
    gives what the same 15 pixels and one zero pixel give as a 1 x 16 row, cropped."""
    model = _tiny()
    x, t, y = torch.randn(1, 4, 3, 5), torch.tensor([5]), torch.tensor([2])
    row = torch.cat([x.reshape(1, 4, 1, 15), torch.zeros(1, 4, 1, 1)], dim=-1)
    with torch.no_grad():
        grid, padded = model(x, t, y), model(row, t, y)
    assert torch.allclose(grid.reshape(1, 8, 1, 15), padded[..., :15], atol=1e-5)
    with torch.no_grad():  # bidirectional: the last pixel reaches the first output and the first the last
        x2 = x.clone()
        x2[..., -1, -1] += 1.0
        assert (model(x2, t, y)[..., 0, 0] - grid[..., 0, 0]).abs().max() > 1e-6
        x2 = x.clone()
        x2[..., 0, 0] += 1.0
        assert (model(x2, t, y)[..., -1, -1] - grid[..., -1, -1]).abs().max() > 1e-6


def test_backward_reaches_every_parameter():
    model = _tiny().train()
    out = model(torch.randn(2, 4, 5, 6), torch.tensor([1, 2]), torch.tensor([0, 3]))
    out.square().mean().backward()
    for name, p in model.named_parameters():
        if name.startswith("y_embedder"):
            continue  # only the rows of the labels used get gradients
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_compression_must_divide_the_ssm_width():
    with pytest.raises(ValueError, match="compression"):
        zoo.create_model("diffussm-tiny", compression=3)


def _closed_form_params(d: int, depth: int, m: int, n: int, channels: int, classes: int) -> int:
    """The derived layout (module doc): per layer adaLN (2d), W^0, M up-projections, two S4D directions (log dt,
    A, D per channel; C shared), M down-projections 2d -> 2d / M, W^1, W^2, W^3, every Linear with a bias."""
    linear = lambda i, o: i * o + o  # noqa: E731
    block = (
        linear(d, 2 * d)
        + linear(d, d)
        + m * linear(d, d)
        + 2 * (d + d * n + d + n)
        + m * linear(2 * d, 2 * d // m)
        + linear(d, 2 * d)
        + linear(2 * d, 2 * d)
        + linear(2 * d, d)
    )
    embed = linear(m * channels, d) + linear(256, d) + linear(d, d) + (classes + 1) * d
    final = linear(d, 2 * d) + linear(d, m * 2 * channels)
    return depth * block + embed + final


def test_paper_size_parameters_closed_form_and_paper():
    for name in ("diffussm-xl", "diffussm-xl-512"):
        count = count_parameters(name)
        assert count == _closed_form_params(1152, 29, 2, 16, 4, 1000) == 661_329_584
        paper = zoo.get_entry(name).paper
        assert paper.params_m == 673 and -0.02 < count / 1e6 / paper.params_m - 1 < -0.015  # the documented -1.7 %


def test_flops_counted_on_meta_match_hand_formulas():
    d, depth, m, n, channels = 1152, 29, 2, 16, 4
    with torch.device("meta"):
        model = zoo.create_model("diffussm-xl").eval()
    result = count_flops("diffussm-xl", Resolution(256, 256), model=model)
    length = 32 * 32  # one token per latent pixel (no patches), J = length / M for the dense layers
    j = length // m
    scan = depth * 2 * selective_scan_flops((1, d, length), (d, n), True, False)
    assert result.by_category["scan"] == scan == depth * 2 * (9 * d * length * n + 2 * d * length)
    per_token = d * d + m * d * d + m * 2 * d * (2 * d // m) + d * 2 * d + 2 * d * 2 * d + 2 * d * d  # 15 d^2
    per_sample = depth * d * 2 * d + 256 * d + d * d + d * 2 * d  # adaLN of each layer, timestep MLP, final adaLN
    dense = depth * j * per_token + j * (m * channels * d + d * m * 2 * channels) + per_sample
    assert per_token == 15 * d * d  # the paper's 13 (L/M) D^2 + L D^2 at M = 2
    assert result.by_category["linear"] == 2 * dense
    assert result.flops == result.by_category["linear"] + result.by_category["scan"]
    assert 300 < result.macs / 1e9 < 301  # vs the paper's 280.3 (module doc)
    odd = count_flops("diffussm-xl", Resolution(264, 264), model=model)  # 33 x 33 latents: 1089 pixels, padded
    assert odd.flops > result.flops and odd.input_shape == (1, 4, 33, 33)

"""DiM (Mo & Tian): the derived design's parameter residuals, bidirectionality, forward."""

from __future__ import annotations

import torch

import zoo
from zoo.summary import count_parameters


def test_parameter_residuals_are_the_documented_ones():
    residuals = {}
    for name in ("dim-mo-s/4", "dim-mo-b/8", "dim-mo-b/4", "dim-mo-b/2", "dim-mo-l/4", "dim-mo-xl/4"):
        reported = zoo.get_entry(name).paper.params_m
        residuals[name] = 100 * (count_parameters(name) / 1e6 - reported) / reported
    assert sum(abs(r) < 3 for r in residuals.values()) == 5, residuals
    assert 4.5 < residuals["dim-mo-s/4"] < 5.0
    # B/8 - B/4 - B/2 differ by DiT's patch-embedding + final-layer sizes, as in the paper
    assert count_parameters("dim-mo-b/8") - count_parameters("dim-mo-b/4") == 768 * (4 * 48 + 8 * 48) + 8 * 48


def test_every_token_sees_the_whole_sequence():
    model = zoo.create_model("dim-mo-tiny").eval()
    with torch.no_grad():
        model.linear_out.weight.normal_(0, 0.1)  # zero-initialised like DiT's
    x = torch.randn(1, 4, 8, 8)
    t, y = torch.tensor([5]), torch.tensor([3])
    base = model(x, t, y)
    x2 = x.clone()
    x2[..., -2:, -2:] += 1.0  # the last patch in raster order
    assert (model(x2, t, y)[..., :2, :2] - base[..., :2, :2]).abs().max() > 1e-6  # reaches the first patch


def test_forward_non_square_and_the_label_reaches_each_sample_alone():
    """(CFG itself: tests/test_samplers.py, on every family.)"""
    model = zoo.create_model("dim-mo-tiny").eval()
    with torch.no_grad():  # zero-initialised output layers would make every prediction 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x, t = torch.randn(2, 4, 8, 12), torch.tensor([1, 2])
        out = model(x, t, torch.tensor([0, 10]))  # a class and the null label
        other = model(x, t, torch.tensor([3, 10]))
    assert out.shape == (2, 8, 8, 12)
    assert (other[0] - out[0]).abs().max() > 1e-3 and torch.allclose(other[1], out[1], atol=1e-6)

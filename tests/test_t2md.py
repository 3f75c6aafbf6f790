"""PixArt-alpha teacher and T2MD student: layouts, sizes, bidirectional Mamba-2 blocks, any grid, captions."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.layers.captions import class_captions
from zoo.layers.pos_embed import sincos_2d_centered, sincos_2d_pixart
from zoo.models.t2md import T2MD_LAYOUT, BidirectionalMamba2, parse_layout
from zoo.summary import count_parameters


def test_layout_strings():
    mixers = parse_layout(T2MD_LAYOUT)
    assert (
        len(mixers) == 28
        and mixers.count("SA") == 4
        and [i for i, m in enumerate(mixers) if m == "SA"]
        == [
            0,
            7,
            14,
            21,
        ]
    )
    assert parse_layout("(HM-WM)x14") == ["HM", "WM"] * 14
    assert parse_layout("SAx3") == ["SA"] * 3
    with pytest.raises(ValueError, match="unknown mixer"):
        parse_layout("SA-XM")
    with pytest.raises(ValueError, match="has 3 blocks"):
        zoo.create_model("t2md-tiny", layout="SA-SA-SA", depth=4)


def test_full_size_parameter_counts():
    teacher = count_parameters("pixart-alpha-xl/2") / 1e6
    student = count_parameters("t2md") / 1e6
    assert abs(teacher - 610.9) / 610.9 < 0.01
    assert 690 <= student <= 754  # the range the paper's "0.7B" allows for the fusion layer
    no_sa = count_parameters("t2md", layout="(HM-WM)x14") / 1e6
    unidirectional = count_parameters("t2md", bidirectional=False) / 1e6
    assert no_sa > student > unidirectional


def test_bidirectional_block_sees_both_ends_and_unidirectional_is_causal():
    h, w, d = 3, 4, 32
    x = torch.randn(1, h * w, d)
    x2 = x.clone()
    x2[:, -1] += 1.0  # last token in row-major order
    uni = BidirectionalMamba2(d, "row", bidirectional=False, d_state=8, headdim=16)
    assert torch.allclose(uni(x, h, w)[:, :-1], uni(x2, h, w)[:, :-1], atol=1e-6)
    bi = BidirectionalMamba2(d, "row", bidirectional=True, d_state=8, headdim=16)
    assert (bi(x, h, w)[:, 0] - bi(x2, h, w)[:, 0]).abs().max() > 1e-6
    col = BidirectionalMamba2(d, "col", bidirectional=False, d_state=8, headdim=16)
    x3 = x.clone()
    x3[:, (h - 1) * w] += 1.0  # bottom of column 0: read third in column-major order
    changed = (col(x3, h, w) - col(x, h, w)).abs().amax(-1)[0].reshape(h, w)
    assert changed[0, 0] == 0 and changed[1, 0] == 0 and changed[0, 1] > 0


@pytest.mark.parametrize("name", ["t2md-tiny", "pixart-tiny"])
def test_padded_caption_tokens_cannot_reach_the_output(name):
    """A non-square grid and captions of different lengths: what the padding tokens hold (mask False) cannot
    change the output, the real tokens do, and without the mask the same padding change would show."""
    model = zoo.create_model(name).eval()
    with torch.no_grad():  # zero-initialised output layers would make every prediction 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    y, mask = class_captions(torch.tensor([1, 2]), channels=32, tokens=6)
    mask[1, 3:] = False  # the second caption has 3 tokens
    padding, real = y.clone(), y.clone()
    padding[1, 3:] += 5.0
    real[1, :3] += 5.0
    x, t = torch.randn(2, 4, 8, 12), torch.tensor([10, 500])
    with torch.no_grad():
        out = model(x, t, y, mask)
        assert out.shape == (2, 8, 8, 12)
        assert torch.allclose(model(x, t, padding, mask), out, atol=1e-6)
        moved = model(x, t, real, mask)
        assert (moved[1] - out[1]).abs().max() > 1e-3 and torch.allclose(moved[0], out[0], atol=1e-6)
        assert (model(x, t, padding)[1] - model(x, t, y)[1]).abs().max() > 1e-3  # no mask: padding is read
    assert model.null_condition(2).shape == y.shape  # CFG's unconditional input (tests/test_samplers.py)


def test_position_embedding_choice():
    student, teacher = zoo.create_model("t2md-tiny"), zoo.create_model("pixart-tiny")  # base grid 4
    assert torch.equal(student.positions(4, 8), sincos_2d_centered(64, 4, 8, base=4))
    assert torch.equal(teacher.positions(4, 8), sincos_2d_pixart(64, 4, 8, base_size=4))
    assert torch.equal(zoo.create_model("t2md-tiny", pos_embed="pixart").positions(4, 4), teacher.positions(4, 4))
    with pytest.raises(ValueError, match="pos_embed"):
        zoo.create_model("t2md-tiny", pos_embed="rope")


def test_class_captions_are_deterministic():
    a, _ = class_captions(torch.tensor([3, 5, 3]), channels=16, tokens=2)
    b, _ = class_captions(torch.tensor([5]), channels=16, tokens=2)
    assert torch.equal(a[0], a[2]) and torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])

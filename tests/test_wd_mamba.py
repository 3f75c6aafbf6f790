"""WD-Mamba: the W-Net layout, the paper's skips (encoder 1 reaches both decoders), ablation variants."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.models.wd_mamba import parse_stages


def test_layouts_of_the_paper_and_its_ablation():
    with torch.device("meta"):
        w, u, half = (zoo.create_model(n) for n in ("wd-mamba", "wd-mamba-u", "wd-mamba-halfu"))
    assert (len(w.blocks), len(u.blocks), len(half.blocks)) == (26, 13, 7)
    assert sum(b.skip_proj_x is not None for b in w.blocks) == 12
    assert all(b.skip_proj_x is None and b.skip_proj is None for b in half.blocks)
    assert w.final_conv is not None  # Fig. 2: a conv layer predicts the noise


def test_stage_strings_are_checked():
    assert parse_stages("enc2,mid1,dec2") == [("enc", 2), ("mid", 1), ("dec", 2)]
    with pytest.raises(ValueError, match="encN"):
        parse_stages("enc2,bottleneck1")
    with pytest.raises(ValueError, match="as many blocks"):
        parse_stages("enc2,mid1,dec3")


def test_decoders_receive_mirrored_encoder_features_and_encoder1_reaches_decoder2():
    model = zoo.create_model("wd-mamba-tiny").eval()  # enc2, mid1, dec2, enc2, mid1, dec2
    outputs, skips = {}, {}
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(lambda mod, args, out, i=i: outputs.__setitem__(i, out.detach()))
        if block.skip_proj is not None:
            original = block.merge_skip

            def record(x, skip, i=i, original=original):
                skips[i] = skip.detach()
                return original(x, skip)

            block.merge_skip = record
    model(torch.randn(1, 3, 8, 8), torch.tensor([10]))
    enc1, enc2 = (outputs[0], outputs[1]), (outputs[5], outputs[6])
    assert sorted(skips) == [3, 4, 8, 9]
    assert torch.equal(skips[3], enc1[1]) and torch.equal(skips[4], enc1[0])  # decoder 1: mirror of encoder 1
    assert torch.allclose(skips[8], enc2[1] + enc1[1]) and torch.allclose(skips[9], enc2[0] + enc1[0])


def test_forward_any_grid():
    model = zoo.create_model("wd-mamba-tiny").eval()
    for shape in ((8, 8), (8, 12)):
        assert model(torch.randn(1, 3, *shape), torch.tensor([3])).shape == (1, 3, *shape)

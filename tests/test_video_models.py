"""The video backbones (issue #18): Latte-XL/2 and DiM's video model. Parameters against the papers on the
meta device, clip shapes in and out, counted MACs in closed form, and that the two kinds of block mix what they
should: a temporal block across the frames of one token position, a spatial block within one frame."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from bench.flops import count_flops
from bench.inputs import parse_resolution
from zoo.summary import count_parameters

TINY = ("latte-tiny", "dim-mo-video-tiny")


def _randomised(name: str) -> nn.Module:
    """The entry with its zero-initialised tensors (adaLN-Zero, output layers, biases) drawn at random, so
    every path from input to output carries signal; eval mode (no label dropout)."""
    model = zoo.create_model(name)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.1)
    return model.eval()


def _inputs(batch: int, frames: int, height: int = 8, width: int = 8) -> tuple[torch.Tensor, ...]:
    return torch.randn(batch, 3, frames, height, width), torch.tensor([3, 700][:batch]), torch.tensor([1, 10][:batch])


class _Skip(nn.Module):
    """A block that passes its tokens through (a block's extra conditioning argument is ignored)."""

    def forward(self, x: torch.Tensor, *conditioning: torch.Tensor) -> torch.Tensor:
        return x


def _only(model: nn.Module, kind: str) -> nn.Module:
    """The model with every block of the other kind skipped (blocks alternate: even spatial, odd temporal)."""
    keep = 0 if kind == "spatial" else 1
    for index in range(len(model.blocks)):
        if index % 2 != keep:
            model.blocks[index] = _Skip()
    return model


def test_xl_parameter_counts_match_the_papers_on_meta():
    with torch.device("meta"):
        latte_model, dim_model = zoo.create_model("latte-xl/2"), zoo.create_model("dim-mo-video-xl/2")
    latte, dim = (sum(p.numel() for p in m.parameters()) for m in (latte_model, dim_model))
    label_table = 102 * 1152  # UCF-101's 101 classes and the null class
    assert latte - label_table == 673_681_568  # Latte-XL: "673.68 M", a model without a class table
    assert round((latte - label_table) / 1e6, 2) == zoo.get_entry("latte-xl/2").paper.params_m == 673.68
    # DiM's video model is DiM-XL/2 (Table 1) block for block: only the class table differs (1001 -> 102 rows)
    assert dim == count_parameters("dim-mo-xl/2") - (1001 - 102) * 1152
    assert 0 < (dim - latte) / latte < 0.03  # DiM-XL sized like DiT-XL: within 3% of Latte-XL
    assert len(latte_model.blocks) == 28 and len(dim_model.blocks) == 36
    for name in ("latte-xl/2", "dim-mo-video-xl/2", *TINY):
        assert zoo.get_entry(name).inputs.frames == (16 if name.endswith("xl/2") else 4)
    assert zoo.get_entry("dit-xl/2").inputs.frames == 0


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("frames, height, width", [(2, 8, 8), (5, 8, 12)])
def test_tiny_forward_backward_any_clip_length_and_frame_size(name, frames, height, width):
    model = _randomised(name).train()
    x, t, y = _inputs(2, frames, height, width)
    out = model(x, t, y)
    assert out.shape == (2, 6, frames, height, width)  # noise and learned sigma: 2 x 3 channels
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.x_embedder.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", TINY)
def test_bad_clips_are_errors_that_say_what_to_pass(name):
    model = zoo.create_model(name)
    with pytest.raises(ValueError, match=r"video model: it takes clips \(batch, channels, frames, height, width\)"):
        model(torch.randn(1, 3, 8, 8), torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="not divisible by the patch size 2"):
        model(torch.randn(1, 3, 4, 9, 8), torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="depth must be even"):
        zoo.create_model(name, depth=3)


@pytest.mark.parametrize("name", TINY)
@torch.no_grad()
def test_temporal_blocks_mix_frames(name):
    model = _randomised(name)
    x, t, y = _inputs(1, 4)
    changed = x.clone()
    changed[:, :, 0] += 1.0  # frame 0 only
    delta = (model(changed, t, y) - model(x, t, y)).abs()
    assert delta[:, :, 2].max() > 1e-3  # frame 2's prediction sees frame 0
    # without the temporal blocks, nothing reaches the other frames: the spatial blocks stay within a frame
    spatial = _only(_randomised(name), "spatial")
    delta = (spatial(changed, t, y) - spatial(x, t, y)).abs()
    assert delta[:, :, 0].max() > 1e-3 and delta[:, :, 1:].max() == 0


@pytest.mark.parametrize("name", TINY)
@torch.no_grad()
def test_spatial_blocks_mix_within_a_frame_and_temporal_blocks_within_a_token_position(name):
    x, t, y = _inputs(1, 4)
    changed = x.clone()
    changed[:, :, 0, :2, :2] += 1.0  # one 2x2 patch (token row 0, column 0) of frame 0
    spatial = _only(_randomised(name), "spatial")
    delta = (spatial(changed, t, y) - spatial(x, t, y)).abs()
    assert delta[:, :, 0, :2, 2:4].max() > 1e-3 and delta[:, :, 0, 6:, 6:].max() > 0  # frame 0's other patches
    temporal = _only(_randomised(name), "temporal")
    delta = (temporal(changed, t, y) - temporal(x, t, y)).abs()
    assert delta[:, :, 2, :2, :2].max() > 1e-3  # the same patch of frame 2 sees it
    delta[:, :, :, :2, :2] = 0
    assert delta.max() == 0  # no other token position of any frame does


def test_latte_macs_match_closed_form():
    """Latte-XL/2 on a 16-frame 256² clip, by hand: DiT's per-token linears in every block, spatial attention
    over the L tokens of each frame, temporal attention over the T frames of each token, and adaLN per
    sequence (the conditioning is repeated per frame / per token position before the modulation linears)."""
    d, p, c_in, c_out, depth, frames, tokens = 1152, 2, 4, 8, 28, 16, 256
    n = frames * tokens
    pairs = depth // 2
    spatial = 12 * d * d * n + 2 * tokens * tokens * d * frames + 6 * d * d * frames
    temporal = 12 * d * d * n + 2 * frames * frames * d * tokens + 6 * d * d * tokens
    expected = n * c_in * p * p * d + (256 * d + d * d) + pairs * (spatial + temporal) + 2 * d * d * frames
    expected += n * d * p * p * c_out
    counted = count_flops("latte-xl/2", parse_resolution("256", frames=16))
    assert counted.macs == expected
    assert counted.input_shape == (1, 4, 16, 32, 32) and counted.tokens == n and counted.resolution == "16x256x256"


def test_counts_at_full_size_on_meta_and_how_they_scale_with_frames():
    latte16 = count_flops("latte-xl/2", parse_resolution("512"))  # the entry's own clip length: 16
    assert latte16.resolution == "16x512x512" and latte16.seq_len == 1024
    dim16 = count_flops("dim-mo-video-xl/2", parse_resolution("512", frames=16))
    assert dim16.seq_len == 1024 + 2  # time and class tokens in front of every frame's patches
    assert dim16.by_category["scan"] > 0 and "attention" not in dim16.by_category
    assert dim16.macs > latte16.macs  # 16x512² is below the crossover (docs/bench.md: ~1330² px frames)
    # how cost grows with the clip length (one spatial/temporal pair of each, same shapes)
    dim = [count_flops("dim-mo-video-xl/2", parse_resolution("512", frames=f), depth=2).macs for f in (16, 64)]
    assert dim[1] / dim[0] == pytest.approx(4, rel=1e-3)  # scans: linear in the clip length
    latte = [count_flops("latte-xl/2", parse_resolution("512", frames=f), depth=2) for f in (16, 64)]
    attention = latte[1].by_category["attention"] / latte[0].by_category["attention"]
    assert attention > 4 * (1 + 1e-3)  # spatial attention is linear in the clip length, temporal quadratic
    long_clip = count_flops("dim-mo-video-tiny", parse_resolution("8", frames=64))
    assert long_clip.seq_len == 64  # the temporal blocks see sequences of all 64 frames


@pytest.mark.parametrize("name", ["latte-tiny", "dim-mo-video-tiny"])
def test_image_frames_stay_out_of_the_temporal_blocks(name):
    """Video-image joint training (use_image_num, Latte's recipe for Table 3's +IMG rows): the appended image
    frames and the clip's frames never exchange information; the clip alone computes what it computes; each
    image is conditioned on its own label (image_cond)."""
    torch.manual_seed(0)
    model = zoo.create_model(name).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    clip = torch.randn(1, 3, 4, 8, 8)
    images = torch.randn(1, 3, 2, 8, 8)
    t, y = torch.tensor([400]), torch.tensor([3])
    with torch.no_grad():
        joint = model(torch.cat([clip, images], dim=2), t, y, use_image_num=2)
        alone = model(clip, t, y)
        other = model(torch.cat([clip, images.flip(2)], dim=2), t, y, use_image_num=2)
        other_clip = model(torch.cat([clip.flip(2), images], dim=2), t, y, use_image_num=2)

        def own(labels):
            return model(
                torch.cat([clip, images], dim=2),
                t,
                y,
                use_image_num=2,
                image_cond=torch.tensor([labels]),
            )

        relabelled, as_clip = own([5, 7]), own([3, 3])
    assert torch.allclose(joint[:, :, :4], alone, atol=1e-5)  # the images do not reach the clip
    assert torch.allclose(other[:, :, :4], alone, atol=1e-5)
    assert torch.allclose(other_clip[:, :, 4:], joint[:, :, 4:], atol=1e-5)  # nor the clip the images
    assert not torch.allclose(other_clip[:, :, :4], joint[:, :, :4].flip(2), atol=1e-3)  # the clip is mixed in time
    # image_cond: each image's own label conditions that image only; by default the images take the clip's
    assert torch.allclose(relabelled[:, :, :4], joint[:, :, :4], atol=1e-5)
    assert (relabelled[:, :, 4:] - joint[:, :, 4:]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-3
    assert torch.allclose(as_clip, joint, atol=1e-6)
    with pytest.raises(ValueError, match="use_image_num"):
        model(clip, t, y, use_image_num=4)

"""ZigMa (zoo/models/zigma.py) and DiS (zoo/models/dis.py): zigzag paths, per-block path schedule, forward
shapes on square and non-square grids, gradients, parameter counts of the paper-size entries against closed
forms of the official layouts (CompVis/zigma ``model_zigma.py``, feizc/DiS ``models_dis.py``), and FLOP
counting. Their official checkpoint layouts and outputs against float64 references of the official forwards are
in tests/test_official_layouts_field.py; the one-off check against the official classes is in docs/models.md."""

from __future__ import annotations

import math

import pytest
import torch

import zoo
from bench.flops import count_flops
from bench.inputs import Resolution
from zoo.models.zigma import NUM_ZIGZAG_PATHS, zigzag_index, zigzag_paths
from zoo.summary import count_parameters

GRIDS = [(1, 1), (1, 5), (4, 1), (2, 2), (4, 4), (5, 5), (3, 7), (6, 4), (8, 16)]


def _official_square_paths(n: int) -> list[list[int]]:
    """CompVis/zigma ``utils/utils_zigzag.py`` ``zigzag_path(N)``, transcribed (square grids only)."""

    def lr(r0, c0, dr, dc):
        return [(r0 + dr * i) * n + c0 + dc * (j if i % 2 == 0 else n - 1 - j) for i in range(n) for j in range(n)]

    def tb(r0, c0, dr, dc):
        return [(r0 + dr * (i if j % 2 == 0 else n - 1 - i)) * n + c0 + dc * j for j in range(n) for i in range(n)]

    corners = [(0, 0, 1, 1), (0, n - 1, 1, -1), (n - 1, 0, -1, 1), (n - 1, n - 1, -1, -1)]
    return [p for c in corners for p in (lr(*c), tb(*c))]


@pytest.mark.parametrize("h,w", GRIDS)
def test_zigzag_paths_are_permutations_of_neighbours_closed_under_reversal(h, w):
    paths = zigzag_paths(h, w)
    assert len(paths) == NUM_ZIGZAG_PATHS
    for path in paths:
        assert sorted(path) == list(range(h * w))  # every token exactly once
        for a, b in zip(path, path[1:], strict=False):  # consecutive tokens are grid neighbours
            (ra, ca), (rb, cb) = divmod(a, w), divmod(b, w)
            assert abs(ra - rb) + abs(ca - cb) == 1, (h, w, a, b)
    assert all(p[::-1] in paths for p in paths)  # the reversals are paths of the set
    if h > 1 and w > 1:  # on a proper 2-D grid the 8 paths are distinct
        assert len({tuple(p) for p in paths}) == NUM_ZIGZAG_PATHS
    forward, inverse = zigzag_index(h, w)
    assert forward.shape == (NUM_ZIGZAG_PATHS, h * w) and forward.tolist() == paths
    tokens = torch.arange(h * w)
    for k in range(NUM_ZIGZAG_PATHS):
        assert torch.equal(tokens[forward[k]][inverse[k]], tokens)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 16])
def test_zigzag_paths_equal_the_official_ones_on_square_grids(n):
    assert zigzag_paths(n, n) == _official_square_paths(n)


def test_zigma_blocks_alternate_paths():
    model = zoo.create_model("zigma-tiny", depth=10).eval()
    h, w = 4, 6
    paths, _ = zigzag_index(h, w)
    seen, normed, mixed = [], [], []
    hooks = []
    for block in model.blocks:
        hooks.append(block.register_forward_pre_hook(lambda m, args: seen.append(args[3])))
        hooks.append(block.norm.register_forward_hook(lambda m, args, out: normed.append(out)))
        hooks.append(block.mixer.register_forward_pre_hook(lambda m, args: mixed.append(args[0])))
    with torch.no_grad():
        model(torch.randn(2, 4, 2 * h, 2 * w), torch.tensor([3, 700]), torch.tensor([1, 0]))
    for hook in hooks:
        hook.remove()
    for i in range(10):
        assert model.block_path(i) == i % NUM_ZIGZAG_PATHS
        assert torch.equal(seen[i], paths[i % NUM_ZIGZAG_PATHS])
        # adaLN starts at zero, so the mixer sees the normed tokens, gathered along the block's path
        assert torch.equal(mixed[i], normed[i][:, paths[i % NUM_ZIGZAG_PATHS]])
    assert len({tuple(s.tolist()) for s in seen}) == NUM_ZIGZAG_PATHS


@pytest.mark.parametrize("name", ["zigma-tiny", "dis-tiny"])
@pytest.mark.parametrize("size", [(8, 8), (8, 12), (12, 4)])
def test_tiny_forward_shapes_any_grid_and_conditioning(name, size):
    torch.manual_seed(0)
    model = zoo.create_model(name).eval()
    x = torch.randn(2, 4, *size)
    with torch.no_grad():
        out = model(x, torch.tensor([3, 700]), torch.tensor([1, 0]))
        null = model(x, torch.tensor([3, 700]))  # the null label
    assert out.shape == (2, model.out_channels, *size) and torch.isfinite(out).all()
    assert null.shape == out.shape


@pytest.mark.parametrize("name", ["zigma-tiny", "dis-tiny"])
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = zoo.create_model(name)
    with torch.no_grad():  # leave the zero-initialised gates so that every branch gets a gradient
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(std=0.02)
    x = torch.randn(2, 4, 8, 12, requires_grad=True)
    model(x, torch.tensor([3, 700]), torch.tensor([1, 0])).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, missing


def _mamba(d: int, bidirectional: bool) -> int:
    """mamba_ssm's Mamba (d_state 16, d_conv 4, expand 2); Vim's v2 doubles conv1d, x_proj, dt_proj, A, D."""
    di, n, r, k = 2 * d, 16, math.ceil(d / 16), 4
    direction = di * k + di + di * (r + 2 * n) + r * di + di + di * n + di
    return d * 2 * di + di * d + direction * (2 if bidirectional else 1)


def _zigma_official(d: int, depth: int, patch: int, tokens: int, c: int = 4) -> int:
    """model_zigma.ZigMa(has_text=False, num_classes=-1): patch embed, timestep MLP, PE, blocks (Mamba,
    RMSNorm, adaLN d -> 3d), RMSNorm norm_f, final Linear (its LayerNorm has no affine)."""
    block = _mamba(d, False) + d + d * 3 * d + 3 * d
    out = patch * patch * c
    return c * patch * patch * d + d + 256 * d + d + d * d + d + tokens * d + depth * block + d + d * out + out


def _dis_official(d: int, blocks: int, patch: int, classes: int = 1000, tokens: int = 256, c: int = 4) -> int:
    """models_dis.DisModel(learn_sigma=True): patch embed, time MLP (d -> 4d -> d), label table with the null
    row, PE over [label, time, patches], blocks (Vim-v2 Mamba, RMSNorm), skip Linears of the out blocks,
    norm_f, final layer (adaLN d -> 2d for class models, Linear)."""
    half, out = blocks // 2, patch * patch * 2 * c
    total = c * patch * patch * d + d + d * 4 * d + 4 * d + 4 * d * d + d + (classes + 1) * d
    total += (2 + tokens) * d + blocks * (_mamba(d, True) + d) + half * (2 * d * d + d) + d
    return total + d * 2 * d + 2 * d + d * out + out


@pytest.mark.parametrize(
    "name,expected",
    [
        ("zigma-b/2-faceshq1024", _zigma_official(768, 24, 2, 0)),  # s1024_zigzag8_b2_old: no PE
        ("zigma-b/1-256", _zigma_official(768, 24, 1, 32 * 32)),  # zigzag8_b1_pe2
        ("dis-s/2", _dis_official(368, 25, 2)),
        ("dis-b/2", _dis_official(768, 25, 2)),
        ("dis-m/2", _dis_official(768, 49, 2)),
        ("dis-l/2", _dis_official(1024, 49, 2)),
        ("dis-h/2", _dis_official(1536, 49, 2)),
        ("dis-h/4", _dis_official(1536, 49, 4, tokens=64)),
        ("dis-h/2-512", _dis_official(1536, 49, 2, tokens=1024)),
    ],
)
def test_paper_size_parameter_counts_match_the_official_layouts(name, expected):
    """On the meta device. The zigzag ZigMa adds only the null label row to the official count; the ZigMa
    entries are unconditional, so they match it exactly."""
    assert count_parameters(name) == expected


def test_dis_depth_counts_blocks_and_skips_are_lifo():
    with torch.device("meta"):
        model = zoo.create_model("dis-h/2")
    assert len(model.blocks) == 49 and len(model.in_blocks) == len(model.out_blocks) == 24
    assert all(b.skip_linear is not None for b in model.out_blocks)
    assert all(b.skip_linear is None for b in [*model.in_blocks, model.mid_block])
    with pytest.raises(ValueError, match="odd"):
        zoo.create_model("dis-tiny", depth=4)


@pytest.mark.parametrize("name", ["zigma-b/1-256", "dis-h/2"])
def test_bench_flops_counts_paper_entries_at_256(name):
    result = count_flops(name, Resolution(256, 256))
    assert result.input_shape == (1, 4, 32, 32) and result.flops > 0
    assert sum(result.by_category.values()) == result.flops

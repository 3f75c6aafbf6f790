"""Shared layers: positional embeddings, scan orders, padding tokens, patches and the Mamba mixers."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.layers.mamba import Mamba, Mamba2
from zoo.layers.padding import EndOfLinePadding
from zoo.layers.patch import token_grid, unpatchify
from zoo.layers.pos_embed import sincos_1d, sincos_2d, sincos_2d_centered
from zoo.layers.scan_order import SCAN_ORDERS, from_scan_order, scan_permutation, to_scan_order


def dit_reference_pos_embed(dim: int, size: int) -> torch.Tensor:
    """DiT's get_2d_sincos_pos_embed, restated: meshgrid(w, h) so the first half of channels encodes x."""
    coords = torch.arange(size, dtype=torch.float64)
    gx, gy = torch.meshgrid(coords, coords, indexing="xy")  # gx varies along columns

    def one_d(d, pos):
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        out = pos.reshape(-1)[:, None] * omega[None]
        return torch.cat([out.sin(), out.cos()], 1)

    return torch.cat([one_d(dim // 2, gx), one_d(dim // 2, gy)], 1).float()


def test_sincos_2d_matches_dit_on_square_grid():
    assert torch.allclose(sincos_2d(64, 6, 6), dit_reference_pos_embed(64, 6), atol=1e-6)


def test_sincos_2d_non_square_first_half_is_x():
    emb = sincos_2d(16, 3, 5)  # 3 rows, 5 columns
    assert emb.shape == (15, 16)
    token = lambda r, c: emb[r * 5 + c]  # noqa: E731
    assert torch.equal(token(0, 4)[:8], token(2, 4)[:8])  # same column -> same x half
    assert torch.equal(token(1, 0)[8:], token(1, 3)[8:])  # same row -> same y half
    assert not torch.equal(token(0, 0)[:8], token(0, 1)[:8])


def test_centered_pos_embed_is_centered_and_long_edge_normalised():
    h, w, base = 4, 8, 8
    emb = sincos_2d_centered(16, h, w, base)
    xs = (torch.arange(w) - (w - 1) / 2) * base / w
    ys = (torch.arange(h) - (h - 1) / 2) * base / w
    assert torch.allclose(emb[:w, :8], sincos_1d(8, xs).float(), atol=1e-6)
    assert torch.allclose(emb[::w, 8:], sincos_1d(8, ys).float(), atol=1e-6)
    # doubling the grid halves the spacing: the long edge spans the same range
    big = sincos_2d_centered(16, 2 * h, 2 * w, base)
    assert torch.allclose(big[0, :8], sincos_1d(8, torch.tensor([-(2 * w - 1) / 2 * base / (2 * w)])).float()[0])


def test_scan_orders_round_trip_on_non_square_grid():
    h, w = 3, 5
    x = torch.randn(2, h * w, 4)
    for order in SCAN_ORDERS:
        assert torch.equal(from_scan_order(to_scan_order(x, h, w, order), h, w, order), x)
        assert torch.equal(to_scan_order(x, h, w, order), x[:, scan_permutation(h, w, order)])
    assert scan_permutation(h, w, "row").tolist() == list(range(15))
    assert scan_permutation(h, w, "col").tolist()[:4] == [0, 5, 10, 1]
    assert scan_permutation(h, w, "col_reversed").tolist() == scan_permutation(h, w, "col").flip(0).tolist()
    with pytest.raises(ValueError, match="unknown scan order"):
        scan_permutation(h, w, "diagonal")


def test_end_of_line_padding_marks_every_row_and_column():
    h, w, k = 3, 4, 2
    pad = EndOfLinePadding(dim=1, num_tokens=k)
    with torch.no_grad():
        pad.tokens.copy_(torch.tensor([[-1.0], [-2.0]]))
    x = torch.arange(1, h * w + 1, dtype=torch.float32).reshape(1, h * w, 1)
    padded = pad.pad(x, h, w)
    grid = padded.reshape(h + k, w + k)
    assert grid[:h, w:].tolist() == [[-1.0, -2.0]] * h  # each row ends with tokens 0..k-1
    assert grid[h:, :w].t().tolist() == [[-1.0, -2.0]] * w  # each column ends with tokens 0..k-1
    assert torch.equal(pad.unpad(padded, h, w), x)


def test_unpatchify_inverts_patchify_on_non_square_grid():
    b, c, p, h, w = 2, 3, 2, 3, 5
    img = torch.randn(b, c, h * p, w * p)
    tokens = img.reshape(b, c, h, p, w, p).permute(0, 2, 4, 3, 5, 1).reshape(b, h * w, p * p * c)
    assert torch.equal(unpatchify(tokens, h, w, p, c), img)


def test_token_grid_error_names_nearest_sizes():
    assert token_grid(32, 48, 2) == (16, 24)
    with pytest.raises(ValueError, match=r"height 30 -> try \[24, 28, 32, 36\]"):
        token_grid(30, 32, 4)


MAMBA1_NAMES = {
    "in_proj.weight",
    "conv1d.weight",
    "conv1d.bias",
    "x_proj.weight",
    "dt_proj.weight",
    "dt_proj.bias",
    "A_log",
    "D",
    "out_proj.weight",
}


def test_mamba1_layout_and_parameter_count():
    d, n, k = 64, 16, 4
    m = Mamba(d, d_state=n, d_conv=k)
    assert {name for name, _ in m.named_parameters()} == MAMBA1_NAMES
    E, r = 2 * d, math.ceil(d / 16)
    assert sum(p.numel() for p in m.parameters()) == 3 * E * d + E * (k + 1) + E * (r + 2 * n) + r * E + E + E * n + E
    bi = Mamba(d, bimamba=True)
    backward = {
        "conv1d_b.weight",
        "conv1d_b.bias",
        "x_proj_b.weight",
        "dt_proj_b.weight",
        "dt_proj_b.bias",
        "A_b_log",
        "D_b",
    }
    assert {name for name, _ in bi.named_parameters()} == MAMBA1_NAMES | backward


def test_mamba2_layout_and_t2md_block_size():
    with torch.device("meta"):
        m = Mamba2(1152, d_state=256, headdim=64)
    names = {name for name, _ in m.named_parameters()}
    assert names == {
        "in_proj.weight",
        "conv1d.weight",
        "conv1d.bias",
        "dt_bias",
        "A_log",
        "D",
        "norm.weight",
        "out_proj.weight",
    }
    assert m.nheads == 36
    assert abs(sum(p.numel() for p in m.parameters()) / 1e6 - 8.61) < 0.01  # derived in research notes


@pytest.mark.parametrize("mixer", [lambda: Mamba(32, d_state=4), lambda: Mamba2(32, d_state=8, headdim=16)])
def test_unidirectional_mixers_are_causal(mixer):
    m = mixer()
    x = torch.randn(2, 20, 32)
    y = m(x)
    x2 = x.clone()
    x2[:, 11:] += torch.randn_like(x2[:, 11:])
    y2 = m(x2)
    assert torch.allclose(y[:, :11], y2[:, :11], atol=1e-5)
    assert not torch.allclose(y[:, 11:], y2[:, 11:], atol=1e-3)


@pytest.mark.parametrize("divide_out", [False, True])
def test_bimamba_is_symmetric_under_reversal(divide_out):
    """Swapping the forward and backward parameters and reversing the sequence reverses the output."""
    m = Mamba(32, d_state=4, bimamba=True, divide_out=divide_out)
    swapped = Mamba(32, d_state=4, bimamba=True, divide_out=divide_out)
    state = m.state_dict()
    for a, b in (("conv1d.", "conv1d_b."), ("x_proj.", "x_proj_b."), ("dt_proj.", "dt_proj_b.")):
        for key in [k for k in state if k.startswith(a)]:
            state[key], state[b + key[len(a) :]] = state[b + key[len(a) :]], state[key]
    state["A_log"], state["A_b_log"] = state["A_b_log"], state["A_log"]
    state["D"], state["D_b"] = state["D_b"], state["D"]
    swapped.load_state_dict(state)
    x = torch.randn(2, 13, 32)
    assert torch.allclose(swapped(x.flip(1)), m(x).flip(1), atol=1e-5)
    y = m(x)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert (m(x2)[:, 0] - y[:, 0]).abs().max() > 1e-7  # the first token sees the last one (uni: exactly 0)


def test_mixers_backpropagate_to_every_parameter():
    for m in (Mamba(32, d_state=4, bimamba=True), Mamba2(32, d_state=8, headdim=16)):
        m(torch.randn(2, 9, 32)).square().mean().backward()
        missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing


def test_blocks_match_timm_layouts_and_outputs():
    """zoo.layers' Mlp and PatchEmbed stand in for timm's: same state-dict keys, same outputs."""
    from timm.layers import Mlp as TimmMlp
    from timm.layers import PatchEmbed as TimmPatchEmbed

    from zoo.layers.embeddings import gelu_tanh
    from zoo.layers.mlp import Mlp
    from zoo.layers.patch import PatchEmbed

    torch.manual_seed(0)
    theirs, ours = TimmMlp(16, 64, 8, act_layer=gelu_tanh, drop=0), Mlp(16, 64, 8, act_layer=gelu_tanh)
    assert list(theirs.state_dict()) == list(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 5, 16)
    assert torch.equal(theirs(x), ours(x))
    theirs, ours = TimmPatchEmbed(None, 2, 3, 32, bias=True), PatchEmbed(2, 3, 32, bias=True)
    assert list(theirs.state_dict()) == list(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    image = torch.randn(2, 3, 6, 10)  # any size divisible by the patch
    assert torch.equal(theirs(image), ours(image)) and ours(image).shape == (2, 15, 32)


def test_dt_projection_and_token_permutation_have_exact_gradients():
    """The CPU-friendly dt projection and the gather-only token permutation (their backwards are written by
    hand) against float64 gradcheck, and the permutation against plain indexing."""
    from zoo.layers.mamba import dt_projection
    from zoo.layers.scan_order import inverse_permutation, permute_tokens, scan_permutation

    torch.manual_seed(0)
    dt = torch.randn(3, 7, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(20, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dt_projection, (dt, weight))
    perm = scan_permutation(3, 4, "col_reversed")
    x = torch.randn(2, 2 + 12, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: permute_tokens(v, perm, 2), (x,))
    assert torch.equal(permute_tokens(x, perm, 2), torch.cat([x[:, :2], x[:, 2:][:, perm]], dim=1))
    assert torch.equal(permute_tokens(permute_tokens(x, perm, 2), inverse_permutation(perm), 2), x)

"""The direct C++ CPU backwards of the Mamba-2 mixer's ops (issue #29): ``gated_rmsnorm``'s (``gated_rmsnorm_bwd``)
and ``conv_scan_norm``'s (recomputed conv output and scan output, then the norm's, the scan's and the conv's
backwards, no autograd), each against float64 autograd of the PyTorch reference, and a finite-difference
check of every gradient of the fused op against its own forward."""

from __future__ import annotations

import sys

import pytest
import torch

from zoo import ops
from zoo.ops import kernel_choice

norm_module = sys.modules["zoo.ops.norm"]
fused_module = sys.modules["zoo.ops.mamba2_fused"]

_NAMES = ("zxbcdt", "conv_weight", "conv_bias", "dt_bias", "A", "D", "norm_weight")


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("D, group, threads", [(24, 24, 1), (24, 6, 1), (40, 8, 2)])
def test_gated_rmsnorm_backward_equals_float64_autograd(D, group, threads):
    """dx, dz, dweight of the C++ backward on a strided z (a slice of a projection, as Mamba-2 passes it) and
    a non-contiguous gradient, over rows that are not a multiple of the kernel's blocks; with two threads
    dweight is summed from two blocks' partials."""
    torch.manual_seed(D + group)
    proj = torch.randn(3, 45, D + 7)
    x = torch.randn(3, 45, D, requires_grad=True)
    z = proj[..., 3 : 3 + D].detach().requires_grad_(True)
    w = (torch.rand(D) + 0.5).requires_grad_(True)
    grad = torch.randn(3, D, 45).transpose(1, 2)  # channels strided
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = ops.gated_rmsnorm(x, z, w, 1e-5, group)
        got = torch.autograd.grad(out, [x, z, w], grad)
    finally:
        torch.set_num_threads(previous)
    assert kernel_choice.last_used()["gated_rmsnorm"] == "cpu-cpp"
    leaves = [t.detach().double().requires_grad_(True) for t in (x, z, w)]
    ref = norm_module.gated_rmsnorm_torch(*leaves, 1e-5, group)
    want = torch.autograd.grad(ref, leaves, grad.double())
    for name, g, r, t in zip("xzw", got, want, (x, z, w), strict=True):
        assert g.shape == t.shape and g.dtype == t.dtype, name
        assert _rel_err(g, r) < 2e-5, name


def _mixer_inputs(L: int, groups: int, conv_bias: bool, dt_bias: bool, D: str, seed: int) -> list:
    """(zxbcdt as a strided slice, conv weight, conv bias, dt bias, A, D, norm weight) of a small mixer,
    every tensor a leaf that requires grad; ``D`` is "none", "1d" (per head) or "2d" (per channel)."""
    torch.manual_seed(seed)
    H, P, N, W = 4, 8, 16, 4
    d_inner, conv_dim = H * P, H * P + 2 * groups * N
    zxbcdt = torch.randn(2, L, d_inner + conv_dim + H + 3)[..., : d_inner + conv_dim + H]
    tensors = [
        zxbcdt,
        torch.randn(conv_dim, W) * 0.5,
        torch.randn(conv_dim) if conv_bias else None,
        torch.randn(H) * 0.3 if dt_bias else None,
        -torch.rand(H) - 0.3,
        {"none": None, "1d": torch.randn(H), "2d": torch.randn(H, P)}[D],
        torch.rand(d_inner) + 0.5,
    ]
    return [None if t is None else t.requires_grad_(True) for t in tensors]


def _run(fn, tensors: list, groups: int, norm_group: int, reverse: bool) -> torch.Tensor:
    zxbcdt, cw, cb, dtb, A, D, nw = tensors
    return fn(zxbcdt, cw, cb, dtb, A, D, 8, groups, nw, 1e-5, norm_group, reverse)


_CASES = [  # (reverse, L, groups, norm group, conv bias, dt bias, D, threads)
    (False, 150, 1, 32, True, True, "1d", 1),
    (True, 150, 1, 32, True, True, "2d", 1),
    (False, 70, 2, 16, False, True, "none", 2),
    (True, 70, 2, 8, True, False, "1d", 1),
    (True, 5, 2, 32, False, False, "2d", 1),
]


@pytest.mark.parametrize("reverse, L, groups, norm_group, conv_bias, dt_bias, D, threads", _CASES)
def test_conv_scan_norm_backward_equals_float64_autograd(
    reverse, L, groups, norm_group, conv_bias, dt_bias, D, threads
):
    """Every input's gradient of the fused CPU op (direct C++ backward) against float64 autograd of the composed
    reference on the PyTorch kernels; the backward runs no op of the recomputation. With two threads, tasks
    write disjoint slices of the shared gradient buffers."""
    tensors = _mixer_inputs(L, groups, conv_bias, dt_bias, D, seed=L + groups)
    present = [(name, t) for name, t in zip(_NAMES, tensors, strict=True) if t is not None]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = _run(ops.conv_scan_norm, tensors, groups, norm_group, reverse)
        assert kernel_choice.last_used()["conv_scan_norm"] == "cpu-cpp"
        grad = torch.randn_like(out)
        kernel_choice.reset()
        got = torch.autograd.grad(out, [t for _, t in present], grad)
    finally:
        torch.set_num_threads(previous)
    # no conv, scan or norm op ran again (not a recomputation); the SSD's C++ backward is reported
    assert kernel_choice.last_used() == {"ssd_scan_backward": "cpu-cpp"}
    leaves = [None if t is None else t.detach().double().requires_grad_(True) for t in tensors]
    with kernel_choice.reference_kernels():
        ref = _run(fused_module.conv_scan_norm_reference, leaves, groups, norm_group, reverse)
    want = torch.autograd.grad(ref, [t for t in leaves if t is not None], grad.double())
    for (name, t), g, r in zip(present, got, want, strict=True):
        assert g.shape == t.shape and g.dtype == t.dtype, name
        assert _rel_err(g, r) < 5e-5, name


@pytest.mark.parametrize("reverse", [False, True])
def test_conv_scan_norm_gradients_match_finite_differences(reverse):
    """gradcheck's test in float32, one input at a time: the analytic directional derivative <grad_input, v>
    of <out, dout> equals the five-point central difference of the fused forward along a random direction v
    (truncation error O(eps^4); the float32 forward's rounding adds ~1e-2), so a wrong gradient of any one
    input fails."""
    tensors = [t.detach() for t in _mixer_inputs(70, 2, True, True, "1d", seed=11)]
    dout = torch.randn(2, 70, 32)

    def loss(i: int, step: float, v: torch.Tensor) -> float:
        moved = list(tensors)
        moved[i] = tensors[i] + step * v
        with torch.no_grad():
            return (_run(ops.conv_scan_norm, moved, 2, 16, reverse).double() * dout.double()).sum().item()

    leaves = [t.clone().requires_grad_(True) for t in tensors]
    grads = torch.autograd.grad(_run(ops.conv_scan_norm, leaves, 2, 16, reverse), leaves, dout)
    eps = 3e-3
    for i, name in enumerate(_NAMES):
        v = torch.randn_like(tensors[i])
        near, far = loss(i, eps, v) - loss(i, -eps, v), loss(i, 2 * eps, v) - loss(i, -2 * eps, v)
        numeric = (8 * near - far) / (12 * eps)
        analytic = (grads[i].double() * v.double()).sum().item()
        assert abs(analytic - numeric) <= 5e-4 * abs(numeric) + 2e-2, (name, analytic, numeric)


@pytest.mark.parametrize("reverse", [False, True])
def test_ssd_backward_from_the_recomputed_states_equals_its_states_pass(reverse):
    """``ssd_bwd_xbc`` given the chunk states that ``ssd_conv_fwd`` finds while recomputing y gives what it
    computes with its own states-only pass (an empty ``states``), over three chunks, two groups and a partial
    last chunk; the kept states are the ones that pass computes."""
    zxbcdt, cw, cb, dtb, A, D, _ = [t.detach() for t in _mixer_inputs(150, 2, True, True, "2d", seed=3)]
    ext = fused_module.load_cpu_kernels()
    H, P, groups = A.shape[0], 8, 2
    d_inner, conv_dim = H * P, cw.shape[0]
    xbc, y, states = ext.ssd_conv_fwd(zxbcdt, cw, cb, dtb, A, D.contiguous(), P, groups, reverse)
    N = (conv_dim - d_inner) // (2 * groups)
    assert states.shape == (2, 3, groups, N, H // groups * P)
    dt = zxbcdt[..., d_inner + conv_dim :]
    dout = torch.randn(2, 150, H, P)

    def backward(kept: torch.Tensor) -> list[torch.Tensor]:
        dxbc, ddt = torch.empty_like(xbc), torch.empty_like(dt)
        params = ext.ssd_bwd_xbc(dout, xbc, dt, A, D.contiguous(), dtb, P, groups, reverse, dxbc, ddt, kept)
        return [dxbc, ddt, *params]

    for got, want in zip(backward(states), backward(states.new_empty(0)), strict=True):
        assert _rel_err(got, want) < 1e-6
    wrong = states.clone()
    wrong[:, 2] = 0  # the state entering the last chunk matters: dropping it changes the gradients
    assert _rel_err(backward(wrong)[0], backward(states)[0]) > 1e-3

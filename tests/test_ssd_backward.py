"""The C++ backward of the Mamba-2 SSD scan (``ssd_bwd`` in zoo/ops/csrc/ssd_cpu.cpp, op ``ssd_scan_backward``):
every gradient against autograd of the float64 step-by-step reference on small shapes (lengths that are not a
multiple of the 64-token chunk, one and two groups, with and without D, z, dt_bias, softplus, reverse), and
against the PyTorch chunked SSD (the reference path) at a T2MD-sized layer in float32."""

from __future__ import annotations

import sys

import pytest
import torch
from references import ssd_reference

from zoo import ops
from zoo.layers.mamba import Mamba2
from zoo.ops import _extension, kernel_choice

pytestmark = pytest.mark.skipif(_extension.load_cpu_kernels() is None, reason="the C++ CPU kernels did not build")
ssd_module = sys.modules["zoo.ops.ssd"]

NAMES = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias")


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of ``b``."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12)).item()


def _inputs(batch, L, H, P, G, N, D_shape, with_z, with_bias, softplus, seed=0) -> dict[str, torch.Tensor | None]:
    """Leaves of one SSD call; dt raw (softplus) or already positive (no softplus), A stable."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    dt = 0.7 * randn(batch, L, H) - 1.0 if softplus else 0.05 + 0.3 * torch.rand(batch, L, H, generator=gen)
    return {
        "x": randn(batch, L, H, P),
        "dt": dt,
        "A": -torch.rand(H, generator=gen) * 2 - 0.2,
        "B": randn(batch, L, G, N) / N**0.5,
        "C": randn(batch, L, G, N) / N**0.5,
        "D": None if D_shape is None else randn(*D_shape),
        "z": randn(batch, L, H, P) if with_z else None,
        "dt_bias": 0.3 * randn(H) if with_bias else None,
    }


def _reference(t: dict, softplus: bool, reverse: bool) -> torch.Tensor:
    """The float64 recurrence (reverse: on the flipped sequence, flipped back)."""

    def flip(v):
        return v.flip(1) if reverse and v is not None else v

    out = ssd_reference(
        flip(t["x"]), flip(t["dt"]), t["A"], flip(t["B"]), flip(t["C"]), t["D"], flip(t["z"]), t["dt_bias"], softplus
    )
    return flip(out)


def _op(t: dict, softplus: bool, reverse: bool) -> torch.Tensor:
    return ops.ssd_scan(
        t["x"], t["dt"], t["A"], t["B"], t["C"], 64, t["D"], t["z"], t["dt_bias"], dt_softplus=softplus, reverse=reverse
    )


def _grads(fn, t: dict, grad: torch.Tensor, dtype) -> dict[str, torch.Tensor]:
    leaves = {k: v.detach().to(dtype).requires_grad_(True) for k, v in t.items() if v is not None}
    full = {k: leaves.get(k) for k in t}
    got = torch.autograd.grad(fn(full), list(leaves.values()), grad.to(dtype))
    return dict(zip(leaves, got, strict=True))


CASES = [
    # L, H, P, G, N, D shape, z, dt_bias, softplus, reverse
    (1, 2, 4, 1, 8, None, False, False, False, False),
    (63, 2, 4, 1, 8, None, False, False, True, False),
    (65, 4, 3, 2, 8, (4, 3), True, True, True, False),
    (130, 4, 4, 2, 8, (4,), True, True, True, True),
    (100, 2, 8, 1, 16, (2, 8), False, True, False, True),
    (129, 3, 4, 1, 5, (3,), True, False, True, True),
]


@pytest.mark.parametrize("L, H, P, G, N, D_shape, with_z, with_bias, softplus, reverse", CASES)
def test_every_gradient_matches_the_float64_recurrence(L, H, P, G, N, D_shape, with_z, with_bias, softplus, reverse):
    t = _inputs(2, L, H, P, G, N, D_shape, with_z, with_bias, softplus, seed=L)
    grad = torch.randn(2, L, H, P, generator=torch.Generator().manual_seed(1))
    kernel_choice.reset()
    got = _grads(lambda v: _op(v, softplus, reverse), t, grad, torch.float32)
    assert kernel_choice.last_used() == {"ssd_scan": "cpu-cpp", "ssd_scan_backward": "cpu-cpp"}
    want = _grads(lambda v: _reference(v, softplus, reverse), t, grad, torch.float64)
    assert got.keys() == want.keys()
    for name in got:
        assert got[name].shape == want[name].shape and got[name].dtype == torch.float32, name
        assert _rel_err(got[name], want[name]) < 2e-5, name


def test_threshold_of_the_softplus_and_the_backward_of_dt_bias():
    """dt + dt_bias above 20 is taken as is (mamba_ssm's threshold): d dt = d dt_eff there."""
    t = _inputs(1, 70, 2, 4, 1, 8, None, False, True, True, seed=3)
    t["dt"][0, 10:20] += 25.0
    t["A"] = t["A"] * 0.01  # keep exp(dt A) away from 0 at dt ~ 25
    grad = torch.randn(1, 70, 2, 4)
    got = _grads(lambda v: _op(v, True, False), t, grad, torch.float32)
    want = _grads(lambda v: _reference(v, True, False), t, grad, torch.float64)
    for name in got:
        assert _rel_err(got[name], want[name]) < 2e-5, name


def test_token_major_slices_of_one_projection():
    """x, B, C, dt as views of one (b, L, width) projection, as a Mamba-2 layer has them: the gradient flows
    back into the projection as the PyTorch path's does."""
    H, P, G, N, L = 4, 8, 1, 16, 150
    proj = torch.randn(2, L, H * P + 2 * G * N + H + 3)
    sizes = [H * P, G * N, G * N, H, 3]

    def run(p):
        x, B, C, dt, _ = torch.split(p, sizes, dim=-1)
        return ops.ssd_scan(
            x.unflatten(-1, (H, P)),
            dt,
            -torch.linspace(0.5, 2.0, H),
            B.unflatten(-1, (G, N)),
            C.unflatten(-1, (G, N)),
            64,
            D=torch.ones(H),
            dt_softplus=True,
        )

    grad = torch.randn(2, L, H, P)
    leaf = proj.clone().requires_grad_(True)
    (got,) = torch.autograd.grad(run(leaf), leaf, grad)
    with kernel_choice.reference_kernels():
        leaf = proj.clone().requires_grad_(True)
        (want,) = torch.autograd.grad(run(leaf), leaf, grad)
    assert _rel_err(got, want) < 1e-5


def test_reference_kernels_still_select_the_pytorch_backward():
    t = _inputs(1, 70, 2, 4, 1, 8, (2, 4), True, True, True)
    kernel_choice.reset()
    with kernel_choice.reference_kernels():
        _grads(lambda v: _op(v, True, False), t, torch.randn(1, 70, 2, 4), torch.float32)
    assert kernel_choice.last_used() == {"ssd_scan": "torch-ssd"}  # no ssd_scan_backward: autograd of PyTorch


def test_t2md_training_shape_in_float32():
    """36 heads x 64, d_state 256, one group (T2MD's Mamba-2), two sequences of 320 tokens, reversed, with D,
    dt_bias and softplus: the C++ gradients against the PyTorch chunked SSD, both float32."""
    t = _inputs(2, 320, 36, 64, 1, 256, (36,), False, True, True, seed=7)
    t["A"] = -torch.linspace(1.0, 16.0, 36)  # Mamba-2's A_init_range
    t["dt"] = t["dt"] - 3.0  # dt around mamba_ssm's init (0.001 .. 0.1)
    grad = torch.randn(2, 320, 36, 64)
    got = _grads(lambda v: _op(v, True, True), t, grad, torch.float32)
    with kernel_choice.reference_kernels():
        want = _grads(lambda v: _op(v, True, True), t, grad, torch.float32)
    for name in got:
        assert _rel_err(got[name], want[name]) < 1e-4, name


def test_mamba2_layer_backward_runs_the_cpp_ssd_backward():
    """The fused conv_scan_norm op's C++ backward runs the SSD's C++ backward (``ssd_bwd_xbc``, the kernel of
    ``ssd_bwd`` writing into the zxbcdt gradient); the layer's gradients equal the reference path's."""
    torch.manual_seed(0)
    layer = Mamba2(32, d_state=16, headdim=8)
    u = torch.randn(2, 90, 32)
    kernel_choice.reset()
    layer(u).square().sum().backward()
    assert kernel_choice.last_used()["ssd_scan_backward"] == "cpu-cpp"
    got = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()
    with kernel_choice.reference_kernels():
        layer(u).square().sum().backward()
    for n, p in layer.named_parameters():
        assert _rel_err(got[n], p.grad) < 1e-4, n

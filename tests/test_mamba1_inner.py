"""The fused Mamba-1 mixer on the CPU (``zoo.ops.mamba1_inner``): the same values and gradients as the composed
ops, none of the copies it exists to remove, and the composed path wherever it does not apply."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from zoo.layers.mamba import Mamba
from zoo.ops import kernel_choice, mamba1_inner, selective_scan
from zoo.ops.dispatch import simulate_device
from zoo.ops.mamba1_scan import selective_scan_loop


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def _out_and_grads(layer: Mamba, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    x = x.clone().requires_grad_(True)
    out = layer(x)
    names, params = zip(*layer.named_parameters(), strict=True)
    grads = torch.autograd.grad(out, [x, *params], g)
    return out.detach(), dict(zip(["input", *names], grads, strict=True))


FORMS = [
    dict(),
    dict(conv_bias=False),
    dict(bimamba=True, divide_out=True),
    dict(bimamba=True, share_dt_proj=True),
]


@pytest.mark.parametrize("form", FORMS, ids=["uni", "no-conv-bias", "vim", "shared-dt"])
def test_fused_mixer_matches_float64_composed_ops(form):
    torch.manual_seed(0)
    layer = Mamba(24, d_state=16, **form)  # d_inner 48: three vectors of 16 channels
    x, g = torch.randn(3, 37, 24), torch.randn(3, 37, 24)
    out, grads = _out_and_grads(layer, x, g)
    assert kernel_choice.last_used()["mamba1_mixer"] == "cpu-fused"
    # float64 is outside the fused path's domain: the composed ops with their PyTorch loops are the reference
    ref_out, ref_grads = _out_and_grads(copy.deepcopy(layer).double(), x.double(), g.double())
    assert kernel_choice.last_used()["mamba1_mixer"] == "composed"
    assert _rel_err(out, ref_out) < 1e-5
    for name, grad in grads.items():
        assert _rel_err(grad, ref_grads[name]) < 1e-4, name


class _OpLog(TorchDispatchMode):
    """Names of the aten ops dispatched inside, with their output shapes."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
        self.calls.append((str(func.overloadpacket), shape))
        return out


def _backward_ops(layer: Mamba, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    out = layer(x)
    with _OpLog() as log:
        out.square().sum().backward()
    return log.calls


def test_fused_backward_has_no_concatenation_and_no_gradient_sum(monkeypatch):
    """The two copies the fused function removes: the cat of dx and dz into the in_proj output's gradient and
    the sum of the conv output's two gradients. The composed path shows both, so the check can fail."""
    torch.manual_seed(0)
    layer = Mamba(24, d_state=16)
    x = torch.randn(2, 30, 24, requires_grad=True)
    full = {(2, 30, 96), (2, 96, 30)}  # (b, L, 2 d_inner) and its transpose
    half = {(2, 30, 48), (2, 48, 30)}

    def copies(calls):
        cats = [s for name, s in calls if name == "aten.cat" and s in full]
        sums = [s for name, s in calls if name == "aten.add" and s in half]
        return cats, sums

    fused_cats, fused_sums = copies(_backward_ops(layer, x))
    assert kernel_choice.last_used()["mamba1_mixer"] == "cpu-fused"
    assert fused_cats == [] and fused_sums == []
    monkeypatch.setattr(mamba1_inner, "usable", lambda *args: False)
    composed_cats, composed_sums = copies(_backward_ops(layer, x))
    assert composed_cats and composed_sums


def test_composed_ops_run_where_the_fused_function_does_not_apply():
    layer = Mamba(24, d_state=16)
    x = torch.randn(2, 10, 24)
    with torch.no_grad():  # sampling: nothing to save for a backward
        layer(x)
    assert kernel_choice.last_used()["mamba1_mixer"] == "composed"
    torch.jit.trace(layer, x, check_trace=False)  # tracers (fvcore) count the composed ops
    assert kernel_choice.last_used()["mamba1_mixer"] == "composed"
    with simulate_device("cuda"):  # the CUDA rows' glue (no mamba_ssm here: the separate ops)
        layer(x.requires_grad_(True))
    assert kernel_choice.last_used()["mamba1_mixer"] == "composed"
    Mamba(24, d_state=8)(x)  # the vector kernel's d_state is 16
    assert kernel_choice.last_used()["mamba1_mixer"] == "composed"
    with torch.device("meta"):  # counting on the meta device
        Mamba(24, d_state=16)(x.to("meta"))
    assert kernel_choice.last_used()["mamba1_mixer"] == "composed"


def test_scan_softplus_holds_over_the_whole_range_of_dt():
    """The kernels' inline softplus (a log1p series) and its derivative against float64, element by element,
    from dt = -30 (softplus ~1e-13) through the threshold 20 (softplus(x) = x above it) to 30. With A = 0 and
    one step, y = softplus(dt) u (B . C), so each output's relative error is its softplus's."""
    torch.manual_seed(0)
    b, d = 4, 64
    delta = torch.linspace(-30, 30, b * d)[torch.randperm(b * d)].reshape(b, d, 1)
    u, z = torch.randn(b, d, 1), torch.randn(b, d, 1)
    A, B, C = torch.zeros(d, 16), torch.randn(b, 16, 1), torch.randn(b, 16, 1)
    args = [t.clone().requires_grad_(True) for t in (u, delta, A, B, C, z)]
    out = selective_scan(*args[:5], None, args[5], None, True)
    ru, rdelta, rA, rB, rC, rz = (t.detach().double().requires_grad_(True) for t in args)
    ref = selective_scan_loop(ru, rdelta, rA, rB.unsqueeze(1), rC.unsqueeze(1), None, rz, None, True)  # (b, G, N, L)
    assert ((out.double() - ref).abs() / ref.abs()).max() < 1e-5
    g = torch.randn_like(ref)
    (ddelta,) = torch.autograd.grad(out, [args[1]], g.float())
    (ref_ddelta,) = torch.autograd.grad(ref, [rdelta], g)
    assert ((ddelta.double() - ref_ddelta).abs() / ref_ddelta.abs()).max() < 1e-5

"""The CUDA glue of every op, run on the CPU through oracles with the upstream signatures
(upstream_oracles.py): forward and gradients, float32 and bfloat16, against our CPU kernels. What would
otherwise only be exercised on a GPU (argument order, layouts, dt bias and softplus, D, z, chunk size, the
fused Mamba-2 call and its norm options, reverse scans) is checked here."""

from __future__ import annotations

import sys

import pytest
import torch
import upstream_oracles as oracle

from zoo import ops

conv_module, ssd_module = sys.modules["zoo.ops.conv"], sys.modules["zoo.ops.ssd"]
scan_module, attention_module = sys.modules["zoo.ops.mamba1_scan"], sys.modules["zoo.ops.softmax_attention"]
fused_module = sys.modules["zoo.ops.mamba2_fused"]
TOL = {torch.float32: 2e-4, torch.bfloat16: 4e-2}


def _rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12)).item()


def _compare(glue, ours, inputs, dtype):
    """glue(*inputs) through the oracle vs our CPU op on the same values: outputs and input gradients."""
    leaves = [t.to(dtype).detach().requires_grad_(t.is_floating_point()) if t is not None else None for t in inputs]
    refs = [t.detach().float().requires_grad_(t.is_floating_point()) if t is not None else None for t in leaves]
    got, want = glue(*leaves), ours(*refs)
    assert got.dtype == dtype and _rel_err(got, want) < TOL[dtype]
    grad = torch.randn_like(want)
    wanted = [i for i, t in enumerate(leaves) if t is not None and t.requires_grad]
    g1 = torch.autograd.grad(got, [leaves[i] for i in wanted], grad.to(dtype))
    g2 = torch.autograd.grad(want, [refs[i] for i in wanted], grad)
    for i, a, b in zip(wanted, g1, g2, strict=True):
        assert _rel_err(a, b) < 3 * TOL[dtype], f"gradient of input {i}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_selective_scan_glue(dtype):
    torch.manual_seed(0)
    inputs = [torch.randn(2, 16, 40), 0.5 * torch.randn(2, 16, 40) - 1, -torch.rand(16, 8) - 0.1,
              torch.randn(2, 8, 40), torch.randn(2, 8, 40), torch.randn(16), torch.randn(2, 16, 40),
              0.1 * torch.randn(16)]  # fmt: skip

    def glue(u, delta, A, B, C, D, z, bias):
        return scan_module._cuda_selective_scan(u, delta, A, B, C, D, z, bias, True, fn=oracle.selective_scan_fn)

    def ours(u, delta, A, B, C, D, z, bias):
        return ops.selective_scan(u, delta, A, B, C, D, z, bias, True)

    _compare(glue, ours, inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reverse", [False, True])
def test_ssd_glue(dtype, reverse):
    torch.manual_seed(1)
    inputs = [torch.randn(1, 70, 4, 8), torch.randn(1, 70, 4), -torch.rand(4) - 0.2, torch.randn(1, 70, 2, 8) / 3,
              torch.randn(1, 70, 2, 8) / 3, torch.randn(4), torch.randn(1, 70, 4, 8), 0.1 * torch.randn(4)]  # fmt: skip

    def glue(x, dt, A, B, C, D, z, bias):
        run = ssd_module._flipped(lambda *a: ssd_module._cuda_ssd(*a, fn=oracle.mamba_chunk_scan_combined))
        return run(x, dt, A, B, C, D, z, bias, True, reverse)

    def ours(x, dt, A, B, C, D, z, bias):
        return ops.ssd_scan(x, dt, A, B, C, 64, D, z, bias, True, reverse)

    _compare(glue, ours, inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_causal_conv1d_glue(dtype):
    torch.manual_seed(2)
    inputs = [torch.randn(2, 24, 30), torch.randn(24, 4), torch.randn(24)]

    def glue(x, w, b):
        return conv_module._flipped(lambda *a: conv_module._cuda_conv(*a, fn=oracle.causal_conv1d_fn))(
            x, w, b, True, True)

    def ours(x, w, b):
        return ops.causal_conv1d(x, w, b, "silu", reverse=True)

    _compare(glue, ours, inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_flash_attention_glue(dtype):
    torch.manual_seed(3)
    inputs = [torch.randn(2, 3, 17, 16), torch.randn(2, 3, 9, 16), torch.randn(2, 3, 9, 16)]

    def glue(q, k, v):
        return attention_module._attention_flash(q, k, v, fn=oracle.flash_attn_func)

    _compare(glue, ops.attention, inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_mamba2_glue(dtype, reverse):
    """Our fused CPU core vs mamba_split_conv1d_scan_combined's call as the Mamba-2 layer makes it (gate
    before the norm, norm groups of d_inner / ngroups, no out projection)."""
    torch.manual_seed(4)
    H, P, N, G = 4, 8, 8, 2
    d_inner, conv_dim = H * P, H * P + 2 * G * N
    inputs = [torch.randn(1, 50, d_inner + conv_dim + H), torch.randn(conv_dim, 4) * 0.5, torch.randn(conv_dim),
              0.3 * torch.randn(H), -torch.rand(H) - 0.3, torch.randn(H), torch.rand(d_inner) + 0.5]  # fmt: skip

    def glue(zxbcdt, cw, cb, dtb, A, D, nw):
        return fused_module._cuda_conv_scan_norm(zxbcdt, cw, cb, dtb, A, D, P, G, nw, 1e-5, reverse,
                                                 fn=oracle.mamba_split_conv1d_scan_combined)  # fmt: skip

    def ours(zxbcdt, cw, cb, dtb, A, D, nw):
        return ops.conv_scan_norm(zxbcdt, cw, cb, dtb, A, D, P, G, nw, 1e-5, d_inner // G, reverse)

    _compare(glue, ours, inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("form", ["unidirectional", "vim-v2", "vim-v2-shared-dt"])
def test_fused_mamba1_layer_glue(dtype, form):
    """The Mamba-1 layer's fused CUDA call (mamba_inner_fn; Vim's mamba_inner_fn_no_out_proj per direction)
    vs the layer's CPU path: output and every parameter's gradient."""
    from zoo.layers.mamba import Mamba

    torch.manual_seed(5)
    kwargs = {"unidirectional": dict(d_conv=3), "vim-v2": dict(bimamba=True, divide_out=True),
              "vim-v2-shared-dt": dict(bimamba=True, share_dt_proj=True)}[form]  # fmt: skip
    layer = Mamba(24, d_state=8, **kwargs)
    fused = Mamba(24, d_state=8, **kwargs).to(dtype)
    fused.load_state_dict(layer.state_dict())
    hidden = torch.randn(2, 37, 24)
    fn = oracle.mamba_inner_fn_no_out_proj if layer.bimamba else oracle.mamba_inner_fn
    got = fused.fused_forward(hidden.to(dtype), fn)
    want = layer(hidden)
    assert got.dtype == dtype and _rel_err(got, want) < TOL[dtype]
    grad = torch.randn_like(want)
    got.backward(grad.to(dtype))
    want.backward(grad)
    for (name, p), q in zip(layer.named_parameters(), fused.parameters(), strict=True):
        assert _rel_err(q.grad, p.grad) < 3 * TOL[dtype], name

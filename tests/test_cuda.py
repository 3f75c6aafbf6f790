"""The CUDA paths (mamba-ssm, causal-conv1d, flash-attn) against our CPU kernels: float32, bfloat16 and float16,
with gradients, and which kernels ran. Skipped without a GPU (scripts/gpu_check.sh runs them on one)."""

from __future__ import annotations

import os

import pytest
import torch

from zoo import ops
from zoo.ops import _cuda, kernel_choice

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_selective_scan_cuda_matches_cpu():
    args = [
        torch.randn(2, 32, 100),
        0.5 * torch.randn(2, 32, 100),
        -torch.rand(32, 16),
        torch.randn(2, 16, 100),
        torch.randn(2, 16, 100),
        torch.randn(32),
        torch.randn(2, 32, 100),
        0.1 * torch.randn(32),
    ]
    cpu = ops.selective_scan(*args, delta_softplus=True)
    gpu = ops.selective_scan(*[a.cuda() for a in args], delta_softplus=True)
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)


def test_ssd_scan_cuda_matches_cpu():
    args = [
        torch.randn(1, 300, 4, 16),
        torch.randn(1, 300, 4),
        -torch.rand(4),
        torch.randn(1, 300, 1, 32),
        torch.randn(1, 300, 1, 32),
    ]
    cpu = ops.ssd_scan(*args, chunk_size=64, D=torch.ones(4), dt_softplus=True)
    gpu = ops.ssd_scan(*[a.cuda() for a in args], chunk_size=64, D=torch.ones(4).cuda(), dt_softplus=True)
    # mamba_ssm's Triton kernels multiply float32 in TF32 (10-bit mantissa): elementwise 1e-3 failed on an H200
    # with the values agreeing to 4-5 digits; judged like the layers below, on the largest error vs the largest value
    assert _rel(gpu, cpu) < TOLERANCE[torch.float32]


def test_attention_and_conv_cuda_match_cpu():
    q = torch.randn(2, 4, 64, 32)
    assert torch.allclose(ops.attention(q.cuda(), q.cuda(), q.cuda()).cpu(), ops.attention(q, q, q), atol=1e-4)
    x, w = torch.randn(2, 16, 50), torch.randn(16, 4)
    gpu = ops.causal_conv1d(x.cuda(), w.cuda(), None, "silu").cpu()
    assert torch.allclose(gpu, ops.causal_conv1d(x, w, None, "silu"), atol=1e-4)


# --- dtypes, gradients and which kernels ran (the [cuda] extra's, when it is installed) ---

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
TOLERANCE = {torch.float32: 2e-3, torch.bfloat16: 5e-2, torch.float16: 2e-2}


LOSS_SCALE = {torch.float32: 1.0, torch.bfloat16: 1.0, torch.float16: 2.0**16}


def _backward_scaled(out, module, dtype):
    """The test loss's backward with float16's loss scale, then ``module``'s gradients unscaled, as GradScaler
    does: a Mamba-1 layer's dt_proj gradients of ~1e-9 underflow float16 (6e-8 is its smallest subnormal; they
    were all zero on an H200 without the scale)."""
    (out.float().square().mean() * LOSS_SCALE[dtype]).backward()
    for p in module.parameters():
        if p.grad is not None:
            p.grad /= LOSS_SCALE[dtype]


def _rel(a, b):
    return ((a.float().cpu() - b.float().cpu()).abs().max() / b.float().abs().max().clamp_min(1e-9)).item()


def test_the_cuda_extra_is_installed_when_required():
    """MAMBABENCH_REQUIRE_CUDA_EXTRA=1 (scripts/gpu_check.sh sets it) turns a missing package into a failure."""
    missing = [name for name, ok in _cuda.available().items() if not ok]
    if os.environ.get("MAMBABENCH_REQUIRE_CUDA_EXTRA") == "1":
        assert not missing, f"not importable: {missing}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_mamba2_layer_on_cuda_matches_cpu_with_gradients(dtype):
    from zoo.layers.mamba import Mamba2

    torch.manual_seed(0)
    layer = Mamba2(64, d_state=32, headdim=16)
    x = torch.randn(2, 300, 64)
    cpu = layer(x.requires_grad_(True))
    cpu.square().mean().backward()
    grads_cpu = {k: p.grad.clone() for k, p in layer.named_parameters()}
    gpu_layer = Mamba2(64, d_state=32, headdim=16).cuda()
    gpu_layer.load_state_dict(layer.state_dict())
    kernel_choice.reset()
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        gpu = gpu_layer(x.detach().cuda())
    _backward_scaled(gpu, gpu_layer, dtype)
    if _cuda.available()["mamba_ssm.split_conv1d_scan"]:
        assert kernel_choice.last_used()["conv_scan_norm"] == "mamba_ssm-fused"
    assert _rel(gpu, cpu) < TOLERANCE[dtype]
    for name, p in gpu_layer.named_parameters():
        assert _rel(p.grad, grads_cpu[name]) < 10 * TOLERANCE[dtype], name


@pytest.mark.parametrize("dtype", DTYPES)
def test_mamba1_vim_layer_on_cuda_matches_cpu_with_gradients(dtype):
    from zoo.layers.mamba import Mamba

    torch.manual_seed(0)
    layer = Mamba(64, bimamba=True, divide_out=True)
    x = torch.randn(2, 200, 64)
    cpu = layer(x)
    cpu.square().mean().backward()
    grads_cpu = {k: p.grad.clone() for k, p in layer.named_parameters()}
    gpu_layer = Mamba(64, bimamba=True, divide_out=True).cuda()
    gpu_layer.load_state_dict(layer.state_dict())
    kernel_choice.reset()
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        gpu = gpu_layer(x.cuda())
    _backward_scaled(gpu, gpu_layer, dtype)
    if _cuda.mamba_inner_fn_no_out_proj() is not None:  # Vim's fork: the fused mixer per direction
        assert kernel_choice.last_used()["mamba1_mixer"] == "mamba_ssm-fused"
    else:
        if _cuda.available()["mamba_ssm.selective_scan"]:
            assert kernel_choice.last_used()["selective_scan"] == "mamba_ssm"
        if _cuda.available()["causal_conv1d"]:
            assert kernel_choice.last_used()["causal_conv1d"] == "causal_conv1d"
    assert _rel(gpu, cpu) < TOLERANCE[dtype]
    for name, p in gpu_layer.named_parameters():
        assert _rel(p.grad, grads_cpu[name]) < 10 * TOLERANCE[dtype], name


@pytest.mark.parametrize("dtype", DTYPES)
def test_mamba1_layer_on_cuda_runs_the_fused_mixer(dtype):
    """DiM (Teng et al.) and WD-Mamba's unidirectional layer: mamba_ssm's mamba_inner_fn when installed."""
    from zoo.layers.mamba import Mamba

    torch.manual_seed(0)
    layer = Mamba(64, d_conv=3)
    x = torch.randn(2, 200, 64)
    cpu = layer(x)
    cpu.square().mean().backward()
    gpu_layer = Mamba(64, d_conv=3).cuda()
    gpu_layer.load_state_dict(layer.state_dict())
    kernel_choice.reset()
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        gpu = gpu_layer(x.cuda())
    _backward_scaled(gpu, gpu_layer, dtype)
    if _cuda.available()["mamba_ssm.mamba_inner"]:
        assert kernel_choice.last_used()["mamba1_mixer"] == "mamba_ssm-fused"
    if os.environ.get("MAMBABENCH_REQUIRE_CUDA_EXTRA") == "1":
        assert _cuda.available()["mamba_ssm.mamba_inner"]
    assert _rel(gpu, cpu) < TOLERANCE[dtype]
    for (name, p), q in zip(layer.named_parameters(), gpu_layer.parameters(), strict=True):
        assert _rel(q.grad, p.grad) < 10 * TOLERANCE[dtype], name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_flash_attention_runs_for_half_precision(dtype):
    q = torch.randn(2, 4, 128, 64)
    kernel_choice.reset()
    out = ops.attention(*(t.cuda().to(dtype) for t in (q, q, q)))
    if _cuda.available()["flash_attn"]:
        assert kernel_choice.last_used()["attention"] == "flash_attn"
    assert _rel(out, ops.attention(q, q, q)) < TOLERANCE[dtype]

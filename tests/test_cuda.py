"""The CUDA paths (mamba-ssm, causal-conv1d, flash-attn) against our CPU kernels. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from zoo import ops

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_selective_scan_cuda_matches_cpu():
    args = [torch.randn(2, 32, 100), 0.5 * torch.randn(2, 32, 100), -torch.rand(32, 16),
            torch.randn(2, 16, 100), torch.randn(2, 16, 100), torch.randn(32), torch.randn(2, 32, 100),
            0.1 * torch.randn(32)]  # fmt: skip
    cpu = ops.selective_scan(*args, delta_softplus=True)
    gpu = ops.selective_scan(*[a.cuda() for a in args], delta_softplus=True)
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)


def test_ssd_scan_cuda_matches_cpu():
    args = [torch.randn(1, 300, 4, 16), torch.randn(1, 300, 4), -torch.rand(4), torch.randn(1, 300, 1, 32),
            torch.randn(1, 300, 1, 32)]  # fmt: skip
    cpu = ops.ssd_scan(*args, chunk_size=64, D=torch.ones(4), dt_softplus=True)
    gpu = ops.ssd_scan(*[a.cuda() for a in args], chunk_size=64, D=torch.ones(4).cuda(), dt_softplus=True)
    assert torch.allclose(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)


def test_attention_and_conv_cuda_match_cpu():
    q = torch.randn(2, 4, 64, 32)
    assert torch.allclose(ops.attention(q.cuda(), q.cuda(), q.cuda()).cpu(), ops.attention(q, q, q), atol=1e-4)
    x, w = torch.randn(2, 16, 50), torch.randn(16, 4)
    gpu = ops.causal_conv1d(x.cuda(), w.cuda(), None, "silu").cpu()
    assert torch.allclose(gpu, ops.causal_conv1d(x, w, None, "silu"), atol=1e-4)

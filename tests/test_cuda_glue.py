"""The CUDA glue of every op, run on the CPU through oracles with the upstream signatures
(upstream_oracles.py): forward and gradients, float32 and bfloat16, against our CPU kernels. Each op is
called as a model calls it, with its backend table's CUDA rows selected (``simulate_device("cuda")``) and
the CUDA packages' entry points replaced by the oracles, so the dispatch, the custom op's backward and
what would otherwise only be exercised on a GPU (argument order, layouts, dt bias and softplus, D, z, chunk
size, the fused Mamba-2 call and its norm options, reverse scans) are checked here, and each test asserts
which backend ran."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
import upstream_oracles as oracle

from zoo import ops
from zoo.ops import _cuda, kernel_choice
from zoo.ops.dispatch import simulate_device

TOL = {torch.float32: 2e-4, torch.bfloat16: 4e-2}
_PROBES = (
    "selective_scan_fn",
    "mamba_chunk_scan_combined",
    "mamba_split_conv1d_scan_combined",
    "causal_conv1d_fn",
    "flash_attn_func",
    "mamba_inner_fn",
    "mamba_inner_fn_no_out_proj",
)


@pytest.fixture
def cuda_oracles(monkeypatch):
    """The CUDA packages 'installed': every probe in zoo.ops._cuda returns the oracle of the same name."""
    for name in _PROBES:
        monkeypatch.setattr(_cuda, name, _returns(getattr(oracle, name)))


def _returns(value):
    return lambda: value


@contextmanager
def _on_cuda_rows(op: str, backend: str):
    kernel_choice.reset()
    with simulate_device("cuda"):
        yield
    assert kernel_choice.last_used()[op] == backend


def _through_cuda_rows(op: str, backend: str):
    """Decorator: the function runs with the CUDA rows selected, and ``backend`` must be the one that ran."""

    def wrap(fn):
        def run(*args):
            with _on_cuda_rows(op, backend):
                return fn(*args)

        return run

    return wrap


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
def test_selective_scan_glue(dtype, cuda_oracles):
    torch.manual_seed(0)
    inputs = [
        torch.randn(2, 16, 40),
        0.5 * torch.randn(2, 16, 40) - 1,
        -torch.rand(16, 8) - 0.1,
        torch.randn(2, 8, 40),
        torch.randn(2, 8, 40),
        torch.randn(16),
        torch.randn(2, 16, 40),
        0.1 * torch.randn(16),
    ]

    @_through_cuda_rows(op="selective_scan", backend="mamba_ssm")
    def glue(u, delta, A, B, C, D, z, bias):
        return ops.selective_scan(u, delta, A, B, C, D, z, bias, True)

    def ours(u, delta, A, B, C, D, z, bias):
        return ops.selective_scan(u, delta, A, B, C, D, z, bias, True)

    _compare(glue, ours, inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reverse", [False, True])
def test_ssd_glue(dtype, reverse, cuda_oracles):
    torch.manual_seed(1)
    inputs = [
        torch.randn(1, 70, 4, 8),
        torch.randn(1, 70, 4),
        -torch.rand(4) - 0.2,
        torch.randn(1, 70, 2, 8) / 3,
        torch.randn(1, 70, 2, 8) / 3,
        torch.randn(4),
        torch.randn(1, 70, 4, 8),
        0.1 * torch.randn(4),
    ]

    @_through_cuda_rows(op="ssd_scan", backend="mamba_ssm")
    def glue(x, dt, A, B, C, D, z, bias):
        return ops.ssd_scan(x, dt, A, B, C, 64, D, z, bias, True, reverse)

    def ours(x, dt, A, B, C, D, z, bias):
        return ops.ssd_scan(x, dt, A, B, C, 64, D, z, bias, True, reverse)

    _compare(glue, ours, inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_causal_conv1d_glue(dtype, cuda_oracles):
    torch.manual_seed(2)
    inputs = [torch.randn(2, 24, 30), torch.randn(24, 4), torch.randn(24)]

    @_through_cuda_rows(op="causal_conv1d", backend="causal_conv1d")
    def glue(x, w, b):
        return ops.causal_conv1d(x, w, b, "silu", reverse=True)

    def ours(x, w, b):
        return ops.causal_conv1d(x, w, b, "silu", reverse=True)

    _compare(glue, ours, inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_flash_attention_glue(dtype, cuda_oracles):
    """flash-attn takes half precision only: float32 on CUDA stays with SDPA."""
    torch.manual_seed(3)
    inputs = [torch.randn(2, 3, 17, 16), torch.randn(2, 3, 9, 16), torch.randn(2, 3, 9, 16)]
    expected = "sdpa" if dtype == torch.float32 else "flash_attn"
    _compare(_through_cuda_rows("attention", expected)(ops.attention), ops.attention, inputs, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_mamba2_glue(dtype, reverse, cuda_oracles):
    """Our fused CPU core vs mamba_split_conv1d_scan_combined's call as the Mamba-2 layer makes it (gate
    before the norm, norm groups of d_inner / ngroups, no out projection)."""
    torch.manual_seed(4)
    H, P, N, G = 4, 8, 8, 2
    d_inner, conv_dim = H * P, H * P + 2 * G * N
    inputs = [
        torch.randn(1, 50, d_inner + conv_dim + H),
        torch.randn(conv_dim, 4) * 0.5,
        torch.randn(conv_dim),
        0.3 * torch.randn(H),
        -torch.rand(H) - 0.3,
        torch.randn(H),
        torch.rand(d_inner) + 0.5,
    ]

    @_through_cuda_rows(op="conv_scan_norm", backend="mamba_ssm-fused")
    def glue(zxbcdt, cw, cb, dtb, A, D, nw):
        return ops.conv_scan_norm(zxbcdt, cw, cb, dtb, A, D, P, G, nw, 1e-5, d_inner // G, reverse)

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
    kwargs = {
        "unidirectional": dict(d_conv=3),
        "vim-v2": dict(bimamba=True, divide_out=True),
        "vim-v2-shared-dt": dict(bimamba=True, share_dt_proj=True),
    }[form]
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


def test_cuda_rows_fall_back_when_the_packages_are_missing(monkeypatch):
    """Without the CUDA extra, CUDA tensors take the PyTorch rows (and the op still differentiates)."""
    for name in _PROBES:
        monkeypatch.setattr(_cuda, name, _returns(None))
    x, w = torch.randn(1, 8, 12, requires_grad=True), torch.randn(8, 4)
    with _on_cuda_rows("causal_conv1d", "torch-conv1d"):
        y = ops.causal_conv1d(x, w, None, "silu")
    y.sum().backward()
    assert x.grad is not None and ops.dispatch.backend_table()["selective_scan"]["cuda"] == ["mamba_ssm", "torch-loop"]


def test_mamba_ssm_without_causal_conv1d_takes_the_separate_ops(cuda_oracles, monkeypatch):
    """mamba-ssm's fused mixers call causal-conv1d's kernel inside and fail at the first call without it (seen on
    an H200 with mamba-ssm alone): then the Mamba-1 layer and the Mamba-2 core take the separate ops, and the
    PyTorch conv row takes bfloat16 activations with float32 parameters (a custom op under autocast)."""
    from zoo.layers.mamba import Mamba

    assert Mamba(24, d_state=8).fused_kernel() is oracle.mamba_inner_fn  # with causal-conv1d: fused
    monkeypatch.setattr(_cuda, "causal_conv1d_fn", _returns(None))
    assert Mamba(24, d_state=8).fused_kernel() is None and Mamba(24, d_state=8, bimamba=True).fused_kernel() is None
    H, P, G, N = 4, 8, 2, 8
    d_inner, conv_dim = H * P, H * P + 2 * G * N
    with _on_cuda_rows("conv_scan_norm", "composed"):
        ops.conv_scan_norm(
            torch.randn(1, 20, d_inner + conv_dim + H),
            torch.randn(conv_dim, 4),
            torch.randn(conv_dim),
            torch.randn(H),
            -torch.rand(H) - 0.3,
            torch.randn(H),
            P,
            G,
            torch.rand(d_inner) + 0.5,
            1e-5,
            d_inner // G,
            False,
        )
    x, w, b = torch.randn(1, 8, 12), torch.randn(8, 4), torch.randn(8)
    with _on_cuda_rows("causal_conv1d", "torch-conv1d"):
        y = ops.causal_conv1d(x.bfloat16(), w, b, "silu")
    assert y.dtype == torch.bfloat16 and _rel_err(y, ops.causal_conv1d(x, w, b, "silu")) < TOL[torch.bfloat16]


@pytest.mark.parametrize("name", ["dim-teng-tiny", "dim-mo-tiny", "t2md-tiny"])
def test_whole_models_on_the_cuda_rows(name, cuda_oracles, monkeypatch):
    """A model as a GPU would run it (fused Mamba-1 mixers, the fused Mamba-2 core, the CUDA scans, convs and
    attention rows, through the oracles) computes what it computes on the CPU, gradients included. The
    oracles' scans run on the vectorised PyTorch scans here (the element-by-element references hold millions
    of autograd nodes for a whole model; the op tests above check the oracles against those)."""
    import zoo
    from zoo.ops.mamba1_scan import selective_scan_loop
    from zoo.ops.ssd import ssd_scan_chunked

    monkeypatch.setattr(oracle, "selective_scan_reference", selective_scan_loop)
    monkeypatch.setattr(oracle, "ssd_reference", ssd_scan_chunked)
    torch.manual_seed(0)
    model = zoo.create_model(name)
    spec = zoo.get_entry(name).inputs
    x = torch.randn(2, spec.in_channels, spec.image_size, spec.image_size)
    t = torch.tensor([10, 500])
    cond = (
        torch.tensor([1, 2])
        if spec.conditioning == "class"
        else torch.randn(2, spec.caption_tokens, spec.caption_channels)
    )
    want = model(x, t, cond)
    want_grads = torch.autograd.grad(want.square().mean(), list(model.parameters()), allow_unused=True)
    kernel_choice.reset()
    with simulate_device("cuda"):
        got = model(x, t, cond)
        ran = kernel_choice.last_used()
        got_grads = torch.autograd.grad(got.square().mean(), list(model.parameters()), allow_unused=True)
    cuda_names = {"mamba_ssm", "mamba_ssm-fused", "causal_conv1d", "sdpa"}
    assert ran and set(ran.values()) <= cuda_names, ran
    assert _rel_err(got, want) < 1e-4
    for g, w in zip(got_grads, want_grads, strict=True):
        if w is not None:
            assert _rel_err(g, w) < 1e-3

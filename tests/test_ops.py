"""Every CPU path of zoo.ops against the step-by-step references in references.py, outputs and
gradients, on random shapes (odd lengths, lengths that are not a multiple of the chunk, batch > 1,
grouped B/C, with and without D, z, delta_bias, softplus)."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from references import (
    attention_reference,
    causal_conv1d_reference,
    selective_scan_reference,
    ssd_reference,
)
from torch.utils.flop_counter import FlopCounterMode

from zoo import ops
from zoo.ops import kernel_choice
from zoo.ops.mamba1_scan import selective_scan_loop


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12)).item()


def _selective_scan_inputs(batch, dim, n, L, groups, with_D, with_z, with_bias, softplus=True):
    """Random inputs of a stable scan: dt > 0 after the optional softplus, A < 0."""
    torch.manual_seed(hash((batch, dim, n, L, groups, with_D, with_z, with_bias, softplus)) % 2**31)
    u = torch.randn(batch, dim, L)
    delta = 0.5 * torch.randn(batch, dim, L) - 1.0 if softplus else 0.2 * torch.rand(batch, dim, L) + 0.01
    A = -torch.rand(dim, n) * 2 - 0.1
    B = torch.randn(batch, groups, n, L)
    C = torch.randn(batch, groups, n, L)
    D = torch.randn(dim) if with_D else None
    z = torch.randn(batch, dim, L) if with_z else None
    bias = 0.1 * torch.randn(dim) if with_bias else None
    return [u, delta, A, B, C, D, z, bias]


def _check_against(fn, ref, inputs, kwargs, tol, grad_tol=None):
    def leaf(t, dtype=None):
        if t is None or not t.is_floating_point():
            return t
        return t.to(dtype or t.dtype).clone().requires_grad_(True)

    leaves = [leaf(t) for t in inputs]
    ref_leaves = [leaf(t, torch.float64) for t in inputs]
    out = fn(*leaves, **kwargs)
    expected = ref(*ref_leaves, **kwargs)
    assert out.dtype == inputs[0].dtype
    assert _rel_err(out, expected) < tol
    grad = torch.randn_like(out)
    present = [i for i, t in enumerate(leaves) if t is not None and t.requires_grad]
    got = torch.autograd.grad(out, [leaves[i] for i in present], grad)
    want = torch.autograd.grad(expected, [ref_leaves[i] for i in present], grad.double())
    for i, g, w in zip(present, got, want, strict=True):
        assert _rel_err(g, w) < (grad_tol or tol), f"gradient of input {i}"


shapes = st.tuples(
    st.integers(1, 2),  # batch
    st.sampled_from([(2, 1), (4, 2), (16, 1), (32, 2)]),  # (dim, groups)
    st.sampled_from([1, 5, 16]),  # d_state
    st.integers(1, 150),  # length (the CPU kernel tiles time by 64)
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(shapes)
def test_selective_scan_matches_reference(case):
    batch, (dim, groups), n, L, with_D, with_z, with_bias, softplus = case
    inputs = _selective_scan_inputs(batch, dim, n, L, groups, with_D, with_z, with_bias, softplus)
    _check_against(ops.selective_scan, selective_scan_reference, inputs, {"delta_softplus": softplus}, 2e-5)
    assert kernel_choice.last_used()["selective_scan"] == "cpu-cpp"


def test_selective_scan_long_sequence_and_3d_BC():
    """Several time tiles, 3-D (ungrouped) B/C, and 16-channel lane blocks (the vectorised path)."""
    u, delta, A, B, C, D, z, bias = _selective_scan_inputs(2, 32, 16, 301, 1, True, True, True)
    out = ops.selective_scan(u, delta, A, B[:, 0], C[:, 0], D, z, bias, True)
    expected = selective_scan_loop(
        u.double(), delta.double(), A.double(), B.double(), C.double(), D.double(), z.double(), bias.double(), True
    )
    assert _rel_err(out, expected) < 2e-5


def test_selective_scan_loop_fallback_matches_reference():
    inputs = _selective_scan_inputs(2, 4, 3, 17, 2, True, True, True)
    _check_against(selective_scan_loop, selective_scan_reference, inputs, {"delta_softplus": True}, 2e-5)


def test_selective_scan_keeps_dtype_and_rejects_bad_groups():
    u, delta, A, B, C, *_ = _selective_scan_inputs(1, 4, 4, 9, 1, False, False, False)
    assert ops.selective_scan(u.bfloat16(), delta, A, B, C).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="groups"):
        ops.selective_scan(u[:, :3].contiguous(), delta[:, :3].contiguous(), A[:3], B.expand(1, 2, 4, 9), C)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    st.integers(1, 2),
    st.sampled_from([(2, 1), (4, 2), (3, 3)]),  # (heads, groups)
    st.sampled_from([1, 4]),  # headdim
    st.sampled_from([3, 16]),  # d_state
    st.integers(1, 140),  # length (the CPU path chunks by 64 and blocks by 8 chunks)
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_ssd_scan_matches_reference(batch, heads_groups, P, N, L, with_D, with_z, with_bias):
    H, G = heads_groups
    torch.manual_seed(hash((batch, H, G, P, N, L, with_D, with_z, with_bias)) % 2**31)
    x = torch.randn(batch, L, H, P)
    dt = 0.5 * torch.randn(batch, L, H)
    A = -torch.rand(H) * 3 - 0.1
    B = torch.randn(batch, L, G, N)
    C = torch.randn(batch, L, G, N)
    D = torch.randn(H) if with_D else None
    z = torch.randn(batch, L, H, P) if with_z else None
    bias = torch.randn(H) if with_bias else None

    def fn(x, dt, A, B, C, D, z, bias, dt_softplus):
        return ops.ssd_scan(x, dt, A, B, C, 64, D, z, bias, dt_softplus)

    # dA sums a product over every step and head in float32: its error grows with L (9.5e-4 seen at L=89)
    _check_against(fn, ssd_reference, [x, dt, A, B, C, D, z, bias], {"dt_softplus": True}, 5e-4, grad_tol=2e-3)


def test_ssd_scan_long_sequence_spans_blocks():
    """More than one block of chunks (8 x 64 steps), per-head-and-channel D."""
    x, dt = torch.randn(1, 600, 2, 3), torch.randn(1, 600, 2)
    A, B, C = -torch.rand(2), torch.randn(1, 600, 1, 4), torch.randn(1, 600, 1, 4)
    D = torch.randn(2, 3)
    out = ops.ssd_scan(x, dt, A, B, C, 256, D=D, dt_softplus=True)
    expected = ssd_reference(x.double(), dt.double(), A.double(), B.double(), C.double(), D.double(), dt_softplus=True)
    assert _rel_err(out, expected) < 1e-4


@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_causal_conv1d_matches_reference(silu, with_bias):
    x, w = torch.randn(2, 6, 13), torch.randn(6, 4)
    b = torch.randn(6) if with_bias else None

    def fn(x, w, b, silu):
        return ops.causal_conv1d(x, w, b, activation="silu" if silu else None)

    _check_against(fn, causal_conv1d_reference, [x, w, b], {"silu": silu}, 1e-5)


def test_causal_conv1d_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        ops.causal_conv1d(torch.randn(1, 2, 3), torch.randn(2, 4), activation="relu")


@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_reference(masked):
    q, k, v = torch.randn(2, 3, 7, 8), torch.randn(2, 3, 11, 8), torch.randn(2, 3, 11, 8)
    mask = torch.rand(2, 11) > 0.3 if masked else None
    if mask is not None:
        mask[:, 0] = True

    def fn(q, k, v, mask):
        return ops.attention(q, k, v, mask)

    def ref(q, k, v, mask):
        return attention_reference(q, k, v, mask)

    _check_against(fn, ref, [q, k, v, mask], {}, 1e-5)


def test_ops_pass_torch_library_opcheck():
    """Fake (meta) kernels, autograd registration and schemas agree with the real kernels."""
    u, delta, A, B, C, D, z, bias = _selective_scan_inputs(1, 16, 4, 10, 1, True, True, True)
    for t in (u, delta, A, B, C, D):
        t.requires_grad_(True)
    torch.library.opcheck(torch.ops.zoo.selective_scan, (u, delta, A, B, C, D, z, bias, True))
    x = torch.randn(1, 10, 2, 3, requires_grad=True)
    torch.library.opcheck(
        torch.ops.zoo.ssd_scan,
        (
            x,
            torch.randn(1, 10, 2),
            -torch.rand(2),
            torch.randn(1, 10, 1, 4),
            torch.randn(1, 10, 1, 4),
            None,
            None,
            None,
            True,
            False,
            256,
        ),
    )
    torch.library.opcheck(
        torch.ops.zoo.causal_conv1d, (torch.randn(1, 4, 9, requires_grad=True), torch.randn(4, 3), None, True, True)
    )
    q = torch.randn(1, 2, 5, 4, requires_grad=True)
    torch.library.opcheck(torch.ops.zoo.attention, (q, torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4), None))


def test_selective_scan_op_keeps_states_only_for_a_backward_and_takes_its_default():
    """The op's residual: our CPU kernel keeps its block states when a gradient will be needed, not in
    inference; called with its scan arguments alone (``save_states`` at its default: the dispatcher then passes
    nine arguments, not ten) every row still computes the scan, the CUDA fallback row included."""
    u, delta, A, B, C, D, z, bias = _selective_scan_inputs(1, 32, 16, 70, 1, True, True, True)
    want = selective_scan_loop(u, delta, A, B, C, D, z, bias, True)
    u.requires_grad_(True)
    op = torch.ops.zoo.selective_scan
    out, states = op(u, delta, A, B, C, D, z, bias, True, True)
    assert states.shape == (1, 32, 2, 16) and torch.allclose(out, want, atol=1e-5)
    with torch.no_grad():
        assert op(u, delta, A, B, C, D, z, bias, True, True)[1].shape == (1, 32, 2, 16)
        assert ops.mamba1_scan._OP.with_residual(u, delta, A, B, C, D, z, bias, True)[1].numel() == 0
    with ops.dispatch.simulate_device("cuda"), warnings.catch_warnings():  # no mamba_ssm: the PyTorch loop row
        warnings.simplefilter("ignore", RuntimeWarning)  # its one-time "install the [cuda] extra"
        out, states = op(u, delta, A, B, C, D, z, bias, True)
        (grad,) = torch.autograd.grad(out.sum(), u)
    assert states.numel() == 0 and torch.allclose(out, want, atol=1e-5) and grad.shape == u.shape


def test_ops_run_on_meta_and_count_flops():
    with torch.device("meta"):
        u, delta = torch.empty(2, 64, 100), torch.empty(2, 64, 100)
        A, B, C = torch.empty(64, 16), torch.empty(2, 16, 100), torch.empty(2, 16, 100)
        q = torch.empty(2, 4, 100, 32)
        with FlopCounterMode(display=False) as counter:
            y = ops.selective_scan(u, delta, A, B, C)
            a = ops.attention(q, q, q)
    assert y.device.type == "meta" and y.shape == u.shape and a.shape == q.shape
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    assert counts["zoo.selective_scan"] == 9 * 2 * 64 * 100 * 16
    assert counts["zoo.attention"] == 4 * 2 * 4 * 100 * 100 * 32


def test_ssd_chunk_size_reaches_the_cuda_call_and_the_count():
    """``Mamba2(chunk_size=)`` is mamba_ssm's chunk length on CUDA and the counted algorithm's T everywhere."""
    seen = []

    def spy(x, dt, A, B, C, chunk_size, **kwargs):
        seen.append(chunk_size)
        return x

    ssd_module = sys.modules["zoo.ops.ssd"]
    x = torch.randn(1, 8, 2, 4)
    ssd_module._cuda_ssd(
        x,
        torch.rand(1, 8, 2),
        -torch.rand(2),
        torch.randn(1, 8, 1, 4),
        torch.randn(1, 8, 1, 4),
        None,
        None,
        None,
        True,
        chunk_size=64,
        fn=spy,
    )
    assert seen == [64]
    from zoo.layers.mamba import Mamba2

    def count(chunk: int) -> int:
        with torch.device("meta"), FlopCounterMode(display=False) as counter:
            Mamba2(64, d_state=16, headdim=16, chunk_size=chunk)(torch.empty(1, 512, 64))
        return counter.get_total_flops()

    assert count(64) < count(256)  # fewer intra-chunk MACs with shorter chunks

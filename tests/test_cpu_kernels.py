"""The C++ CPU fast path (csrc/): token-major views read without copies, every kernel against the slow
reference (values and gradients), the earlier code path (``reference_kernels``) and the fast one agree,
and T2MD's shared projections compute the same function as per-direction Mamba-2 layers."""

from __future__ import annotations

import sys

import pytest
import torch
from references import causal_conv1d_reference, selective_scan_reference, ssd_reference

from zoo import ops
from zoo.layers.mamba import Mamba, Mamba2
from zoo.models.t2md import BidirectionalMamba2
from zoo.ops import _extension, kernel_choice, mamba1_scan
from zoo.ops.mamba1_scan import selective_scan_loop

ssd_module = sys.modules["zoo.ops.ssd"]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12)).item()


def test_kernels_build_into_a_cache_keyed_by_torch_and_cpu():
    assert _extension.load_cpu_kernels() is not None
    folder = _extension.cache_dir().name
    assert torch.__version__.split("+")[0] in folder and "cpu" + _extension.cpu_signature() in folder
    assert folder.endswith("src" + _extension.source_signature())  # another checkout builds its own copy
    assert len(_extension.cpu_signature()) == 10


def _exp2_error() -> float:
    """Largest relative error of the kernels' vector 2^x (simd_math.h) over [-125, 1], against float64."""
    x = torch.linspace(-125.0, 1.0, 1_000_003)
    exact = torch.exp2(x.double())
    return ((_extension.load_cpu_kernels().vector_math(x, "exp2").double() / exact - 1).abs().max()).item()


def test_vector_exp2_is_as_accurate_as_cudas():
    """Every scan's exp: within 2e-7 relative (CUDA's ex2.approx, what mamba_ssm uses, is within ~1.7e-7),
    exact at integers, and no larger than 2^-125 far below the normal range (where a clamp may stop it)."""
    assert _exp2_error() < 2e-7
    ext = _extension.load_cpu_kernels()
    special = ext.vector_math(torch.tensor([0.0, 1.0, -1.0, 5.0, -3.0, -200.0, -1e6]), "exp2")
    assert special[:5].tolist() == [1.0, 2.0, 0.5, 32.0, 0.125]
    assert (special[5:] <= 2.0**-125).all()


def _softplus_sigmoid_errors() -> dict[str, float]:
    """Largest relative errors of the kernels' vector softplus, sigmoid and softplus's slope (simd_math.h)
    against float64, over the ranges a scan's dt and gate take."""
    ext = _extension.load_cpu_kernels()
    x = torch.linspace(-30.0, 30.0, 600_001)
    exact = {
        "softplus": torch.where(x > 20, x.double(), torch.nn.functional.softplus(x.double())),
        "sigmoid": torch.sigmoid(x.double()),
        "softplus_slope": torch.where(x > 20, torch.ones_like(x.double()), torch.sigmoid(x.double())),
    }
    return {name: ((ext.vector_math(x, name).double() / want - 1).abs().max()).item() for name, want in exact.items()}


def test_vector_softplus_and_sigmoid_are_float32_accurate():
    """dt = softplus(delta + bias) and the silu gate of every Mamba-1 scan: within 8e-7 relative from dt ~ 1e-13
    to 30 (the exp's argument x log2(e) rounds to float32: up to 6e-7 at |x| = 30, 2e-7 for |x| < 5; a
    division and the atanh series to s^14 measured the same); an unknown function name is refused."""
    errors = _softplus_sigmoid_errors()
    assert max(errors.values()) < 8e-7, errors
    with pytest.raises(RuntimeError, match="unknown function"):
        _extension.load_cpu_kernels().vector_math(torch.zeros(3), "tanh")


@pytest.mark.parametrize("L", [1, 63, 64, 65, 200])
@pytest.mark.parametrize("groups", [1, 2])
def test_ssd_kernel_reads_token_major_slices(L, groups):
    """x, B, C, dt as slices of one projection (as Mamba-2 lays them out): the C++ kernel, no copies."""
    torch.manual_seed(L * 10 + groups)
    H, P, N = 4, 8, 16
    proj = torch.randn(2, L, H * P + 2 * groups * N + H + 5)
    x = proj[..., : H * P].unflatten(-1, (H, P))
    B = proj[..., H * P : H * P + groups * N].unflatten(-1, (groups, N))
    C = proj[..., H * P + groups * N : H * P + 2 * groups * N].unflatten(-1, (groups, N))
    dt = proj[..., H * P + 2 * groups * N : H * P + 2 * groups * N + H]
    A, D, bias = -torch.rand(H) * 4 - 0.2, torch.randn(H, P), 0.3 * torch.randn(H)
    z = torch.randn(2, L, H, P)
    out = ops.ssd_scan(x, dt, A, B, C, 64, D=D, z=z, dt_bias=bias, dt_softplus=True)
    assert kernel_choice.last_used()["ssd_scan"] == "cpu-cpp"
    expected = ssd_reference(*(t.double() for t in (x, dt, A, B, C, D, z, bias)), dt_softplus=True)
    assert _rel_err(out, expected) < 1e-5
    # the same numbers through the differentiable PyTorch path (the backward's recomputation)
    chunked = ssd_module.ssd_scan_chunked(x, dt, A, B, C, D, z, bias, True)
    assert _rel_err(out, chunked) < 1e-5


def test_ssd_kernel_gradients_through_the_op():
    torch.manual_seed(0)
    x, dt = torch.randn(1, 90, 2, 4, requires_grad=True), torch.randn(1, 90, 2, requires_grad=True)
    A = (-torch.rand(2) - 0.5).requires_grad_(True)
    B, C = torch.randn(1, 90, 1, 8, requires_grad=True), torch.randn(1, 90, 1, 8, requires_grad=True)
    out = ops.ssd_scan(x, dt, A, B, C, 64, D=None, dt_softplus=True)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, dt, A, B, C], grad)
    leaves = [t.detach().double().requires_grad_(True) for t in (x, dt, A, B, C)]
    want = torch.autograd.grad(ssd_reference(*leaves, dt_softplus=True), leaves, grad.double())
    for g, w in zip(got, want, strict=True):
        assert _rel_err(g, w) < 1e-5


@pytest.mark.parametrize("layout", ["token-major", "channel-major"])
@pytest.mark.parametrize("width, L", [(4, 300), (4, 2), (2, 257), (3, 1), (5, 40)])  # 5: the any-width path
@pytest.mark.parametrize("silu, with_bias", [(True, True), (False, False)])
def test_conv_kernel_matches_reference(layout, width, L, silu, with_bias):
    """Fused conv + SiLU, forward and backward, on a strided token-major view and on a (b, dim, L) tensor;
    lengths across the 256-token blocks of the backward and shorter than the kernel."""
    torch.manual_seed(width * 1000 + L)
    dim = 70
    if layout == "token-major":  # a slice of a wider projection, transposed: stride(1) == 1
        x = torch.randn(2, L, dim + 6)[..., 3 : 3 + dim].transpose(1, 2)
    else:
        x = torch.randn(2, dim, L)
    x.requires_grad_(True)
    w = torch.randn(dim, width, requires_grad=True)
    b = torch.randn(dim, requires_grad=True) if with_bias else None
    out = ops.causal_conv1d(x, w, b, activation="silu" if silu else None)
    assert kernel_choice.last_used()["causal_conv1d"] == "cpu-cpp"
    assert out.stride(1) == (1 if layout == "token-major" else L) or L == 1
    leaves = [x, w] + ([b] if with_bias else [])
    refs = [t.detach().double().requires_grad_(True) for t in leaves]
    expected = causal_conv1d_reference(refs[0], refs[1], refs[2] if with_bias else None, silu)
    assert _rel_err(out, expected) < 1e-5
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, leaves, grad)
    for g, r in zip(got, torch.autograd.grad(expected, refs, grad.double()), strict=True):
        assert _rel_err(g, r) < 1e-5
    # dx in x's layout: for a Mamba layer's token-major view no transposing copy (nor a strided cat after it)
    assert got[0].stride(1) == 1 or L == 1 if layout == "token-major" else got[0].is_contiguous()


@pytest.mark.parametrize("L", [1, 15, 16, 17, 130])
def test_mamba1_kernel_token_major_and_portable_agree(L):
    """The AVX-512 kernel on token-major views (time tiles of 16), the portable lane kernel and the
    channel-major path all equal the step-by-step reference; the output keeps u's layout."""
    torch.manual_seed(L)
    dim, n = 48, 16
    xz = torch.randn(2, L, 2 * dim)
    u, z = xz[..., :dim].transpose(1, 2), xz[..., dim:].transpose(1, 2)  # token-major views
    delta = (0.5 * torch.randn(2, L, dim) - 2).transpose(1, 2)
    A, D, bias = -torch.rand(dim, n) * 3, torch.randn(dim), 0.1 * torch.randn(dim)
    B, C = torch.randn(2, n, L), torch.randn(2, n, L)
    expected = selective_scan_reference(
        *(t.double() for t in (u, delta, A, B[:, None], C[:, None], D, z, bias)), delta_softplus=True
    )
    fast = ops.selective_scan(u, delta, A, B, C, D, z, bias, True)
    assert fast.stride(1) == 1 or L == 1
    channel_major = ops.selective_scan(u.contiguous(), delta.contiguous(), A, B, C, D, z.contiguous(), bias, True)
    with kernel_choice.reference_kernels():
        portable = ops.selective_scan(u, delta, A, B, C, D, z, bias, True)
    for out in (fast, channel_major, portable):
        assert _rel_err(out, expected) < 2e-5


@pytest.mark.parametrize(
    "dim, groups, L, gated",
    [(32, 1, 1, True), (32, 2, 77, True), (16, 1, 600, False), (48, 1, 1030, True), (32, 1, 2100, True)],
)
def test_mamba1_vector_backward_matches_the_loop(dim, groups, L, gated):
    """The lane-blocked backward (d_state 16, channels in SIMD lanes): every gradient equals autograd through
    the float64 step loop, with and without the gate, D and the bias; dB and dC summed over a group's channels.
    Three paths: the op's (one group: the forward keeps the state entering every 64 steps and the backward runs
    blocks of 64 outermost from them, a partial last block included), and the kernel called without kept
    states: item by item (sequences of one, two and three recompute blocks of 512 steps; two groups) and, from
    L 2048, the block order after its own states pass."""
    torch.manual_seed(dim + L)
    batch, n = 2, 16
    u = torch.randn(batch, L, dim).transpose(1, 2)  # token-major view, as the models pass it
    delta = (0.5 * torch.randn(batch, dim, L) - 1.5).requires_grad_(True)
    A = (-torch.rand(dim, n) * 2 - 0.1).requires_grad_(True)
    B, C = torch.randn(batch, groups, n, L), torch.randn(batch, groups, n, L)
    D = torch.randn(dim) if gated else None
    z = torch.randn(batch, dim, L) if gated else None
    bias = 0.2 * torch.randn(dim) if gated else None
    inputs = [u.requires_grad_(True), delta, A, B.requires_grad_(True), C.requires_grad_(True), D, z, bias]
    leaves = [t for t in inputs if t is not None]
    for t in leaves:
        t.requires_grad_(True)
    out = ops.selective_scan(*inputs, delta_softplus=True)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, leaves, grad)
    ref_inputs = [None if t is None else t.detach().double().requires_grad_(True) for t in inputs]
    ref_leaves = [t for t in ref_inputs if t is not None]
    want = torch.autograd.grad(selective_scan_loop(*ref_inputs, True), ref_leaves, grad.double())
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert _rel_err(g, w) < 5e-5, f"gradient {i}"
    _, states = mamba1_scan.scan_keeping_states(*inputs, True)
    assert states.numel() == (batch * dim * -(-L // 64) * 16 if groups == 1 else 0)
    unkept = mamba1_scan._cpp_scan_backward(
        grad, *[t.detach() if t is not None else None for t in inputs], True, states.new_empty(0)
    )
    unkept = [g for g, t in zip(unkept, inputs, strict=True) if t is not None]
    for i, (g, w) in enumerate(zip(unkept, want, strict=True)):
        assert _rel_err(g, w) < 5e-5, f"gradient {i} without kept states"


_ISA_SCRIPT = """
import sys, torch
from zoo import ops
from zoo.ops import _extension
torch.manual_seed(0)
u = torch.randn(2, 150, 64).transpose(1, 2).requires_grad_(True)
delta = (0.5 * torch.randn(2, 64, 150) - 1.5).requires_grad_(True)
A = (-torch.rand(64, 16) * 2 - 0.1).requires_grad_(True)
B, C = torch.randn(2, 1, 16, 150, requires_grad=True), torch.randn(2, 1, 16, 150, requires_grad=True)
D, z, bias = torch.randn(64), torch.randn(2, 64, 150), 0.2 * torch.randn(64)
out = ops.selective_scan(u, delta, A, B, C, D, z, bias, True)
grads = torch.autograd.grad(out, [u, delta, A, B, C], torch.ones_like(out))
x = torch.linspace(-125.0, 1.0, 1_000_003)
exp2 = _extension.load_cpu_kernels().vector_math(x, "exp2").double()
exp2_err = (exp2 / torch.exp2(x.double()) - 1).abs().max().item()
x = torch.linspace(-30.0, 30.0, 600_001)
sp = _extension.load_cpu_kernels().vector_math(x, "softplus").double()
sp_err = (sp / torch.where(x > 20, x.double(), torch.nn.functional.softplus(x.double())) - 1).abs().max().item()
saved = {"isa": _extension.vector_isa(), "out": out.detach(), "grads": grads, "exp2": exp2_err, "softplus": sp_err}
torch.save(saved, sys.argv[1])
"""


@pytest.mark.skipif(_extension.vector_isa() != "avx512", reason="the native build is already the AVX2/generic path")
def test_avx2_build_gives_the_avx512_results(tmp_path):
    """The AVX2 path (built with -march=x86-64-v3 into its own cache folder, as an AVX2-only CPU would build
    it) computes the same scan forward and gradients as this machine's AVX-512 build."""
    import os
    import subprocess

    results = {}
    for arch in ("native", "x86-64-v3"):
        env = {**os.environ, "MAMBABENCH_CPU_ARCH": arch, "OMP_NUM_THREADS": "1"}
        path = tmp_path / f"{arch}.pt"
        subprocess.run([sys.executable, "-c", _ISA_SCRIPT, str(path)], env=env, check=True, timeout=600)
        results[arch] = torch.load(path)
    assert results["native"]["isa"] == "avx512" and results["x86-64-v3"]["isa"] == "avx2"
    assert results["x86-64-v3"]["exp2"] < 2e-7  # the AVX2 exp2 (its own table and polynomial)
    # and its softplus (a division where AVX-512 has vrcp14ps); x log2(e) is rounded to float32 before the
    # AVX2 exp2's clamp, where the AVX-512 build fuses it: up to 1.7e-6 at |x| = 30 (dt ~ 1e-13), 2e-7 below 5
    assert results["x86-64-v3"]["softplus"] < 2e-6
    assert _rel_err(results["x86-64-v3"]["out"], results["native"]["out"]) < 1e-5
    for g2, g512 in zip(results["x86-64-v3"]["grads"], results["native"]["grads"], strict=True):
        assert _rel_err(g2, g512) < 1e-5


def test_bidirectional_mamba2_shared_projections_is_the_same_function():
    """Projecting once for both directions == running the Mamba-2 layer per direction: outputs and every
    parameter gradient; and the fast kernels == the earlier PyTorch path."""
    torch.manual_seed(0)
    block = BidirectionalMamba2(32, "col", True, d_state=16, headdim=8)
    x = torch.randn(2, 7 * 9, 32)

    def run(shared: bool, reference: bool = False):
        block.shared_projections = shared
        block.zero_grad()
        ctx = kernel_choice.reference_kernels() if reference else torch.enable_grad()
        with ctx:
            out = block(x, 7, 9)
            out.square().sum().backward()
        return out.detach(), {k: p.grad.clone() for k, p in block.named_parameters()}

    shared, grads_shared = run(True)
    per_direction, grads_per_direction = run(False)
    reference, _ = run(True, reference=True)
    assert _rel_err(shared, per_direction) < 1e-5 and _rel_err(shared, reference) < 1e-5
    for name, g in grads_shared.items():
        assert _rel_err(g, grads_per_direction[name]) < 1e-4, name


@pytest.mark.parametrize(
    "kwargs", [dict(), dict(bimamba=True, divide_out=True), dict(bimamba=True, share_dt_proj=True)]
)
def test_mamba_layers_fast_path_equals_reference_path(kwargs):
    torch.manual_seed(1)
    layer = Mamba(32, **kwargs)
    x = torch.randn(2, 40, 32)
    fast = layer(x)
    with kernel_choice.reference_kernels():
        reference = layer(x)
    assert _rel_err(fast, reference) < 1e-5
    mamba2 = Mamba2(32, d_state=16, headdim=8)
    fast2 = mamba2(x)
    with kernel_choice.reference_kernels():
        assert _rel_err(fast2, mamba2(x)) < 1e-5


@pytest.mark.parametrize("group", [24, 8])
def test_gated_rmsnorm_kernel_matches_reference(group):
    """Fused forward on a strided z (a slice of the projection, as Mamba-2 passes it); gradients through
    the op equal the PyTorch expression's."""
    norm_module = sys.modules["zoo.ops.norm"]
    torch.manual_seed(group)
    proj = torch.randn(2, 37, 24 + 24 + 5)
    x = torch.randn(2, 37, 24, requires_grad=True)
    z = proj[..., 5:29].detach().requires_grad_(True)
    w = torch.randn(24, requires_grad=True)
    out = ops.gated_rmsnorm(x, z, w, 1e-5, group)
    assert kernel_choice.last_used()["gated_rmsnorm"] == "cpu-cpp"
    expected = norm_module.gated_rmsnorm_torch(x.double(), z.double(), w.double(), 1e-5, group)
    assert _rel_err(out, expected) < 1e-5
    grad = torch.randn_like(out)
    for g, r in zip(
        torch.autograd.grad(out, [x, z, w], grad), torch.autograd.grad(expected, [x, z, w], grad.double()), strict=True
    ):
        assert _rel_err(g, r) < 1e-5
    with pytest.raises(ValueError, match="do not fit"):
        ops.gated_rmsnorm(x, z, w, 1e-5, 7)


def test_reverse_scans_equal_flipped_scans():
    """reverse=True == flip -> op -> flip, for the C++ kernels and the flipping backends, with gradients."""
    torch.manual_seed(3)
    x = torch.randn(2, 150, 3, 4).requires_grad_(True)
    dt, A = torch.randn(2, 150, 3), -torch.rand(3) - 0.3
    B, C, D = torch.randn(2, 150, 1, 8), torch.randn(2, 150, 1, 8), torch.randn(3)
    args = dict(D=D, dt_bias=0.1 * torch.ones(3), dt_softplus=True)
    flipped = ops.ssd_scan(x.flip(1), dt.flip(1), A, B.flip(1), C.flip(1), 64, **args).flip(1)
    for context in (torch.enable_grad(), kernel_choice.reference_kernels()):
        with context:
            rev = ops.ssd_scan(x, dt, A, B, C, 64, reverse=True, **args)
        assert _rel_err(rev, flipped) < 1e-5
        grad = torch.randn_like(rev)
        g1, g2 = (torch.autograd.grad(o, x, grad, retain_graph=True)[0] for o in (rev, flipped))
        assert _rel_err(g1, g2) < 1e-5
    xc = torch.randn(2, 300, 40)[..., :33].transpose(1, 2).requires_grad_(True)
    w, b = torch.randn(33, 4).requires_grad_(True), torch.randn(33).requires_grad_(True)
    flipped = ops.causal_conv1d(xc.flip(-1), w, b, "silu").flip(-1)
    for context in (torch.enable_grad(), kernel_choice.reference_kernels()):
        with context:
            rev = ops.causal_conv1d(xc, w, b, "silu", reverse=True)
        assert _rel_err(rev, flipped) < 1e-6
        grad = torch.randn_like(rev)
        for leaf in (xc, w, b):  # the C++ backward walks the sequence from its end, no flipped copies
            g1, g2 = (torch.autograd.grad(o, leaf, grad, retain_graph=True)[0] for o in (rev, flipped))
            assert _rel_err(g1, g2) < 1e-6


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("L, groups", [(150, 1), (5, 2)])
def test_fused_conv_scan_norm_equals_the_composed_ops(reverse, L, groups):
    """The fused CPU kernel == conv -> SSD -> gated norm composed (values and every gradient), on a strided
    zxbcdt; the FLOP count equals the unfused ops' sum."""
    fused_module = sys.modules["zoo.ops.mamba2_fused"]
    torch.manual_seed(L + groups)
    H, P, N, W = 4, 8, 16, 4
    d_inner, conv_dim = H * P, H * P + 2 * groups * N
    zxbcdt = torch.randn(2, L, d_inner + conv_dim + H + 3)[..., : d_inner + conv_dim + H].requires_grad_(True)
    params = [
        torch.randn(conv_dim, W) * 0.5,
        torch.randn(conv_dim),
        torch.randn(H) * 0.3,
        -torch.rand(H) - 0.3,
        torch.randn(H),
        torch.rand(d_inner) + 0.5,
    ]
    params = [p.requires_grad_(True) for p in params]
    cw, cb, dtb, A, D, nw = params

    def run(fn):
        return fn(zxbcdt, cw, cb, dtb, A, D, P, groups, nw, 1e-5, d_inner // groups, reverse)

    fused = run(ops.conv_scan_norm)
    assert kernel_choice.last_used()["conv_scan_norm"] == "cpu-cpp"
    composed = run(fused_module.conv_scan_norm_reference)
    assert _rel_err(fused, composed) < 1e-5
    grad = torch.randn_like(fused)
    leaves = [zxbcdt, *params]
    for g, r in zip(torch.autograd.grad(fused, leaves, grad), torch.autograd.grad(composed, leaves, grad), strict=True):
        assert _rel_err(g, r) < 1e-5
    from torch.utils.flop_counter import FlopCounterMode

    counts = []
    for fn in (ops.conv_scan_norm, fused_module.conv_scan_norm_reference):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            run(fn)
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0

"""Scan-kernel benchmark: a plain PyTorch step loop, the earlier kernels and our CPU kernels, measured side by
side in one run.

Mamba-1 (selective scan; d_inner 2048, d_state 16) and Mamba-2 (SSD; 36 heads x 64, d_state 256, one
group) at L = 1k, 4k, 16k, 32400 (batch 1), plus the Mamba-1 training shape (batch 64, L 366, d_inner
1024). Inputs are laid out as the models produce them: token-major (``u``, ``delta``, ``z`` are transposed
views of (batch, L, d_inner) activations). Reports the median seconds and state updates per second per core
(L * channels * d_state / time / threads), forward and forward+backward; "before" is the earlier code path
(``zoo.ops.kernel_choice.reference_kernels``: the portable Mamba-1 kernel on channel-major copies, the PyTorch
SSD). Loops with autograd keep every step's state, so they are only run where that fits in memory
(``--loop-bwd-max``); the table says "skipped" elsewhere.

Every rate is also given per fp32 GEMM MAC of this machine, measured in the same run (``bench.timer.gemm_rate``:
a transformer-sized projection on the same thread count), and the issue #29 targets are checked against those
ratios, so the verdicts hold on any CPU: Mamba-1 forward >= 0.08 updates per GEMM MAC with AVX-512 and >= 0.05
with AVX2; forward+backward >= 0.4x the forward rate (Mamba-1 and Mamba-2). Beside the last, the same ratio of a
plain fp32 projection (``F.linear``, forward against forward + backward for input and weight) measured in the same
run: the backward of a product is two products, so an exact gradient's forward+backward runs at ~1/3 of its
forward rate, and the scans' ratio is also given as a share of the projection's.

    python scripts/bench_kernels.py                 # full table, one thread
    python scripts/bench_kernels.py --quick         # L = 1k and 4k only
    MAMBABENCH_CPU_ARCH=x86-64-v3 python scripts/bench_kernels.py --quick   # the AVX2 build on an AVX-512 CPU
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from bench.timer import gemm_rate, time_unit
from zoo import ops
from zoo.ops._extension import vector_isa
from zoo.ops.kernel_choice import reference_kernels


def median_seconds(fn: Callable[[], object], min_time: float = 1.0, min_runs: int = 3, max_runs: int = 20) -> float:
    """Median wall time of ``fn`` after one warm-up call, repeated until ``min_time`` and ``min_runs`` (bench's
    timer, with its malloc settings)."""
    return statistics.median(time_unit(fn, torch.device("cpu"), min_time, min_runs, max_runs))


def mamba1_loop(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """Mamba-1 recurrence one step at a time, time-major, one group: the plain PyTorch anchor."""
    dt = delta + delta_bias[:, None]
    dt = F.softplus(dt) if delta_softplus else dt
    dt_t = dt.permute(2, 0, 1)[..., None]  # (L, b, d, 1)
    du_t = (dt * u).permute(2, 0, 1)[..., None]
    B_t, C_t = B[:, 0].permute(2, 0, 1)[:, :, None], C[:, 0].permute(2, 0, 1)[:, :, None]  # (L, b, 1, n)
    state = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        state = torch.exp(dt_t[t] * A) * state + du_t[t] * B_t[t]
        ys.append((state * C_t[t]).sum(-1))
    return (torch.stack(ys, dim=-1) + D[:, None] * u) * F.silu(z)


def ssd_loop(x, dt, A, B, C):
    """Mamba-2 recurrence one step at a time (dt already effective, one group)."""
    b, length, h, p = x.shape
    state = x.new_zeros(b, h, p, B.shape[-1])
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        state = decay * state + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, 0, None, None, :]
        ys.append((state * C[:, t, 0, None, None, :]).sum(-1))
    return torch.stack(ys, dim=1)


def mamba1_inputs(batch: int, length: int, dim: int, n: int = 16, grad: bool = False) -> list[torch.Tensor]:
    """u, delta, A, B, C, D, z, delta_bias of a realistic Mamba-1 layer (softplus applied in the op)."""

    def token_major(t: torch.Tensor) -> torch.Tensor:  # (b, d, L) view of (b, L, d) memory, as in the models
        return t.transpose(1, 2).contiguous().transpose(1, 2)

    tensors = [
        token_major(torch.randn(batch, dim, length)),
        token_major(0.5 * torch.randn(batch, dim, length) - 4.0),
        -torch.arange(1, n + 1, dtype=torch.float32).repeat(dim, 1),
        torch.randn(batch, 1, n, length),
        torch.randn(batch, 1, n, length),
        torch.ones(dim),
        token_major(torch.randn(batch, dim, length)),
        torch.zeros(dim),
    ]
    return [t.requires_grad_(grad) for t in tensors]


def mamba2_inputs(length: int, heads: int = 36, headdim: int = 64, n: int = 256, grad: bool = False):
    """x, dt (effective), A, B, C of a T2MD-sized Mamba-2 layer."""
    tensors = [
        torch.randn(1, length, heads, headdim),
        F.softplus(0.5 * torch.randn(1, length, heads) - 4.0),
        -torch.rand(heads) * 15 - 1,
        torch.randn(1, length, 1, n) / n**0.5,
        torch.randn(1, length, 1, n) / n**0.5,
    ]
    return [t.requires_grad_(grad) for t in tensors]


def forward_backward(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], *extra) -> Callable[[], None]:
    """One forward and backward, the output's gradient a dense random tensor in the output's layout, as a
    training step's next layer hands it back (``.sum().backward()`` would hand the kernel a stride-0 view)."""
    upstream: list[torch.Tensor] = []

    def run() -> None:
        for t in inputs:
            t.grad = None
        out = fn(*inputs, *extra)
        if not upstream:
            upstream.append(torch.randn_like(out))
        out.backward(upstream[0])

    return run


def before(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` run on the earlier code path (reference kernels)."""

    def run() -> object:
        with reference_kernels():
            return fn()

    return run


def measure(kernel: str, shape: str, updates: float, ours, loop, threads: int, slow_loop: bool = False) -> dict:
    """Time ``ours``, ``ours`` on the earlier path, and (unless None) ``loop`` side by side; rates are state
    updates per second per core."""
    ours_s = median_seconds(ours, min_runs=1 if slow_loop else 3)
    before_s = median_seconds(before(ours), min_runs=1 if slow_loop else 3)
    loop_s = median_seconds(loop, min_runs=1, min_time=0) if loop else None
    return {
        "kernel": kernel,
        "shape": shape,
        "loop_s": loop_s,
        "before_s": before_s,
        "ours_s": ours_s,
        "loop_rate": updates / loop_s / threads if loop_s else None,
        "before_rate": updates / before_s / threads,
        "ours_rate": updates / ours_s / threads,
        "speedup": before_s / ours_s,
    }


def projection_training_ratio(tokens: int = 4096, width: int = 1152, out: int = 4 * 1152) -> float:
    """Forward rate of forward + backward over the forward rate of a transformer-sized fp32 projection (the one
    ``gemm_rate`` times), medians in this run: the reference for the scans' forward+backward ratio. The backward
    computes the input's and the weight's gradients, two GEMMs of the forward's size."""
    x, weight = torch.randn(tokens, width), torch.randn(out, width) / width**0.5
    with torch.no_grad():
        forward_s = median_seconds(partial(F.linear, x, weight))
    x.requires_grad_(True)
    weight.requires_grad_(True)
    return forward_s / median_seconds(forward_backward(F.linear, [x, weight]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="only L = 1024 and 4096")
    parser.add_argument("--loop-bwd-max", type=int, default=1024, help="longest L for autograd through a loop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lengths = [1024, 4096] if args.quick else [1024, 4096, 16384, 32400]
    rows = []

    for length in lengths:  # Mamba-1, d_inner 2048, N 16
        shape, updates = f"b1 L{length} d2048 n16", length * 2048 * 16
        inputs = mamba1_inputs(1, length, 2048)
        ours = partial(ops.selective_scan, *inputs, True)
        loop = partial(mamba1_loop, *inputs, True)
        rows.append(measure("mamba1 fwd", shape, updates, ours, loop, args.threads))
        inputs = mamba1_inputs(1, length, 2048, grad=True)
        ours = forward_backward(ops.selective_scan, inputs, True)
        loop = forward_backward(mamba1_loop, inputs, True) if length <= args.loop_bwd_max else None
        rows.append(measure("mamba1 fwd+bwd", shape, updates, ours, loop, args.threads))

    inputs = mamba1_inputs(64, 366, 1024, grad=True)  # DiM-style training shape
    ours = forward_backward(ops.selective_scan, inputs, True)
    loop = forward_backward(mamba1_loop, inputs, True)
    rows.append(measure("mamba1 fwd+bwd", "b64 L366 d1024 n16", 64 * 366 * 1024 * 16, ours, loop, args.threads))

    for length in lengths:  # Mamba-2, 36 heads x 64, N 256, one group
        shape, updates = f"b1 L{length} h36x64 n256", length * 36 * 64 * 256
        inputs = mamba2_inputs(length)
        rows.append(
            measure(
                "mamba2 fwd",
                shape,
                updates,
                partial(ops.ssd_scan, *inputs, 256),
                partial(ssd_loop, *inputs),
                args.threads,
            )
        )
        inputs = mamba2_inputs(length, grad=True)
        ours = forward_backward(ops.ssd_scan, inputs, 256)
        # the loop keeps 2.4 MB of state per step for autograd: only short sequences fit
        loop = forward_backward(ssd_loop, inputs) if length <= min(args.loop_bwd_max, 1024) else None
        rows.append(measure("mamba2 fwd+bwd", shape, updates, ours, loop, args.threads, slow_loop=True))

    def fmt(value: float | None, spec: str) -> str:
        return "skipped" if value is None else format(value, spec)

    gemm = gemm_rate() * 1e9 / args.threads  # MAC/s per core, measured after the kernels, same threads
    projection = projection_training_ratio()
    isa = vector_isa()
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), vector path {isa}, "
        f"fp32 GEMM {gemm / 1e9:.1f} GMAC/s/core, backends {ops.kernel_choice.last_used()}"
    )
    print(
        "| kernel | shape | loop s | before s | ours s | loop upd/s/core | before upd/s/core | ours upd/s/core "
        "| ours upd/GEMM MAC | ours vs before |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [r["kernel"], r["shape"], fmt(r["loop_s"], ".3f"), fmt(r["before_s"], ".3f"), fmt(r["ours_s"], ".3f")]
        cells += [fmt(r["loop_rate"], ".2e"), fmt(r["before_rate"], ".2e"), fmt(r["ours_rate"], ".2e")]
        cells += [format(r["ours_rate"] / gemm, ".3f"), fmt(r["speedup"], ".2f") + "x"]
        print("| " + " | ".join(cells) + " |")
    print()
    print(targets(rows, gemm, isa, projection))


def targets(rows: list[dict], gemm: float, isa: str, projection: float) -> str:
    """The issue #29 targets as a table: measured ratio, target, met or not (same shape, same run); each
    forward+backward ratio also as a share of the fp32 projection's (``projection``, measured in the run)."""
    forward = {(r["kernel"].split()[0], r["shape"]): r["ours_rate"] for r in rows if r["kernel"].endswith("fwd")}
    need = 0.08 if isa == "avx512" else 0.05
    lines = [
        f"fp32 projection (4096 x 1152 -> 4608) fwd+bwd / fwd rate in this run: {projection:.2f}x",
        "",
        "| target | shape | measured | target | met | share of the projection's ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        family, metric = r["kernel"].split()
        if metric == "fwd" and family == "mamba1":
            ratio = r["ours_rate"] / gemm
            label = f"mamba1 fwd upd per GEMM MAC ({isa})"
            lines.append(f"| {label} | {r['shape']} | {ratio:.3f} | >= {need} | {ratio >= need} | |")
        elif metric == "fwd+bwd" and (family, r["shape"]) in forward:
            ratio = r["ours_rate"] / forward[(family, r["shape"])]
            share = f"{ratio / projection:.0%}"
            lines.append(
                f"| {family} fwd+bwd / fwd rate | {r['shape']} | {ratio:.2f}x | >= 0.4x | {ratio >= 0.4} | {share} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

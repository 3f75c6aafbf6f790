"""Wall-clock latency of a registry entry: warm-up, device synchronisation, repeats until a minimum time
and count, then median, inter-quartile range and minimum, and throughput in samples per second.

The unit is one forward pass, or with ``steps`` a whole sampling loop of that many denoiser evaluations
(T2MD's Table 3 unit), doubled in batch with ``cfg``. The loop's own arithmetic is a one-line Euler update
(negligible next to a forward); the samplers proper live in ``ablations``. Weights are random: latency does
not depend on their values.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from bench.flops import count_flops
from bench.inputs import Resolution, case_resolution, example_inputs
from bench.timer import gemm_rate, synchronise, time_unit
from mambabench.errors import UserError
from zoo.ops import kernel_choice
from zoo.registry import get_entry

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LatencyResult:
    model: str
    resolution: str
    device: str
    dtype: str
    batch: int
    unit: str  # "forward" or "N-step sampling (CFG)"
    threads: int
    runs: int
    median_s: float
    iqr_s: float
    min_s: float
    samples_per_s: float
    backends: dict[str, str] = field(default_factory=dict)
    torch_version: str = torch.__version__

    def as_dict(self) -> dict:
        return asdict(self)


def _random_like(t: torch.Tensor | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
    if t is None:
        return None
    if t.dtype == torch.long:
        return torch.zeros(t.shape, dtype=torch.long, device=device)
    return torch.randn(t.shape, device=device, dtype=dtype)


def estimate_seconds(name: str, res: Resolution, batch: int = 1, cfg: bool = False) -> tuple[float, float, float]:
    """(counted MACs of one forward, this CPU's fp32 GEMM peak in GMAC/s measured now, seconds a forward
    would take at that peak: a lower bound, the real run is slower by the model's inefficiency)."""

    macs = count_flops(name, res, 2 * batch if cfg else batch).macs
    gemm = gemm_rate()
    return macs, gemm, macs / (gemm * 1e9)


def _warm_up_small(model: torch.nn.Module, entry, dev: torch.device, dtype: torch.dtype, batch: int) -> None:
    """One forward at the entry's own (small) input size: builds kernels and warms the allocator before a
    single timed run of a forward too long to repeat."""
    small = Resolution(entry.inputs.image_size, entry.inputs.image_size, min(entry.inputs.frames, 2))
    x, t, y = (_random_like(v, dev, dtype) for v in example_inputs(entry, small, model.patch_size, batch))
    with torch.inference_mode():
        model(x, torch.full_like(t, 500.0), y)


def _block_progress(model: torch.nn.Module, repeats: int, on_block: Callable[[int, int], None] | None) -> list:
    """Forward hooks calling ``on_block(done, total)`` after each of the model's ``blocks`` (``repeats``
    forwards a unit); the caller removes them."""
    blocks = list(getattr(model, "blocks", []))
    if on_block is None or not blocks:
        return []
    done = [0]

    def advance(module, args, out):
        done[0] += 1
        on_block(done[0], len(blocks) * repeats)

    return [b.register_forward_hook(advance) for b in blocks]


def measure_latency(
    name: str,
    res: Resolution,
    batch: int = 1,
    device: str = "cpu",
    dtype: str = "float32",
    threads: int | None = None,
    steps: int | None = None,
    cfg: bool = False,
    compile: bool = False,
    min_time: float = 1.0,
    min_runs: int = 5,
    max_runs: int = 200,
    single_run: bool = False,
    on_block: Callable[[int, int], None] | None = None,
) -> LatencyResult:
    """Time ``name`` at ``res`` (see module doc). ``threads`` sets torch's intra-op threads for the run.

    ``single_run``: for forwards that take minutes (full-size models at 4K on a CPU), warm up at the
    entry's own (small) input size instead of repeating the full forward, then time one run.
    ``on_block(done, total)`` is called after each of the model's ``blocks`` (a progress bar)."""
    if threads is not None:
        torch.set_num_threads(threads)
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    dev, torch_dtype = torch.device(device), DTYPES[dtype]
    entry = get_entry(name)
    res = case_resolution(entry, res)
    with torch.device(dev):
        model = entry.build().eval().to(torch_dtype)
    eval_batch = 2 * batch if cfg else batch
    x, t, y = (_random_like(v, dev, torch_dtype) for v in example_inputs(entry, res, model.patch_size, eval_batch))
    t = torch.full_like(t, 500.0)
    run_model = torch.compile(model) if compile else model

    def unit() -> None:
        with torch.inference_mode():
            if steps is None:
                run_model(x, t, y)
                return
            sample = x
            for _ in range(steps):
                eps = run_model(sample, t, y)[:, : sample.shape[1]]
                sample = sample - 0.01 * eps

    kernel_choice.reset()
    if single_run:
        _warm_up_small(model, entry, dev, torch_dtype, eval_batch)
    hooks = _block_progress(model, steps or 1, on_block)
    try:
        if single_run:
            start = time.perf_counter()
            unit()
            synchronise(dev)
            times = [time.perf_counter() - start]
        else:
            times = time_unit(unit, dev, min_time, min_runs, max_runs)
    finally:
        for h in hooks:
            h.remove()
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    median = statistics.median(times)
    return LatencyResult(
        model=name,
        resolution=str(res),
        device=str(dev) if dev.type != "cpu" else "cpu",
        dtype=dtype,
        batch=batch,
        unit="forward" if steps is None else f"{steps}-step sampling{' (CFG)' if cfg else ''}",
        threads=torch.get_num_threads(),
        runs=len(times),
        median_s=median,
        iqr_s=quartiles[2] - quartiles[0],
        min_s=min(times),
        samples_per_s=batch / median,
        backends=kernel_choice.last_used(),
    )

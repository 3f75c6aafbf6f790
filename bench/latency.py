"""Wall-clock latency of a registry entry: warm-up, device synchronisation, repeats until a minimum time
and count, then median, inter-quartile range and minimum, and throughput in samples per second.

The unit is one forward pass, or with ``steps`` a whole sampling loop of that many denoiser evaluations
(T2MD's Table 3 unit), doubled in batch with ``cfg``, or with ``train`` one training step: forward, backward
of a loss on the model's output, and an AdamW step (what every ablation run repeats). The sampling loop's own
arithmetic is a one-line Euler update (negligible next to a forward); the samplers proper live in
``ablations``. Weights are random: latency does not depend on their values.
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
TRAIN_UNIT = "train step"
# MACs of a training step counted as 3x the forward's: the backward computes the gradients of both the
# activations and the weights, each a forward's worth of multiply-adds (the usual convention, e.g. Kaplan et
# al.'s 6N FLOPs per token); the AdamW update is elementwise and left out.
TRAIN_MAC_FACTOR = 3


@dataclass
class LatencyResult:
    model: str
    resolution: str
    device: str
    dtype: str
    batch: int
    unit: str  # "forward", "N-step sampling (CFG)" or TRAIN_UNIT
    threads: int
    runs: int
    median_s: float
    iqr_s: float
    min_s: float
    samples_per_s: float
    backends: dict[str, str] = field(default_factory=dict)
    torch_version: str = torch.__version__
    # the unit's counted MACs at this CPU's fp32 GEMM peak over its median time, when the caller measured the
    # peak (``bench latency`` on a CPU): the share of the hardware the model uses
    gemm_share: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _random_like(t: torch.Tensor | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
    if t is None:
        return None
    if t.dtype == torch.long:
        return torch.zeros(t.shape, dtype=torch.long, device=device)
    return torch.randn(t.shape, device=device, dtype=dtype)


def estimate_seconds(
    name: str, res: Resolution, batch: int = 1, cfg: bool = False, train: bool = False
) -> tuple[float, float, float]:
    """(counted MACs of one forward, or of a training step with ``train`` (``TRAIN_MAC_FACTOR`` x the
    forward's), this CPU's fp32 GEMM peak in GMAC/s measured now, seconds that unit would take at that peak: a
    lower bound, the real run is slower by the model's inefficiency)."""

    macs = count_flops(name, res, 2 * batch if cfg else batch).macs * (TRAIN_MAC_FACTOR if train else 1)
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


def _train_step(model, optimizer, x, t, y, device: torch.device, dtype: torch.dtype) -> None:
    """One training step: forward, the mean square of the output as the loss (its value does not change the
    work), backward, AdamW. A dtype other than float32 runs forward and backward under autocast."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        loss = model(x, t, y).float().square().mean()
    loss.backward()
    optimizer.step()


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
    train: bool = False,
) -> LatencyResult:
    """Time ``name`` at ``res`` (see module doc). ``threads`` sets torch's intra-op threads for the run.

    ``single_run``: for forwards that take minutes (full-size models at 4K on a CPU), warm up at the
    entry's own (small) input size instead of repeating the full forward, then time one run.
    ``on_block(done, total)`` is called after each of the model's ``blocks`` (a progress bar).
    ``train``: time a training step instead (fp32 weights; another ``dtype`` runs the step under autocast)."""
    if threads is not None:
        torch.set_num_threads(threads)
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if train and (steps is not None or cfg):
        raise UserError("--train times one training step: drop --steps and --cfg (they time sampling)")
    dev, torch_dtype = torch.device(device), DTYPES[dtype]
    entry = get_entry(name)
    res = case_resolution(entry, res)
    with torch.device(dev):
        model = entry.build()
    model = model.train() if train else model.eval().to(torch_dtype)
    eval_batch = 2 * batch if cfg else batch
    input_dtype = torch.float32 if train else torch_dtype
    x, t, y = (_random_like(v, dev, input_dtype) for v in example_inputs(entry, res, model.patch_size, eval_batch))
    t = torch.full_like(t, 500.0)
    run_model = torch.compile(model) if compile else model

    def unit() -> None:
        if train:
            _train_step(run_model, optimizer, x, t, y, dev, torch_dtype)
            return
        with torch.inference_mode():
            if steps is None:
                run_model(x, t, y)
                return
            sample = x
            for _ in range(steps):
                eps = run_model(sample, t, y)[:, : sample.shape[1]]
                sample = sample - 0.01 * eps

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if train else None
    kernel_choice.reset()
    if single_run:
        _warm_up_small(model, entry, dev, input_dtype, eval_batch)
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
        unit=TRAIN_UNIT if train else "forward" if steps is None else f"{steps}-step sampling{' (CFG)' if cfg else ''}",
        threads=torch.get_num_threads(),
        runs=len(times),
        median_s=median,
        iqr_s=quartiles[2] - quartiles[0],
        min_s=min(times),
        samples_per_s=batch / median,
        backends=kernel_choice.last_used(),
    )

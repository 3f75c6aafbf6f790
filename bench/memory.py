"""Peak memory of inference (one forward) and of one training step (forward, backward, AdamW step).

Measured: on CUDA, the caching allocator's peak (``max_memory_allocated``, reset before each phase); on the
CPU, the process's peak resident set size (``ru_maxrss``), which is only meaningful in a fresh process:
``bench memory`` and ``bench sweep`` run every case in its own subprocess. Inference is measured before
training because the RSS high-water mark never goes down. The RSS includes the interpreter and torch
(``baseline_mb``, taken after imports and before the model is built); ``*_delta_mb`` subtracts it.

Estimated (on the meta device, no memory used): inference = weights + the two largest activations (an
op's input and output alive together); training = weights x 4 (weights, gradients, AdamW's two moments,
all float32) + every tensor autograd saves for the backward pass.
"""

from __future__ import annotations

import resource
from dataclasses import asdict, dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.inputs import Resolution, case_resolution, example_inputs
from bench.latency import DTYPES, _random_like
from zoo.registry import get_entry

MB = 2**20


@dataclass
class MemoryResult:
    model: str
    resolution: str
    device: str
    dtype: str
    batch: int
    source: str  # how the peaks were measured
    baseline_mb: float
    inference_peak_mb: float
    train_peak_mb: float
    inference_delta_mb: float
    train_delta_mb: float
    inference_estimate_mb: float
    train_estimate_mb: float

    def as_dict(self) -> dict:
        return asdict(self)


class _LargestOutputs(TorchDispatchMode):
    """Tracks the two largest op outputs (bytes) seen during a forward."""

    def __init__(self):
        super().__init__()
        self.largest = [0, 0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = sorted([*self.largest, t.numel() * t.element_size()])[-2:]
        return out


def estimate_memory(name: str, res: Resolution, batch: int = 1, dtype: str = "float32") -> tuple[float, float]:
    """(inference, training) estimates in MiB (module doc), counted on the meta device."""
    entry = get_entry(name)
    torch_dtype = DTYPES[dtype]
    with torch.device("meta"):
        model = entry.build().to(torch_dtype)
    meta = torch.device("meta")
    x, t, y = (_random_like(v, meta, torch_dtype) for v in example_inputs(entry, res, model.patch_size, batch))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad(), _LargestOutputs() as tracker:
        model.eval()(x, t, y)
    saved = []

    def pack(tensor: torch.Tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.train()(x.requires_grad_(False), t, y)
    master = sum(p.numel() * 4 for p in model.parameters())  # float32 gradients and two AdamW moments
    return (weights + sum(tracker.largest)) / MB, (weights + 3 * master + sum(saved)) / MB


def estimate_row(name: str, resolution: str, batch: int = 1, dtype: str = "float32") -> dict[str, float]:
    """The estimate columns of a memory row, for a case whose measurement failed (OOM, timeout)."""
    from bench.inputs import parse_resolution

    inference, train = estimate_memory(name, parse_resolution(resolution), batch, dtype)
    return {"inference_estimate_mb": round(inference, 1), "train_estimate_mb": round(train, 1)}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure_memory(
    name: str, res: Resolution, batch: int = 1, device: str = "cpu", dtype: str = "float32", threads: int = 1
) -> MemoryResult:
    """Measured peaks of inference then one training step; on CPU call this in a fresh process."""
    torch.set_num_threads(threads)
    dev, torch_dtype = torch.device(device), DTYPES[dtype]
    cuda = dev.type == "cuda"
    baseline = torch.cuda.memory_allocated(dev) / MB if cuda else _rss_mb()
    entry = get_entry(name)
    res = case_resolution(entry, res)
    with torch.device(dev):
        model = entry.build().to(torch_dtype)
    x, t, y = (_random_like(v, dev, torch_dtype) for v in example_inputs(entry, res, model.patch_size, batch))
    t = torch.full_like(t, 500.0)

    def peak() -> float:
        return torch.cuda.max_memory_allocated(dev) / MB if cuda else _rss_mb()

    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    with torch.inference_mode():
        model.eval()(x, t, y)
    inference = peak()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    out = model.train()(x, t, y)
    out.float().square().mean().backward()
    optimizer.step()
    train = peak()
    source = "CUDA allocator peak" if cuda else "peak RSS of a fresh process"
    inference_estimate, train_estimate = estimate_memory(name, res, batch, dtype)
    return MemoryResult(
        name,
        str(res),
        str(dev),
        dtype,
        batch,
        source,
        round(baseline, 1),
        round(inference, 1),
        round(train, 1),
        round(inference - baseline, 1),
        round(train - baseline, 1),
        round(inference_estimate, 1),
        round(train_estimate, 1),
    )

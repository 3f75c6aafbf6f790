"""The timing primitives every benchmark shares: repeated calls with device synchronisation, and this
device's fp32 GEMM rate, the yardstick efficiency is measured against in the same process."""

from __future__ import annotations

import time

import torch

from mambabench.allocator import retain_freed_memory


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_unit(unit, device: torch.device, min_time: float = 1.0, min_runs: int = 5, max_runs: int = 200) -> list[float]:
    """Seconds of each call of ``unit()`` after one warm-up call (kernel builds, compilation, allocator),
    synchronising the device after each; repeats until ``min_time`` seconds and ``min_runs`` calls. Every model
    is timed under the same malloc settings (``retain_freed_memory``: no page faults from a heap that shrinks
    between calls)."""
    retain_freed_memory()
    unit()
    synchronise(device)
    times: list[float] = []
    while len(times) < max_runs and (len(times) < min_runs or sum(times) < min_time):
        start = time.perf_counter()
        unit()
        synchronise(device)
        times.append(time.perf_counter() - start)
    return times


def gemm_rate(tokens: int = 4096, width: int = 1152, out: int = 4 * 1152) -> float:
    """This device's fp32 GEMM peak in GMAC/s on the current thread count: the fastest of >= 0.5 s of calls
    of a transformer-sized projection (PixArt-α/T2MD width 1152, MLP 4x); the best run is the least disturbed
    by other work on the machine."""
    a, b = torch.randn(tokens, width), torch.randn(width, out)
    a @ b
    best, spent = float("inf"), 0.0
    while spent < 0.5 or best == float("inf"):
        start = time.perf_counter()
        a @ b
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
    return tokens * width * out / best / 1e9

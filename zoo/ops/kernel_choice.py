"""Kernel choice: which implementation ran each op most recently (benchmarks report it next to their
timings), and the switch that makes CPU ops take their reference implementations instead of the fast ones."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_LAST: dict[str, str] = {}


def record(op: str, backend: str) -> None:
    _LAST[op] = backend


def last_used() -> dict[str, str]:
    """Op name -> backend of its most recent call in this process, e.g. ``{"selective_scan": "cpu-cpp"}``."""
    return dict(_LAST)


def reset() -> None:
    _LAST.clear()


_REFERENCE = [False]


@contextmanager
def reference_kernels() -> Iterator[None]:
    """Inside, CPU ops run their reference implementations: the differentiable PyTorch SSD, a grouped
    ``F.conv1d`` and the portable (non-AVX-512) Mamba-1 kernel on channel-major copies. Benchmarks use it to
    compare both paths in one process; results agree with the fast path to rounding."""
    _REFERENCE.append(True)
    try:
        yield
    finally:
        _REFERENCE.pop()


def using_reference_kernels() -> bool:
    return _REFERENCE[-1]

"""Which implementation ran each op most recently (reported by benchmarks next to their timings)."""

from __future__ import annotations

_LAST: dict[str, str] = {}


def record(op: str, backend: str) -> None:
    _LAST[op] = backend


def last_used() -> dict[str, str]:
    """Op name -> backend of its most recent call in this process, e.g. ``{"selective_scan": "cpu-cpp"}``."""
    return dict(_LAST)


def reset() -> None:
    _LAST.clear()

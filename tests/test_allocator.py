"""The malloc settings the trainer and the timer apply: freed memory stays in the heap for the next step."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# Allocates 40 x 1 MiB tensors, frees them, and prints whether the thresholds were set and how much memory the
# heap holds free for reuse (glibc's mallinfo2().fordblks).
_PROBE = """
import ctypes, torch
from mambabench.allocator import retain_freed_memory

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                      "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
applied = retain_freed_memory()
tensors = [torch.ones(256, 1024) for _ in range(40)]
del tensors
print(applied, libc.mallinfo2().fordblks // 2**20)
"""


def _probe(**env: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_freed_memory_stays_in_the_heap_and_the_setting_can_be_turned_off():
    applied, heap_mib = _probe(MAMBABENCH_MALLOC_DEFAULTS="0")
    assert applied and heap_mib >= 40  # the 40 MiB came from the heap and stay there, free for the next step
    applied, heap_mib = _probe(MAMBABENCH_MALLOC_DEFAULTS="1")
    assert not applied and heap_mib < 40  # glibc's defaults: mapped and unmapped, or trimmed off the heap

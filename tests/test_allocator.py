"""The malloc settings the trainer and the timer apply: freed memory stays in the heap for the next step."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# Three rounds of what a training step does to the heap (100 blocks of 1 MiB allocated, written and freed, through
# libc's own malloc), then whether the thresholds were set and how much memory the heap holds free for reuse
# (glibc's mallinfo2().fordblks).
_PROBE = """
import ctypes
from mambabench.allocator import retain_freed_memory

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                      "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
applied = retain_freed_memory()
for _ in range(3):
    blocks = [libc.malloc(2**20) for _ in range(100)]
    for block in blocks:
        libc.memset(block, 1, 2**20)
    for block in reversed(blocks):
        libc.free(block)
print(applied, libc.mallinfo2().fordblks // 2**20)
"""


def _probe(**env: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_freed_memory_stays_in_the_heap_and_the_setting_can_be_turned_off():
    """With the setting the 100 MiB come from the heap and stay there after the free; with glibc's defaults they
    are mapped and unmapped (blocks above its first mmap threshold) or trimmed off the heap's top."""
    applied, heap_mib = _probe(MAMBABENCH_MALLOC_DEFAULTS="0")
    assert applied and heap_mib >= 100
    applied, heap_mib = _probe(MAMBABENCH_MALLOC_DEFAULTS="1")
    assert not applied and heap_mib < 50


_LARGE_TENSOR = """
import resource
import mambabench
import torch

before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(2**24).fill_(1.0)  # 64 MiB: above glibc's largest mmap threshold, a fresh mapping every time
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _thp_mode() -> str:
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return "absent"
    return text.split("[")[1].split("]")[0] if "[" in text else "absent"


@pytest.mark.skipif(_thp_mode() not in ("madvise", "always"), reason="the kernel gives no transparent huge pages")
def test_large_tensors_fault_in_huge_pages_and_the_setting_can_be_turned_off():
    """Importing mambabench asks PyTorch for huge pages: a 64 MiB tensor takes far fewer than its 16,384 page
    faults of 4 KiB; with MAMBABENCH_MALLOC_DEFAULTS=1 (and huge pages only on request) it takes them all."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}

    def faults(**extra: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", _LARGE_TENSOR], env={**env, **extra}, capture_output=True, text=True
        )
        return int(run.stdout.split()[-1])

    assert faults(MAMBABENCH_MALLOC_DEFAULTS="0") < 4096
    if _thp_mode() == "madvise":
        assert faults(MAMBABENCH_MALLOC_DEFAULTS="1") > 12000

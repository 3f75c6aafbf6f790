"""Keep the memory a training step frees for the next step instead of handing it back to the OS.

glibc's malloc gives the top of its heap back to the kernel (``brk``) whenever more than its trim threshold is
free there, and that threshold follows the largest block freed so far (a few MB for the ablation presets). A
training step allocates and frees its activations every step, so the heap shrinks at the end of each step and
every page of it is faulted in and zeroed again in the next one. Measured at the DiM-Teng ``cpu-learn`` shape
(one thread, ``scripts/bench_train_blocks.py``'s pair): ~27,000 page faults and ~45 ms of kernel time per
0.42 s step, against none for the DiT of the same size (its allocation pattern happens not to trigger the
shrink); with the thresholds fixed, ~300 faults and a ~10% shorter step.

``retain_freed_memory()`` fixes both thresholds (``mallopt``): blocks below 32 MiB (glibc's largest mmap
threshold) come from the heap, and the heap keeps up to 1 GiB of free memory for reuse. Peak memory is
unchanged (freed memory is reused, not added); the process's resident size stays at its peak instead of
dropping between steps. It is what the usual advice for CPU training (jemalloc or tcmalloc preloaded) achieves,
without a preload. Called by the trainer, the samplers (``ablations.generate``, ``generate_video``: a DiM-Teng
forward at batch 64 took ~17,000 faults a call, 5% of its time) and the benchmark timer, so both sides of a
comparison run under the same allocator settings; ``MAMBABENCH_MALLOC_DEFAULTS=1`` leaves malloc alone. A no-op
off glibc.

Blocks of 32 MiB and more still come from ``mmap`` and go back at their free (glibc caps the mmap threshold
there), so a tensor that size is faulted in 4 KiB page by page every time it is made: ~8,200 faults and
~15 ms of kernel time per 32 MiB here, 25% of a Mamba-1 scan's forward at b64 L366 d_inner 1024 (96 MB
activations). ``request_huge_pages()`` asks PyTorch's CPU allocator for transparent huge pages for tensors of
2 MB and more (``THP_MEM_ALLOC_ENABLE=1``: 2 MB-aligned and ``madvise(MADV_HUGEPAGE)``), one fault per 2 MB. It
runs when ``mambabench`` is imported, because PyTorch reads the variable once, at its first such allocation;
the user's own ``THP_MEM_ALLOC_ENABLE`` wins, ``MAMBABENCH_MALLOC_DEFAULTS=1`` skips it, and the kernel's
``/sys/kernel/mm/transparent_hugepage/enabled`` must say ``madvise`` or ``always`` for it to take effect.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

from mambabench import settings

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # the largest value glibc accepts (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 2**30

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Set glibc malloc's mmap and trim thresholds once per process (see module doc); whether they are set."""
    global _applied
    if _applied is None:
        _applied = _set_thresholds()
    return _applied


def _set_thresholds() -> bool:
    if settings.malloc_defaults() or not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def request_huge_pages() -> bool:
    """Ask PyTorch's CPU allocator for huge pages for large tensors (see module doc); whether it was asked."""
    if settings.malloc_defaults() or not sys.platform.startswith("linux"):
        return False
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    return os.environ["THP_MEM_ALLOC_ENABLE"] == "1"

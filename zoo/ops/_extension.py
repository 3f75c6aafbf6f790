"""Builds and loads the C++ CPU kernels at first use.

One extension holds every CPU kernel (Mamba-1 selective scan, Mamba-2 SSD scan, causal depthwise conv1d,
gated RMSNorm; ``csrc/``). It is compiled with ``torch.utils.cpp_extension.load`` into a per-user cache directory
(``$MAMBABENCH_CACHE`` or ``~/.cache/mambabench``), one sub-folder per torch version, CPU instruction set
*and* source tree: the build uses ``-march=native``, so a node with another CPU sharing the cache (a cluster's
home directory) builds its own copy instead of loading one that would die with SIGILL; and two checkouts (or
two versions of the sources) do not rebuild one folder in turn, replacing the library under each other. Only
the first process on a machine pays the build. ``$MAMBABENCH_CPU_ARCH`` (e.g. ``x86-64-v3``) builds for another
target than ``native``, into its own folder: how the AVX2 path is tested on an AVX-512 machine. If the build
fails (no compiler, no Python headers) callers fall back to PyTorch code and warn once.
"""

from __future__ import annotations

import functools
import hashlib
import platform
import warnings
from pathlib import Path
from typing import Any

import torch

from mambabench import settings

_CSRC = Path(__file__).parent / "csrc"
_SOURCES = ("all_kernels.cpp",)  # includes the kernels' files: one translation unit, the torch headers parsed once
_CFLAGS = ["-O3", "-ffast-math", "-fopenmp-simd", "-mprefer-vector-width=512", "-std=c++20"]


def cpu_signature() -> str:
    """Short hash of what ``-march=native`` depends on: the CPU model and its instruction-set flags."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        text += "".join(sorted(set(lines)))
    except OSError:  # not Linux: the processor string is what we have
        pass
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def cache_root() -> Path:
    """Per-machine cache folder of the harness (compiled kernels and the like)."""
    return settings.cache_dir()


def source_signature() -> str:
    """Short hash of the kernel sources: their folder (the build files name it) and their contents."""
    digest = hashlib.sha1(str(_CSRC.resolve()).encode())
    for path in sorted(_CSRC.iterdir()):
        if path.suffix in (".cpp", ".h"):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:8]


def cache_dir() -> Path:
    """Folder holding the compiled kernels for this torch version, this CPU (or the ``-march`` that
    ``$MAMBABENCH_CPU_ARCH`` names) and these sources."""
    torch_version = torch.__version__.replace("+", "_")
    arch = settings.cpu_arch()
    target = f"cpu{cpu_signature()}" if arch == "native" else f"cpu{cpu_signature()}-{arch}"
    return cache_root() / f"ext-torch{torch_version}-{target}-src{source_signature()}"


def vector_isa() -> str:
    """Which vector path the kernels compile to for the target CPU: ``avx512`` (16-lane vectors),
    ``avx2`` (8 lanes) or ``generic`` (plain C++ vectors); what ``bench`` and the README report."""
    arch = settings.cpu_arch()
    if arch != "native":
        if "v4" in arch or "avx512" in arch:
            return "avx512"
        return "avx2" if "v3" in arch or "avx2" in arch else "generic"
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        pass
    words = set(flags.split())
    return "avx512" if "avx512f" in words else ("avx2" if {"avx2", "fma"} <= words else "generic")


@functools.cache
def load_cpu_kernels() -> Any | None:
    """The compiled CPU kernels, the operator namespace ``torch.ops.mambabench_cpu`` (``.ssd_fwd(...)`` and so
    on), or ``None`` (with one warning) when they cannot be built."""
    if settings.cpp_kernels_disabled():
        return None
    import logging

    # importing cpp_extension logs "No CUDA runtime is found" on CPU-only machines: true, and not our concern
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils.cpp_extension import load
    finally:
        logger.setLevel(level)

    build = cache_dir() / "cpu_kernels"
    build.mkdir(parents=True, exist_ok=True)
    try:
        load(
            name="mambabench_cpu_kernels",
            sources=[str(_CSRC / name) for name in _SOURCES],
            extra_cflags=[f"-march={settings.cpu_arch()}", *_CFLAGS],
            extra_include_paths=[str(_CSRC)],
            build_directory=str(build),
            verbose=False,
            is_python_module=False,  # a plain library that registers its operators (csrc/module.cpp)
        )
        return torch.ops.mambabench_cpu
    except Exception as exc:  # a missing compiler/headers must not make the harness unusable
        warnings.warn(
            f"mambabench: could not build the CPU kernels ({type(exc).__name__}: {exc}); falling back to "
            "PyTorch code that is several times slower. Install g++ and the Python development headers to "
            "get the fast kernels.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None

"""Builds and loads the C++ CPU kernels at first use.

The kernels are compiled with ``torch.utils.cpp_extension.load`` into a per-user cache directory
(``$MAMBABENCH_CACHE`` or ``~/.cache/mambabench``, one sub-folder per torch version), so only the first
process on a machine pays the ~30 s build. ``-march=native`` is safe because the build runs on the machine
that uses it. If the build fails (no compiler, no Python headers) callers fall back to PyTorch code and
warn once.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from types import ModuleType

import torch

_CSRC = Path(__file__).parent / "csrc"


def cache_dir() -> Path:
    """Folder holding compiled kernels (and other per-machine caches of the harness)."""
    root = Path(os.environ.get("MAMBABENCH_CACHE", Path.home() / ".cache" / "mambabench"))
    return root / f"ext-torch{torch.__version__.replace('+', '_')}"


@functools.cache
def load_selective_scan_cpu() -> ModuleType | None:
    """The compiled selective-scan module, or ``None`` (with one warning) when it cannot be built."""
    if os.environ.get("MAMBABENCH_NO_CPP") == "1":
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

    build = cache_dir() / "selective_scan_cpu"
    build.mkdir(parents=True, exist_ok=True)
    try:
        return load(
            name="mambabench_selective_scan_cpu",
            sources=[str(_CSRC / "selective_scan_cpu.cpp")],
            extra_cflags=["-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-mprefer-vector-width=512"],
            build_directory=str(build),
            verbose=False,
        )
    except Exception as exc:  # a missing compiler/headers must not make the harness unusable
        warnings.warn(
            f"mambabench: could not build the CPU selective-scan kernel ({type(exc).__name__}: {exc}); "
            "falling back to a PyTorch loop that is several times slower. Install g++ and the Python "
            "development headers to get the fast kernel.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None

"""Every setting the harness reads from the environment, in one place; each is read when it is used, so a
test or a job can set it at any time.

| variable | default | what it sets |
|---|---|---|
| ``MAMBABENCH_CACHE`` | ``~/.cache/mambabench`` | compiled CPU kernels, Inception weights, FID reference features |
| ``MAMBABENCH_NO_CPP`` | unset | ``1``: never build or load the C++ CPU kernels (the PyTorch paths run) |
| ``MAMBABENCH_RESULTS`` | ``$XDG_DATA_HOME/mambabench/results.sqlite`` | the results store (``--store`` wins) |
| ``MAMBABENCH_RUNS`` | ``./mambabench-runs`` | where ``ablations run`` keeps table runs (``--runs`` wins) |
| ``MAMBABENCH_DATA`` | ``./data`` | where data sets are looked for (``--data-root`` wins) |
| ``MAMBABENCH_INCEPTION`` | unset | the FID Inception weights file (``--inception`` wins) |
| ``MAMBABENCH_I3D`` | unset | the FVD I3D weights, StyleGAN-V's ``i3d_torchscript.pt`` (``--i3d`` wins) |
| ``MAMBABENCH_TEXT_ENCODER`` | unset | the T5 folder that encodes captions (``--text-encoder`` wins) |
| ``MAMBABENCH_TEACHER`` | unset | the released teacher checkpoint a table distils from (``--teacher`` wins) |
| ``MAMBABENCH_GENEVAL_METADATA`` | unset | GenEval's prompts: tables score GenEval too (``--geneval-metadata``) |
| ``MAMBABENCH_GENEVAL_DETECTOR`` | under ``$MAMBABENCH_CACHE/geneval/`` | GenEval's detector (``--detector`` wins) |
| ``MAMBABENCH_GENEVAL_CLIP`` | under ``$MAMBABENCH_CACHE/geneval/`` | GenEval's CLIP file or folder (``--clip`` wins) |
| ``MAMBABENCH_DEBUG`` | unset | ``1``: a failing command shows its traceback instead of one line |
| ``MAMBABENCH_MALLOC_DEFAULTS`` | unset | ``1``: leave glibc malloc's thresholds alone (``mambabench.allocator``) |
"""

from __future__ import annotations

import os
from pathlib import Path


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def cache_dir() -> Path:
    return Path(os.environ.get("MAMBABENCH_CACHE") or Path.home() / ".cache" / "mambabench")


def cpp_kernels_disabled() -> bool:
    return os.environ.get("MAMBABENCH_NO_CPP") == "1"


def malloc_defaults() -> bool:
    return _flag("MAMBABENCH_MALLOC_DEFAULTS")


def cpu_arch() -> str:
    """The ``-march`` the CPU kernels are compiled for: ``native`` (this CPU), or what
    ``$MAMBABENCH_CPU_ARCH`` names, e.g. ``x86-64-v3`` to build and test the AVX2 path on an AVX-512 machine."""
    return os.environ.get("MAMBABENCH_CPU_ARCH") or "native"


def results_store(path: str | Path | None = None) -> tuple[Path, str]:
    """(path, where it came from): ``path``, else ``$MAMBABENCH_RESULTS``, else the per-user default."""
    if path:
        return Path(path), "--store"
    if os.environ.get("MAMBABENCH_RESULTS"):
        return Path(os.environ["MAMBABENCH_RESULTS"]), "$MAMBABENCH_RESULTS"
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "mambabench" / "results.sqlite", "the default"


def runs_dir(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get("MAMBABENCH_RUNS") or "mambabench-runs")


def data_dir() -> Path:
    return Path(os.environ.get("MAMBABENCH_DATA") or "data")


def inception_weights() -> str | None:
    return os.environ.get("MAMBABENCH_INCEPTION") or None


def i3d_weights() -> str | None:
    return os.environ.get("MAMBABENCH_I3D") or None


def text_encoder() -> str | None:
    return os.environ.get("MAMBABENCH_TEXT_ENCODER") or None


def teacher() -> str | None:
    return os.environ.get("MAMBABENCH_TEACHER") or None


def geneval_metadata() -> str | None:
    return os.environ.get("MAMBABENCH_GENEVAL_METADATA") or None


def geneval_detector() -> Path:
    return Path(
        os.environ.get("MAMBABENCH_GENEVAL_DETECTOR")
        or cache_dir() / "geneval" / "mask2former-swin-small-coco-instance"
    )


def geneval_clip() -> Path:
    return Path(os.environ.get("MAMBABENCH_GENEVAL_CLIP") or cache_dir() / "geneval" / "clip-vit-large-patch14")


def debug() -> bool:
    return _flag("MAMBABENCH_DEBUG")

"""Lazy probes for the optional CUDA packages (the ``[cuda]`` extra).

Nothing here imports mamba_ssm, causal_conv1d or flash_attn at module import time: on a CPU machine
these packages either fail to install or import (they need their compiled CUDA modules). Each probe
runs once and caches its answer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable


@functools.cache
def selective_scan_fn() -> Callable | None:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as fn
    except Exception:
        return None
    return fn


@functools.cache
def mamba_chunk_scan_combined() -> Callable | None:
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as fn
    except Exception:
        return None
    return fn


@functools.cache
def mamba_split_conv1d_scan_combined() -> Callable | None:
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_split_conv1d_scan_combined as fn
    except Exception:
        return None
    return fn


@functools.cache
def mamba_inner_fn() -> Callable | None:
    """mamba_ssm's fused Mamba-1 mixer (conv, x_proj, dt_proj, scan, gate, out_proj in one autograd node)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn as fn
    except Exception:
        return None
    return fn


@functools.cache
def mamba_inner_fn_no_out_proj() -> Callable | None:
    """The same without out_proj: in Vim's fork of mamba_ssm (hustvl/Vim), which its v2 bidirectional layers
    call once per direction; upstream mamba_ssm 2.x does not ship it."""
    try:
        from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn_no_out_proj as fn
    except Exception:
        return None
    return fn


@functools.cache
def causal_conv1d_fn() -> Callable | None:
    try:
        from causal_conv1d import causal_conv1d_fn as fn
    except Exception:
        return None
    return fn


@functools.cache
def flash_attn_func() -> Callable | None:
    try:
        from flash_attn import flash_attn_func as fn
    except Exception:
        return None
    return fn


def available() -> dict[str, bool]:
    """Which CUDA packages import on this machine (for reports)."""
    return {
        "mamba_ssm.selective_scan": selective_scan_fn() is not None,
        "mamba_ssm.mamba_inner": mamba_inner_fn() is not None,
        "mamba_ssm.mamba_inner_no_out_proj (Vim)": mamba_inner_fn_no_out_proj() is not None,
        "mamba_ssm.ssd": mamba_chunk_scan_combined() is not None,
        "mamba_ssm.split_conv1d_scan": mamba_split_conv1d_scan_combined() is not None,
        "causal_conv1d": causal_conv1d_fn() is not None,
        "flash_attn": flash_attn_func() is not None,
    }

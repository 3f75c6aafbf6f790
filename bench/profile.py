"""Where one forward pass spends its time: per op category and per block type, beside the counted MACs,
the achieved GMAC/s and the share of this device's matmul rate measured in the same run.

A category's time is the self time of the ops in it, where an op nested inside one of our custom ops
(``zoo::ssd_scan`` running PyTorch code, say) counts for that op's category. Categories: ``linear``
(mm/addmm/bmm), ``attention`` (``zoo::attention`` and SDPA), ``linear attention``
(``zoo::linear_attention``, ``zoo::gated_linear_attention``), ``scan`` (selective and SSD scans), ``conv``
(causal and patch-embedding convolutions), ``norm/elementwise`` (norms, activations, adds, copies,
layout ops) and ``other``. Block types are the classes of the model's ``blocks`` (T2I blocks split by
mixer: ``T2IBlock[SA]``, ``T2IBlock[HM]``, ...), timed by forward hooks.

The answer to "is this gap the architecture or the code": a category or block running far below the
GEMM rate is code to improve; the counted MACs are the architecture.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.flops import _CATEGORIES
from bench.inputs import Resolution, example_inputs
from bench.timer import gemm_rate
from zoo.registry import get_entry

_OP_CATEGORIES = {
    "zoo::attention": "attention",
    "zoo::linear_attention": "linear attention",
    "zoo::gated_linear_attention": "linear attention",
    "zoo::selective_scan": "scan",
    "zoo::selective_scan_backward": "scan",
    "zoo::ssd_scan": "scan",
    "zoo::causal_conv1d": "conv",
    "zoo::conv_scan_norm": "scan",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
    "aten::scaled_dot_product_attention": "attention",
    "aten::mm": "linear",
    "aten::addmm": "linear",
    "aten::bmm": "linear",
    "aten::baddbmm": "linear",
    "aten::matmul": "linear",
    "aten::linear": "linear",
    "aten::convolution": "conv",
    "aten::_convolution": "conv",
    "aten::mkldnn_convolution": "conv",
    "aten::conv2d": "conv",
}
_ELEMENTWISE = (
    "norm",
    "mul",
    "add",
    "sub",
    "div",
    "silu",
    "gelu",
    "tanh",
    "sigmoid",
    "exp",
    "copy",
    "cat",
    "index",
    "clone",
    "contiguous",
    "pow",
    "rsqrt",
    "mean",
    "softplus",
    "flip",
    "where",
    "fill",
    "zero",
    "sum",
    "neg",
    "reshape",
    "view",
    "transpose",
    "permute",
    "split",
    "chunk",
    "to",
    "empty",
)
CATEGORIES = ("linear", "attention", "linear attention", "scan", "conv", "norm/elementwise", "other")


def op_category(name: str) -> str:
    if name in _OP_CATEGORIES:
        return _OP_CATEGORIES[name]
    if name.startswith("zoo::"):
        return "other"
    base = name.split("::")[-1].strip("_")
    return "norm/elementwise" if any(key in base for key in _ELEMENTWISE) else "other"


@dataclass
class ProfileRow:
    """One category or block type: time in seconds, counted MACs (None where counting is not meaningful)."""

    kind: str  # "category" or "block"
    name: str
    seconds: float
    share_of_time: float
    macs: int | None
    calls: int = 1
    gemm_gmacs_per_s: float = 0.0

    @property
    def gmacs_per_s(self) -> float | None:
        return self.macs / self.seconds / 1e9 if self.macs and self.seconds > 0 else None

    @property
    def share_of_gemm(self) -> float | None:
        rate = self.gmacs_per_s
        return rate / self.gemm_gmacs_per_s if rate is not None and self.gemm_gmacs_per_s else None

    def as_dict(self) -> dict:
        return {**asdict(self), "gmacs_per_s": self.gmacs_per_s, "share_of_gemm": self.share_of_gemm}


@dataclass
class Profile:
    model: str
    resolution: str
    threads: int
    total_s: float
    total_macs: int
    gemm_gmacs_per_s: float
    rows: list[ProfileRow]


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence the profiler's native start/stop (and, on CUDA builds without a GPU, device-count) log lines,
    which bypass Python's logging: point file descriptor 2 at /dev/null for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def block_label(module: nn.Module) -> str:
    kind = getattr(module, "mixer_kind", None)
    return f"{type(module).__name__}[{kind}]" if kind else type(module).__name__


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return []
    return [(f"blocks.{i}", b) for i, b in enumerate(blocks)]


def _counted(entry, res: Resolution, batch: int) -> tuple[dict[str, int], dict[str, int], int]:
    """Counted MACs per category and per block label (meta device), and the total."""
    with torch.device("meta"):
        model = entry.build().eval()
    x, t, y = example_inputs(entry, res, model.patch_size, batch)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t, y)
    counts = counter.get_flop_counts()
    by_category: dict[str, int] = {}
    for op, flops in counts["Global"].items():
        category = _CATEGORIES.get(str(op), "other")
        by_category[category] = by_category.get(category, 0) + flops // 2
    by_block: dict[str, int] = {}
    root = type(model).__name__
    for path, block in _blocks(model):
        key = f"{root}.{path}"
        macs = sum(counts.get(key, {}).values()) // 2
        by_block[block_label(block)] = by_block.get(block_label(block), 0) + macs
    return by_category, by_block, counter.get_total_flops() // 2


def profile_model(name: str, res: Resolution, batch: int = 1, threads: int = 1, warmup: bool = True) -> Profile:
    """Profile ``name`` at ``res`` on the CPU (see module doc): a warm-up forward, one timed by block hooks,
    one under torch.profiler."""
    torch.set_num_threads(threads)
    entry = get_entry(name)
    counted_cat, counted_block, total_macs = _counted(entry, res, batch)
    gemm = gemm_rate()
    model = entry.build().eval()
    x, t, y = (
        None if v is None else (torch.zeros(v.shape, dtype=v.dtype) if v.dtype == torch.long else torch.randn(v.shape))
        for v in example_inputs(entry, res, model.patch_size, batch)
    )
    t = torch.full_like(t, 500.0)
    block_time: dict[str, float] = {}
    block_calls: dict[str, int] = {}
    starts: dict[int, float] = {}

    def pre(module, args):
        starts[id(module)] = time.perf_counter()

    def post(module, args, out):
        label = block_label(module)
        block_time[label] = block_time.get(label, 0.0) + time.perf_counter() - starts.pop(id(module))
        block_calls[label] = block_calls.get(label, 0) + 1

    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        if warmup:
            model(x, t, y)
        # one plain forward timed by block hooks (no profiler overhead), then one under the profiler for
        # the op categories, whose shares are applied to the plain forward's time
        hooks = [
            h for _, b in _blocks(model) for h in (b.register_forward_pre_hook(pre), b.register_forward_hook(post))
        ]
        start = time.perf_counter()
        model(x, t, y)
        total = time.perf_counter() - start
        for h in hooks:
            h.remove()
        with _quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x, t, y)

    seconds = dict.fromkeys(CATEGORIES, 0.0)
    for event in prof.events():
        category, parent = op_category(event.name), event.cpu_parent
        while parent is not None:  # an op inside one of our custom ops counts for that op
            if parent.name.startswith("zoo::"):
                category = op_category(parent.name)
            parent = parent.cpu_parent
        seconds[category] += event.self_cpu_time_total / 1e6
    profiled = sum(seconds.values()) or 1.0
    rows = [
        ProfileRow(
            "category",
            c,
            seconds[c] * total / profiled,
            seconds[c] / profiled,
            counted_cat.get(c) if c in ("linear", "attention", "linear attention", "scan", "conv") else None,
            calls=0,
            gemm_gmacs_per_s=gemm,
        )
        for c in CATEGORIES
    ]
    for label, secs in block_time.items():
        rows.append(ProfileRow("block", label, secs, secs / total, counted_block.get(label), block_calls[label], gemm))
    return Profile(name, str(res), threads, total, total_macs, gemm, rows)

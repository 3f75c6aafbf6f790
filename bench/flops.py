"""FLOPs of a registry entry at any resolution, counted on the meta device (no memory, no compute).

``torch.utils.flop_counter.FlopCounterMode`` counts every aten matmul/conv, and our custom ops carry
their own formulas (``zoo/ops/flops.py``): attention's QK^T and AV, the selective and SSD scans, the causal
conv. Elementwise work (norms, activations, adds) is not counted, as in DiT's convention. Reported both
as MACs (DiT's "GFLOPs") and FLOPs (= 2 x MACs), with a breakdown by category.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.inputs import Resolution, case_resolution, example_inputs
from zoo.registry import get_entry

_CATEGORIES = {
    "zoo.attention": "attention",
    "zoo.linear_attention": "linear attention",
    "zoo.gated_linear_attention": "linear attention",
    "zoo.selective_scan": "scan",
    "zoo.ssd_scan": "scan",
    "zoo.causal_conv1d": "conv",
    "zoo.conv_scan_norm": "scan",
    "aten.convolution": "conv",
    "aten._convolution": "conv",
    "aten.mm": "linear",
    "aten.addmm": "linear",
    "aten.bmm": "linear",
    "aten.baddbmm": "linear",
}


@dataclass
class FlopCount:
    model: str
    resolution: str
    input_shape: tuple[int, ...]
    patch_size: int
    params: int
    flops: int
    by_category: dict[str, int] = field(default_factory=dict)
    seq_len: int = 0  # longest token sequence a layer sees: patches + padding and prefix tokens

    @property
    def macs(self) -> float:
        return self.flops / 2

    @property
    def tokens(self) -> int:
        """Patch tokens of the input: grid / patch² per frame, times the frames of a clip."""
        return math.prod(self.input_shape[2:]) // self.patch_size**2


def count_flops(
    name: str, res: Resolution, batch: int = 1, model: torch.nn.Module | None = None, **overrides
) -> FlopCount:
    """Forward FLOPs of ``name`` on one ``res`` batch (images, or clips for a video entry), counted on the meta
    device. ``model``: the entry already built on meta (with these ``overrides``), to count it at several sizes
    without building it again (models take any size their patch grid divides)."""
    entry = get_entry(name)
    res = case_resolution(entry, res)
    if model is None:
        with torch.device("meta"):
            model = entry.build(**overrides).eval()
    x, t, y = example_inputs(entry, res, model.patch_size, batch)
    lengths = [0]

    def record(module, args):  # every token-wise projection sees (batch, sequence, width)
        if args and args[0].dim() == 3:
            lengths.append(args[0].shape[1])

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t, y)
    for hook in hooks:
        hook.remove()
    by_category: dict[str, int] = {}
    for op, count in counter.get_flop_counts()["Global"].items():
        category = _CATEGORIES.get(str(op), "other")
        by_category[category] = by_category.get(category, 0) + count
    return FlopCount(
        model=name,
        resolution=str(res),
        input_shape=tuple(x.shape),
        patch_size=model.patch_size,
        params=sum(p.numel() for p in model.parameters()),
        flops=counter.get_total_flops(),
        by_category=by_category,
        seq_len=max(lengths),
    )

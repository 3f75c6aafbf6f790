"""Block-level efficiency: one full-width block of a model at a given token grid, timed beside this
device's matmul rate measured in the same process.

This is what separates the architecture from the code: a block's counted MACs divided by its time is its
achieved GMAC/s, and that divided by the GEMM rate is the share of the hardware it uses. Composing block
times as a model is built gives the model's speedup without running the whole model (a full T2MD forward
at 3840x2160 takes tens of minutes on one CPU core).

- ``gemm_rate``: fp32 GEMM of a transformer-sized projection ((tokens x 1152) @ (1152 x 4608)), GMAC/s.
- ``t2md_blocks``: PixArt-alpha/T2MD blocks at full width (1152, 16 heads, MLP 4x, Mamba-2 d_state 256,
  expand 2, headdim 64): SA, HM, WM T2I blocks and their token mixers alone.
- ``mamba1_mixers``: the Mamba-1 mixers of DiM-Teng-H (Vim v2 bidirectional, width 1536) and DiM-Mo-XL
  (shared dt projection, width 1152).
- ``composed_t2md_speedup``: 28 SA blocks vs T2MD's 4 SA + 12 HM + 12 WM (the embeddings and final layer
  are left out: under 0.5% of the MACs).
- ``dim_mo_vs_dit``: one DiM-Mo-XL block (bidirectional Mamba-1 + MLP) and one DiT-XL block (adaLN-Zero
  attention + MLP) at the token count of a resolution, composed as the registry's XL/2 models are built
  (their depths), beside the counted MAC ratio.

Thread count is set explicitly (default 1): on a shared 2-core machine two threads can be far slower.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.timer import gemm_rate, time_unit

T2MD_WIDTH, T2MD_HEADS, CAPTION_TOKENS = 1152, 16, 120


@dataclass
class BlockTiming:
    """One timed module: counted MACs (FlopCounterMode / 2, counted on the meta device) and seconds."""

    name: str
    tokens: int
    macs: int
    seconds: float
    gemm_gmacs_per_s: float
    path: str = "fast"

    @property
    def gmacs_per_s(self) -> float:
        return self.macs / self.seconds / 1e9

    @property
    def share_of_gemm(self) -> float:
        return self.gmacs_per_s / self.gemm_gmacs_per_s

    def row(self) -> dict:
        share = round(self.share_of_gemm, 3)
        return {**asdict(self), "gmacs_per_s": round(self.gmacs_per_s, 2), "share_of_gemm": share}


def counted_macs(build: Callable[[], nn.Module], inputs: Callable[[], tuple]) -> int:
    """MACs of one forward, counted on the meta device (no memory, no time)."""
    with torch.device("meta"):
        module, args = build(), inputs()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*args)
    return counter.get_total_flops() // 2


def _time_module(name: str, build, inputs, tokens: int, gemm: float | None, repeats: int, path: str) -> BlockTiming:
    """Time one module; the GEMM peak is measured right before it (unless given), so that whatever else the
    machine is doing at that moment weighs on both."""
    from zoo.ops.kernel_choice import reference_kernels

    macs = counted_macs(build, inputs)
    module, args = build().eval(), inputs()

    with torch.inference_mode(), reference_kernels() if path == "reference" else nullcontext():
        gemm = gemm or gemm_rate()
        times = time_unit(lambda: module(*args), torch.device("cpu"), min_time=0.0, min_runs=repeats, max_runs=repeats)
    return BlockTiming(name, tokens, macs, statistics.median(times), gemm, path)


def _grid(res: str) -> tuple[int, int]:
    """Latent token grid of a T2MD image resolution 'WxH' or 'S' (VAE /8, patch 2)."""
    w, h = (int(v) for v in (res.split("x") if "x" in res else (res, res)))
    return h // 16, w // 16


def t2md_blocks(
    res: str,
    repeats: int = 1,
    parts: tuple[str, ...] = ("block",),
    kinds=("SA", "HM", "WM"),
    paths: tuple[str, ...] = ("fast",),
    gemm: float | None = None,
) -> list[BlockTiming]:
    """Full-width T2MD/PixArt blocks (``part`` "block" = the whole T2I block, "mixer" = its token mixer) at
    the token grid of ``res``. ``paths``: "fast" (this code) and/or "reference" (the earlier code path:
    projections per direction, PyTorch SSD and conv)."""
    from zoo.models.t2md import T2IBlock

    h, w = _grid(res)
    tokens = h * w
    mamba_kwargs = dict(d_state=256, expand=2, headdim=64)
    out = []
    for path in paths:
        for kind in kinds:
            for part in parts:
                shared = path == "fast"

                def build(kind=kind, shared=shared):
                    return T2IBlock(T2MD_WIDTH, T2MD_HEADS, kind, 4.0, True, mamba_kwargs, shared)

                if part == "block":

                    def inputs():
                        d = T2MD_WIDTH
                        return (
                            torch.randn(1, tokens, d),
                            torch.randn(1, 6 * d),
                            torch.randn(1, CAPTION_TOKENS, d),
                            None,
                            h,
                            w,
                        )

                    make = build
                else:

                    def make(build=build, kind=kind):
                        block = build()
                        return block.attn if kind == "SA" else _Grid(block.mamba, h, w)

                    def inputs():
                        return (torch.randn(1, tokens, T2MD_WIDTH),)

                if path == "reference" and kind == "SA":
                    continue  # attention has no earlier path
                out.append(_time_module(f"t2md {kind} {part}", make, inputs, tokens, gemm, repeats, path))
    return out


class _Grid(nn.Module):
    """A mixer that needs the grid shape, callable with the tokens alone."""

    def __init__(self, mixer: nn.Module, h: int, w: int):
        super().__init__()
        self.mixer, self.h, self.w = mixer, h, w

    def forward(self, x):
        return self.mixer(x, self.h, self.w)


def compose_t2md(sa: BlockTiming, hm: BlockTiming, wm: BlockTiming) -> tuple[float, float]:
    """(measured, counted) PixArt-alpha / T2MD ratio from one block of each kind: 28 SA vs 4 SA + 12 HM + 12 WM."""
    measured = 28 * sa.seconds / (4 * sa.seconds + 12 * hm.seconds + 12 * wm.seconds)
    counted = 28 * sa.macs / (4 * sa.macs + 12 * hm.macs + 12 * wm.macs)
    return measured, counted


def composed_t2md_speedup(res: str, threads: int = 1, repeats: int = 1) -> dict:
    """PixArt-alpha / T2MD speedup composed from measured whole-block times at ``res`` (this device, CPU)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        timings = {t.name.split()[1]: t for t in t2md_blocks(res, repeats=repeats)}
    finally:
        torch.set_num_threads(previous)
    sa, hm, wm = (timings[k] for k in ("SA", "HM", "WM"))
    measured, counted = compose_t2md(sa, hm, wm)
    return {
        "composed_sa_block_s": round(sa.seconds, 3),
        "composed_hm_block_s": round(hm.seconds, 3),
        "composed_wm_block_s": round(wm.seconds, 3),
        "composed_measured_speedup": round(measured, 3),
        "composed_counted_ratio": round(counted, 3),
        "device": f"cpu ({threads} thread{'s' if threads > 1 else ''}; blocks composed)",
        "gemm_gmacs_per_s": round(sa.gemm_gmacs_per_s, 1),
    }


def mamba1_mixers(
    repeats: int = 1,
    paths: tuple[str, ...] = ("fast",),
    gemm: float | None = None,
    cases: tuple[str, ...] = ("dim-teng-h", "dim-mo-xl"),
) -> list[BlockTiming]:
    """Mamba-1 token mixers as the registry builds them: DiM-Teng-H (Vim v2, width 1536) at 64x64 tokens
    and DiM-Mo-XL (shared dt projection, width 1152) at 32x32 tokens."""
    from zoo.layers.mamba import Mamba

    specs = {
        "dim-teng-h": (1536, 64 * 64, dict(bimamba=True, divide_out=True)),
        "dim-mo-xl": (1152, 32 * 32, dict(bimamba=True, share_dt_proj=True)),
    }
    out = []
    for path in paths:
        for case in cases:
            width, tokens, kwargs = specs[case]
            out.append(
                _time_module(
                    f"{case} mamba1 mixer",
                    lambda w=width, k=kwargs: Mamba(w, **k),
                    lambda w=width, n=tokens: (torch.randn(1, n, w),),
                    tokens,
                    gemm,
                    repeats,
                    path,
                )
            )
    return out


def dim_mo_vs_dit(res: str, repeats: int = 1) -> dict:
    """DiT-XL/2 / DiM-Mo-XL/2 speedup composed from one measured block of each at ``res`` (latent /8, patch 2)."""
    from zoo.models.dim_mo import DiMMoBlock
    from zoo.models.dit import DiTBlock
    from zoo.registry import get_entry

    h, w = _grid(res)
    tokens = h * w
    dit_cfg, dim_cfg = get_entry("dit-xl/2").config, get_entry("dim-mo-xl/2").config
    dit_depth, dim_depth = dit_cfg.get("depth", 28), dim_cfg["depth"]
    width = dit_cfg.get("hidden_size", 1152)
    dit = _time_module(
        "dit-xl block",
        lambda: DiTBlock(width, dit_cfg.get("num_heads", 16)),
        lambda: (torch.randn(1, tokens, width), torch.randn(1, width)),
        tokens,
        None,
        repeats,
        "fast",
    )
    dim = _time_module(
        "dim-mo-xl block",
        lambda: DiMMoBlock(dim_cfg["hidden_size"]),
        lambda: (torch.randn(1, tokens, dim_cfg["hidden_size"]),),
        tokens,
        None,
        repeats,
        "fast",
    )
    return {
        "resolution": res,
        "tokens": tokens,
        "dit_block": dit,
        "dim_block": dim,
        "measured_speedup": dit_depth * dit.seconds / (dim_depth * dim.seconds),
        "counted_ratio": dit_depth * dit.macs / (dim_depth * dim.macs),
    }

"""Training step of a Mamba model against its attention baseline at equal width and depth, beside their counted
MAC ratio (issue #29's target: the time ratio within 10% of the MAC ratio, so a Mamba block costs on the CPU
what its arithmetic says, in training as in inference).

Pairs, at the ablation presets' shapes (one thread, batch 32):
- DiM-Teng (``teng`` tables, ``cpu-learn``: width 96, 9 blocks, patch 2, 16 px) against a DiT of the same width,
  depth and patch (3 heads of 32; its 4 input channels, as registered, against DiM's 3: only the patch
  embedding differs, and the MAC count includes it);
- T2MD (``t2md-table1``, ``cpu``: width 128, 8 blocks (SA-HM-WM-HM)x2, patch 4, 32 px) against its teacher
  PixArt-alpha at the same size (SAx8).

One step = forward, the mean square of the output as the loss, backward, AdamW (``bench.latency``'s step);
its MACs are 3x the forward's (counted by FlopCounterMode on the inputs timed), so the MAC ratio of two steps
is their forward MAC ratio. Both models of a pair are timed alternately in one run, and the fp32 GEMM rate
is measured beside them for the share-of-peak column.

    python scripts/bench_train_blocks.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.latency import _train_step
from bench.timer import gemm_rate, time_unit
from zoo.ops._extension import vector_isa
from zoo.registry import create_model

_T2MD_CPU = {
    "input_size": 32,
    "patch_size": 4,
    "hidden_size": 128,
    "num_heads": 4,
    "caption_channels": 64,
    "caption_tokens": 8,
    "depth": 8,
}
PAIRS = [
    (
        "DiM-Teng cpu-learn",
        ("dim-teng-s/2-cifar10", {"hidden_size": 96, "depth": 9, "patch_size": 2, "input_size": 16}),
        (
            "dit-s/2",
            {"hidden_size": 96, "depth": 9, "num_heads": 3, "patch_size": 2, "input_size": 16},
        ),
        16,
    ),
    (
        "T2MD cpu",
        ("t2md", {**_T2MD_CPU, "d_state": 16, "headdim": 32, "layout": "(SA-HM-WM-HM)x2"}),
        ("pixart-alpha-xl/2", {**_T2MD_CPU, "layout": "SAx8"}),
        32,
    ),
]


def step_seconds(name: str, overrides: dict, res: int, batch: int, min_time: float) -> tuple[float, float]:
    """(median seconds of one training step, forward MACs of the batch) of ``name`` with ``overrides``."""
    torch.manual_seed(0)
    model = create_model(name, **overrides).train()
    channels = model.in_channels
    x = torch.randn(batch, channels, res, res)
    t = torch.randint(0, 1000, (batch,))
    if "caption_tokens" in overrides:  # text models: caption embeddings (B, tokens, channels)
        y = torch.randn(batch, overrides["caption_tokens"], overrides["caption_channels"])
    else:
        y = torch.randint(0, getattr(model, "num_classes", 1) or 1, (batch,))
    with FlopCounterMode(display=False) as counter, torch.no_grad():  # zoo ops register their FLOP formulas
        model(x, t, y)
    macs = counter.get_total_flops() / 2
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    unit = lambda: _train_step(model, optimizer, x, t, y, torch.device("cpu"), torch.float32)  # noqa: E731
    return statistics.median(time_unit(unit, torch.device("cpu"), min_time=min_time)), macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--min-time", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two models this many times")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gemm = gemm_rate() * 1e9
    print(f"1 thread, vector path {vector_isa()}, fp32 GEMM {gemm / 1e9:.1f} GMAC/s, batch {args.batch}")
    print("| pair | Mamba step s | attention step s | time ratio | MAC ratio | time / MAC ratio | within 10% |")
    print("|---|---|---|---|---|---|---|")
    for label, (m_name, m_over), (a_name, a_over), res in PAIRS:
        m_times, a_times = [], []
        for _ in range(args.repeats):
            m_s, m_macs = step_seconds(m_name, m_over, res, args.batch, args.min_time)
            a_s, a_macs = step_seconds(a_name, a_over, res, args.batch, args.min_time)
            m_times.append(m_s)
            a_times.append(a_s)
        m_s, a_s = min(m_times), min(a_times)
        time_ratio, mac_ratio = m_s / a_s, m_macs / a_macs
        share = (3 * m_macs / m_s / gemm, 3 * a_macs / a_s / gemm)
        print(
            f"| {label} ({m_name} / {a_name}; GEMM share {share[0]:.0%} / {share[1]:.0%}) | {m_s:.3f} | {a_s:.3f} "
            f"| {time_ratio:.2f} | {mac_ratio:.2f} | {time_ratio / mac_ratio:.2f} "
            f"| {abs(time_ratio / mac_ratio - 1) <= 0.10} |"
        )


if __name__ == "__main__":
    main()

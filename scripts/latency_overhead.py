"""How much the harness's timer adds: ``bench.latency.time_unit`` (the loop inside ``measure_latency``)
against ``torch.utils.benchmark`` on the same forward pass of the same model and inputs, measured side by side
in one run (alternating rounds, so drift hits both).

    python scripts/latency_overhead.py [--model dit-s/2] [--res 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.utils.benchmark as benchmark

from bench.inputs import example_inputs, parse_resolution
from bench.timer import time_unit
from zoo import get_entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dit-s/2")
    parser.add_argument("--res", default="256")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    res = parse_resolution(args.res)
    entry = get_entry(args.model)
    model = entry.build().eval()
    x, t, y = example_inputs(entry, res, model.patch_size, device="cpu")
    x = torch.randn_like(x)
    y = None if y is None else torch.zeros_like(y)

    def forward() -> None:
        with torch.inference_mode():
            model(x, t, y)

    ours, reference = [], []
    for _ in range(args.rounds):
        ours.append(statistics.median(time_unit(forward, torch.device("cpu"), min_time=2.0)))
        timer = benchmark.Timer(stmt="forward()", globals={"forward": forward}, num_threads=1)
        reference.append(timer.blocked_autorange(min_run_time=2.0).median)
    a, b = statistics.median(ours), statistics.median(reference)
    print(
        f"{args.model} @ {res}, 1 thread: bench.latency median {1e3 * a:.2f} ms, torch.utils.benchmark "
        f"{1e3 * b:.2f} ms, difference {100 * (a - b) / b:+.2f}% (rounds: ours {[round(1e3 * v, 2) for v in ours]}, "
        f"torch {[round(1e3 * v, 2) for v in reference]})"
    )


if __name__ == "__main__":
    main()

"""Block-level CPU efficiency of the Mamba paths beside attention, before and after, in one process.

Prints, per full-width block, the counted MACs, seconds, achieved GMAC/s and share of this CPU's fp32 GEMM
rate (measured in the same run), for the fast path ("fast") and the earlier code path ("reference":
per-direction projections, PyTorch SSD and conv, portable Mamba-1 kernel on channel-major copies), and the
PixArt-alpha / T2MD speedup composed from whole-block times (28 SA vs 4 SA + 12 HM + 12 WM) beside the
counted MAC ratio. Also the Mamba-1 mixers of DiM-Teng-H (64x64 tokens) and DiM-Mo-XL (32x32 tokens), and
the composed DiM-Mo-XL/2 vs DiT-XL/2 speedup (28 blocks each; adaLN, MLP and embeddings identical... see
``--dim``).

    python scripts/bench_blocks.py                        # 2048x2048 and 3840x2160, 1 thread (~15 min)
    python scripts/bench_blocks.py --res 1024 --quick     # one size, fast path only
    python scripts/bench_blocks.py --json out.json
"""

from __future__ import annotations

import argparse
import json

import torch

from bench.block_timing import BlockTiming, compose_t2md, dim_mo_vs_dit, mamba1_mixers, t2md_blocks
from bench.timer import gemm_rate


def table(rows: list[BlockTiming]) -> str:
    lines = [
        "| block | path | tokens | GMACs | s | GMAC/s | GEMM peak GMAC/s | share of GEMM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.path} | {r.tokens} | {r.macs / 1e9:.1f} | {r.seconds:.3f} | "
            f"{r.gmacs_per_s:.1f} | {r.gemm_gmacs_per_s:.1f} | {100 * r.share_of_gemm:.0f}% |"
        )
    return "\n".join(lines)


def composed(rows: list[BlockTiming], path: str) -> tuple[float, float] | None:
    blocks = {
        r.name.split()[1]: r
        for r in rows
        if r.name.endswith("block") and r.path in (path, "fast") and (r.path == path or r.name.split()[1] == "SA")
    }
    if not all(k in blocks for k in ("SA", "HM", "WM")):
        return None
    return compose_t2md(blocks["SA"], blocks["HM"], blocks["WM"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--res", action="append", help="image resolution(s), default 2048x2048 and 3840x2160")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="fast path only, no Mamba-1 mixers")
    parser.add_argument("--json", help="also write every row to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = ("fast",) if args.quick else ("fast", "reference")
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); fp32 GEMM peak measured before each block "
        f"(now {gemm_rate():.1f} GMAC/s)"
    )
    everything = []
    for res in args.res or ["2048x2048", "3840x2160"]:
        rows = t2md_blocks(res, repeats=args.repeats, parts=("mixer", "block"), paths=paths)
        everything += rows
        print(f"\n## T2MD blocks at {res}\n\n{table(rows)}\n")
        for path in paths:
            result = composed(rows, path)
            if result:
                measured, counted = result
                print(f"composed PixArt-alpha / T2MD ({path}): measured {measured:.2f}x, counted MACs {counted:.2f}x")
    if not args.quick:
        rows = mamba1_mixers(repeats=max(args.repeats, 3), paths=paths)
        everything += rows
        print(f"\n## Mamba-1 mixers\n\n{table(rows)}")
        print("\n## DiM-Mo-XL/2 vs DiT-XL/2, composed from one block of each (depths of the registry models)\n")
        blocks = []
        for res in ("256", "512", "1024"):
            result = dim_mo_vs_dit(res, repeats=args.repeats)
            blocks += [result["dit_block"], result["dim_block"]]
            print(
                f"{res} px ({result['tokens']} tokens): measured DiT/DiM {result['measured_speedup']:.2f}x, "
                f"counted MACs {result['counted_ratio']:.2f}x"
            )
        print(f"\n{table(blocks)}")
        everything += blocks
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "rows": [r.row() for r in everything]}, f, indent=1)


if __name__ == "__main__":
    main()

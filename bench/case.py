"""One benchmark case in its own process: ``python -m bench.case --model M --res R --metric flops|latency|memory``
prints one JSON row (``R``: ``WxH``, or ``TxWxH`` for a clip of a video entry). ``bench sweep`` runs every
case this way, so an out-of-memory kill or a crash ends only that case."""

from __future__ import annotations

import argparse
import json

from bench.flops import count_flops
from bench.inputs import parse_resolution
from bench.latency import measure_latency
from bench.memory import measure_memory
from mambabench.errors import UserError


def run_case(
    model: str, res: str, metric: str, batch: int, device: str, dtype: str, threads: int, min_time: float
) -> dict:
    resolution = parse_resolution(res)
    if metric == "flops":
        c = count_flops(model, resolution, batch)
        return {
            "gmacs": c.macs / 1e9,
            "gflops": c.flops / 1e9,
            "params_m": c.params / 1e6,
            "tokens": c.tokens,
            "seq_len": c.seq_len,
        }
    if metric in ("latency", "train"):
        r = measure_latency(
            model, resolution, batch, device, dtype, threads, min_time=min_time, train=metric == "train"
        )
        backends = ";".join(f"{k}={v}" for k, v in sorted(r.backends.items()))
        return {
            "median_ms": 1e3 * r.median_s,
            "iqr_ms": 1e3 * r.iqr_s,
            "min_ms": 1e3 * r.min_s,
            "samples_per_s": r.samples_per_s,
            "runs": r.runs,
            "backends": backends,
        }
    if metric == "memory":
        m = measure_memory(model, resolution, batch, device, dtype, threads).as_dict()
        return {
            k: m[k]
            for k in (
                "baseline_mb",
                "inference_peak_mb",
                "train_peak_mb",
                "inference_delta_mb",
                "train_delta_mb",
                "inference_estimate_mb",
                "train_estimate_mb",
                "source",
            )
        }
    raise UserError(f"unknown metric {metric!r}: flops, latency, train or memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--res", required=True, nargs="+", help="One or more sizes (flops: one JSON line each).")
    parser.add_argument("--metric", required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-time", type=float, default=1.0)
    a = parser.parse_args()
    if len(a.res) > 1 and a.metric != "flops":
        parser.error("several --res values only with --metric flops (latency and memory need a fresh process each)")
    for res in a.res:
        try:
            row = run_case(a.model, res, a.metric, a.batch, a.device, a.dtype, a.threads, a.min_time)
        except UserError as error:  # e.g. a size the model cannot take: reported per size, the others go on
            if len(a.res) == 1:
                raise
            row = {"_error": f"UserError: {error}"}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

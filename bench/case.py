"""One benchmark case in its own process: ``python -m bench.case --model M --res R --metric flops|latency``
prints one JSON row. ``bench sweep`` runs every case this way, so an out-of-memory kill or a crash ends
only that case."""

from __future__ import annotations

import argparse
import json

from bench.flops import count_flops
from bench.inputs import parse_resolution
from bench.latency import measure_latency


def run_case(model: str, res: str, metric: str, batch: int, device: str, dtype: str, threads: int,
             min_time: float) -> dict:  # fmt: skip
    resolution = parse_resolution(res)
    if metric == "flops":
        c = count_flops(model, resolution, batch)
        return {"gmacs": c.macs / 1e9, "gflops": c.flops / 1e9, "params_m": c.params / 1e6,
                "tokens": c.input_shape[2] * c.input_shape[3] // c.patch_size**2}  # fmt: skip
    if metric == "latency":
        r = measure_latency(model, resolution, batch, device, dtype, threads, min_time=min_time)
        backends = ";".join(f"{k}={v}" for k, v in sorted(r.backends.items()))
        return {"median_ms": 1e3 * r.median_s, "iqr_ms": 1e3 * r.iqr_s, "min_ms": 1e3 * r.min_s,
                "samples_per_s": r.samples_per_s, "runs": r.runs, "backends": backends}  # fmt: skip
    raise ValueError(f"unknown metric {metric!r}: flops or latency")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--res", required=True)
    parser.add_argument("--metric", required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-time", type=float, default=1.0)
    a = parser.parse_args()
    print(json.dumps(run_case(a.model, a.res, a.metric, a.batch, a.device, a.dtype, a.threads, a.min_time)))


if __name__ == "__main__":
    main()

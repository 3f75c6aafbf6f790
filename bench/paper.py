"""The papers' cost tables beside ours: what each paper reports, what we count (and measure, on request).

- ``t2md-table3``: T2MD vs its all-self-attention twin (PixArt-alpha XL/2) at batch 1, 2048x2048 and
  3840x2160; the paper's speedups on an H100 are 1.5x and 2.1x. Ours: the ratio of counted MACs, and with
  ``measure`` the ratio of measured forward latencies on the chosen device.
- ``mo-table4``: DiM-XL/2 vs DiT-XL/2 "GFLOPs" (thop) at 256..2048. Their DiT numbers grow 4x per doubling
  of the side, i.e. linearly in tokens: thop does not see the attention matmuls (functional calls). Ours
  counts them; we also show our count without the attention term, the one comparable to theirs.
- ``teng-table1``: parameters and GFLOPs of DiM S/L/H at a 32x32 input (batch 1, no autoencoder).
- ``teng-fig3``: where DiM-H/2 becomes cheaper than U-ViT-H/2 as the resolution grows (the paper's Fig. 3
  measures speed on an H800 and sees the crossover near 1280x1280); counted MACs always, latency with
  ``measure``.
- ``dig-claims``: DiG's cost claims (Zhu et al., abstract): DiG-S/2 trains 2.5x faster than DiT-S/2 at 1792 px,
  and DiG-XL/2 runs 1.8x faster than DiT-XL/2 with FlashAttention-2 at 2048 px (GPU). Ours: the ratio of
  counted forward MACs, and with ``measure`` the ratio of measured forward latencies (on a CPU only for the
  S/2 pair: the XL/2 forwards at 2048 px take minutes each there).
- ``sana-claims``: SANA's cost claims (Xie et al. 2024, arXiv 2410.10629): parameters, throughput, latency and
  speed-up over FLUX-dev of Sana-0.6B / 1.6B, PixArt-Sigma and FLUX-dev at 1024 and 4096 px on an A100 (Table 14),
  and the MACs of its block ablation at 1024 px (Table 8). Ours: parameters and forward MACs of the registry's
  sana and pixart entries at the same resolution, PixArt / model MAC ratios beside the paper's throughput ratios;
  with ``measure``, on a CPU one full-width block of each model timed at that token grid and composed by depth.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.flops import count_flops
from bench.inputs import parse_resolution


def _gmacs(model: str, res: str) -> tuple[float, float]:
    """(GMACs, GMACs without the attention QK^T/AV term) of one forward at batch 1."""
    count = count_flops(model, parse_resolution(res))
    return count.macs / 1e9, (count.flops - count.by_category.get("attention", 0)) / 2e9


def _latency_ms(model: str, res: str, device: str, dtype: str, threads: int) -> float:
    from bench.latency import measure_latency

    return (
        1e3
        * measure_latency(model, parse_resolution(res), 1, device, dtype, threads, min_time=0.5, min_runs=3).median_s
    )


def t2md_table3(measure: bool = False, device: str = "cpu", dtype: str = "float32", threads: int = 1) -> list[dict]:
    paper = {"2048x2048": (2.8, 4.2, 1.5), "3840x2160": (6.5, 13.6, 2.1)}
    rows = []
    for res, (t2md_s, sa_s, speedup) in paper.items():
        ours, _ = _gmacs("t2md", res)
        per_direction = count_flops("t2md", parse_resolution(res), shared_projections=False).macs / 1e9
        attention, _ = _gmacs("pixart-alpha-xl/2", res)
        row = {
            "resolution": res,
            "paper_t2md_latency_s": t2md_s,
            "paper_sa_latency_s": sa_s,
            "paper_speedup": speedup,
            "t2md_gmacs": round(ours, 1),
            "sa_gmacs": round(attention, 1),
            "counted_mac_ratio": round(attention / ours, 3),
            "counted_mac_ratio_per_direction_proj": round(attention / per_direction, 3),
        }
        if measure and device == "cpu":  # whole models take hours here: time one block of each kind instead
            from bench.block_timing import composed_t2md_speedup

            row.update(composed_t2md_speedup(res, threads))
        elif measure:
            a, b = (_latency_ms(m, res, device, dtype, threads) for m in ("t2md", "pixart-alpha-xl/2"))
            row.update(
                t2md_latency_ms=round(a, 1),
                sa_latency_ms=round(b, 1),
                measured_speedup=round(b / a, 3),
                device=device,
                dtype=dtype,
            )
        rows.append(row)
    return rows


def mo_table4(**_) -> list[dict]:
    paper = {"256": (343.28, 294.58), "512": (1371.08, 1175.7), "1024": (5482.28, 4700.17), "2048": (None, 18798.04)}
    rows = []
    for res, (dit_paper, dim_paper) in paper.items():
        dit, dit_no_attn = _gmacs("dit-xl/2", res)
        dim, dim_no_attn = _gmacs("dim-mo-xl/2", res)
        rows.append(
            {
                "resolution": res,
                "paper_dit_gflops": dit_paper if dit_paper else "OOM",
                "paper_dim_gflops": dim_paper,
                "dit_gmacs": round(dit, 1),
                "dit_gmacs_no_attention": round(dit_no_attn, 1),
                "dim_gmacs": round(dim, 1),
                "dim_gmacs_no_attention": round(dim_no_attn, 1),
                "paper_dit_over_dim": round(dit_paper / dim_paper, 3) if dit_paper else None,
                "ours_dit_over_dim": round(dit / dim, 3),
            }
        )
    return rows


def teng_table1(**_) -> list[dict]:
    import torch

    from zoo.registry import get_entry

    paper = {"dim-teng-s/2-cifar10": ("S", 50, 12), "dim-teng-l/2": ("L", 380, 94), "dim-teng-h/2": ("H", 860, 210)}
    rows = []
    for model, (size, params_m, gflops) in paper.items():
        entry = get_entry(model)
        factor = entry.inputs.spatial_factor
        res = str(32 * factor)  # the paper counts at a 32x32 model input
        count = count_flops(model, parse_resolution(res))
        no_pads = count_flops(model, parse_resolution(res), pad_tokens=False)
        with torch.device("meta"):
            params = sum(p.numel() for p in entry.build().parameters()) / 1e6
        rows.append(
            {
                "model": model,
                "size": size,
                "paper_params_m": params_m,
                "params_m": round(params, 2),
                "paper_gflops": gflops,
                "gmacs": round(count.macs / 1e9, 1),
                "gmacs_without_pad_tokens": round(no_pads.macs / 1e9, 1),
                "ours_over_paper": round(count.macs / 1e9 / gflops, 3),
            }
        )
    return rows


def teng_fig3(measure: bool = False, device: str = "cpu", dtype: str = "float32", threads: int = 1) -> list[dict]:
    rows = []
    for side in (256, 512, 768, 1024, 1280, 1536, 2048):
        res = str(side)
        dim, _ = _gmacs("dim-teng-h/2", res)
        uvit, _ = _gmacs("uvit-h/2", res)
        row = {
            "resolution": res,
            "dim_gmacs": round(dim, 1),
            "uvit_gmacs": round(uvit, 1),
            "uvit_over_dim_macs": round(uvit / dim, 3),
            "cheaper_by_macs": "DiM" if dim < uvit else "U-ViT",
        }
        if measure:
            a, b = (_latency_ms(m, res, device, dtype, threads) for m in ("dim-teng-h/2", "uvit-h/2"))
            row.update(
                dim_latency_ms=round(a, 1),
                uvit_latency_ms=round(b, 1),
                faster="DiM" if a < b else "U-ViT",
                device=device,
            )
        rows.append(row)
    return rows


def dig_claims(measure: bool = False, device: str = "cpu", dtype: str = "float32", threads: int = 1) -> list[dict]:
    claims = [
        ("1792", "dig-s/2", "dit-s/2", 2.5, "training speed"),
        ("2048", "dig-xl/2", "dit-xl/2", 1.8, "speed, vs FA-2"),
    ]
    rows = []
    for res, dig, dit, speedup, what in claims:
        dig_macs, _ = _gmacs(dig, res)
        dit_macs, _ = _gmacs(dit, res)
        row = {
            "resolution": res,
            "model": dig,
            "baseline": dit,
            "paper_claim": what,
            "paper_speedup": speedup,
            "dig_gmacs": round(dig_macs, 1),
            "dit_gmacs": round(dit_macs, 1),
            "counted_mac_ratio": round(dit_macs / dig_macs, 3),
        }
        if measure and (device != "cpu" or dig == "dig-s/2"):
            a, b = (_latency_ms(m, res, device, dtype, threads) for m in (dig, dit))
            row.update(
                dig_latency_ms=round(a, 1),
                dit_latency_ms=round(b, 1),
                measured_speedup=round(b / a, 3),
                device=device,
                dtype=dtype,
            )
        rows.append(row)
    return rows


# SANA (Xie et al. 2024, arXiv 2410.10629; read in its ar5iv rendering). Table 14 ("Comparison of throughput and
# latency under different resolutions. All models tested on an A100 GPU with FP16 precision"; it does not restate
# the batch sizes, Table 7's are throughput at batch 16, latency at batch 1 and 20 steps): paper name -> (params in
# B, throughput /s, latency s, speed-up over FLUX-dev, a throughput ratio) per resolution. Table 14's header says
# "Latency(ms)" but its values are seconds (FLUX-dev 23 at 1024 px = Table 7's 23.0 s). The parameters (B) are
# Table 7's "Params (B)" column (the same for 1024 and 4096 px; Table 7 reports 512/1024 only).
_SANA_TABLE14 = {
    "1024": {
        "Sana-0.6B": (0.6, 1.72, 0.9, 43.0),  # Table 14, 1024 x 1024; params: Table 7
        "Sana-1.6B": (1.6, 1.01, 1.2, 25.2),  # Table 14, 1024 x 1024; params: Table 7
        "PixArt-Sigma": (0.6, 0.40, 2.7, 10.0),  # Table 14, 1024 x 1024; params: Table 7
        "FLUX-dev": (12.0, 0.04, 23.0, 1.0),  # Table 14, 1024 x 1024; params: Table 7
    },
    "4096": {
        "Sana-0.6B": (0.6, 0.104, 9.6, 104.0),  # Table 14, 4096 x 4096
        "Sana-1.6B": (1.6, 0.066, 5.9, 66.0),  # Table 14, 4096 x 4096 (as printed: 5.9 s, below Sana-0.6B's 9.6 s)
        "PixArt-Sigma": (0.6, 0.005, 186.0, 5.0),  # Table 14, 4096 x 4096
        "FLUX-dev": (12.0, 0.001, 1023.0, 1.0),  # Table 14, 4096 x 4096
    },
}
# Table 8 ("Performance of Sana block design space", 1024 px, A100 FP16; "MACs: Multi-accumulate operations for a
# single forward pass"), in T: "FullAttn & FFN" on AE-F8C4P2 (PixArt's DiT) and "LinearAttn & MixFFN" on
# AE-F32C32P1 (Sana-0.6B's blocks).
_SANA_TABLE8_TMACS = {"PixArt-Sigma": 6.48, "Sana-0.6B": 1.08}
# The registry entry counted for each paper model at each resolution (None: no entry). PixArt-Sigma has the
# transformer of PixArt-alpha (the 1024-MS entry); the 4K Sana-1.6B is its own entry (sin-cos positions).
_SANA_ENTRIES = {
    "1024": {"Sana-0.6B": "sana-600m", "Sana-1.6B": "sana-1600m", "PixArt-Sigma": "pixart-alpha-xl/2-1024-ms"},
    "4096": {"Sana-0.6B": "sana-600m", "Sana-1.6B": "sana-1600m-4k", "PixArt-Sigma": "pixart-alpha-xl/2-1024-ms"},
}
_ONE_BLOCK = {"sana": dict(depth=1), "pixart": dict(depth=1, layout="SA")}  # overrides that build a single block


def composed_block_seconds(model: str, res: str, threads: int = 1) -> dict:
    """One full-width block of a text-to-image entry (SANA or PixArt: ``block(x, t6, caption, mask, h, w)``) timed
    on this CPU at the token grid of a square ``res``, and composed by the entry's depth (the embeddings and final
    layer left out)."""
    import torch

    from bench.block_timing import _time_module
    from zoo.registry import get_entry

    entry = get_entry(model)
    with torch.device("meta"):
        full = entry.build()
    depth, width = len(full.blocks), full.blocks[0].norm1.normalized_shape[0]
    side = parse_resolution(res).height // (entry.inputs.spatial_factor * full.patch_size)
    tokens = side * side

    def build():
        return entry.build(**_ONE_BLOCK[entry.family]).blocks[0]

    def inputs():
        caption = torch.randn(1, entry.inputs.caption_tokens, width)
        return torch.randn(1, tokens, width), torch.randn(1, 6 * width), caption, None, side, side

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        block = _time_module(f"{model} block", build, inputs, tokens, None, 1, "fast")
    finally:
        torch.set_num_threads(previous)
    return {"block_s": block.seconds, "depth": depth, "composed_s": depth * block.seconds, "block_macs": block.macs}


def sana_claims(measure: bool = False, device: str = "cpu", dtype: str = "float32", threads: int = 1) -> list[dict]:
    from zoo.summary import count_parameters

    rows = []
    for res, papers in _SANA_TABLE14.items():
        entries = _SANA_ENTRIES[res]
        gmacs = {paper: _gmacs(model, res)[0] for paper, model in entries.items()}
        pixart_tp = papers["PixArt-Sigma"][1]
        timed = {}
        if measure and device == "cpu":  # whole PixArt forwards take hours at 4K here: compose one block of each
            timed = {paper: composed_block_seconds(model, res, threads) for paper, model in entries.items()}
        elif measure:
            timed = {
                paper: {"latency_ms": _latency_ms(model, res, device, dtype, threads)}
                for paper, model in entries.items()
            }
        for paper, (params_b, throughput, latency, speedup) in papers.items():
            model = entries.get(paper)
            row = {
                "resolution": res,
                "paper": paper,
                "model": model or "no entry",
                "paper_params_b": params_b,
                "params_m": round(count_parameters(model) / 1e6, 1) if model else "no entry",
                "paper_tp_per_s": throughput,
                "paper_latency_s": latency,
                "paper_x_flux": speedup,
                "paper_tp_over_pixart": round(throughput / pixart_tp, 2),
                "gmacs": round(gmacs[paper], 1) if model else "no entry",
                "pixart_macs_over_model": round(gmacs["PixArt-Sigma"] / gmacs[paper], 3) if model else "no entry",
            }
            if res == "1024" and paper in _SANA_TABLE8_TMACS:
                row["paper_t8_tmacs"] = _SANA_TABLE8_TMACS[paper]
                row["paper_t8_over_ours"] = round(_SANA_TABLE8_TMACS[paper] / (gmacs[paper] / 1e3), 2)
            if model and device == "cpu" and timed:
                t, pixart = timed[paper], timed["PixArt-Sigma"]
                row.update(
                    composed_block_s=round(t["block_s"], 3),
                    composed_s=round(t["composed_s"], 2),
                    composed_pixart_over_model=round(pixart["composed_s"] / t["composed_s"], 3),
                    device=f"cpu ({threads} thread{'s' if threads > 1 else ''}; blocks composed)",
                )
            elif model and timed:
                t, pixart = timed[paper], timed["PixArt-Sigma"]
                row.update(
                    latency_ms=round(t["latency_ms"], 1),
                    measured_pixart_over_model=round(pixart["latency_ms"] / t["latency_ms"], 3),
                    device=device,
                    dtype=dtype,
                )
            rows.append(row)
    return rows


def paper_measurements(name: str, rows: list[dict], device: str, dtype: str, threads: int) -> list:
    """Our numbers of a paper table as store rows (the paper's own columns, ``paper_*``, are constants and
    stay out): model ``paper:<name>`` or the row's model, one metric per numeric column."""
    from results.store import Measurement

    out = []
    for row in rows:
        model = row.get("model") or f"paper:{name}"
        for column, value in row.items():
            if column.startswith("paper_") or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            timed = column.endswith(("_ms", "_s", "speedup", "_per_s"))
            out.append(
                Measurement(
                    model,
                    column,
                    float(value),
                    "",
                    str(row.get("resolution", "")),
                    dtype=dtype if timed else "float32",
                    device=device if timed else "meta",
                    source=f"bench paper {name}",
                    variant=f"threads={threads}" if timed else "",
                    config={k: v for k, v in row.items() if isinstance(v, str)},
                )
            )
    return out


NOTES = {
    "sana-claims": "Paper: SANA (arXiv 2410.10629) Table 14 (A100, FP16; batch sizes as Table 7's: throughput at "
    "16, latency at 1 and 20 steps; the header says ms, the values are seconds; its speed-up is the throughput "
    "ratio to FLUX-dev), parameters from Table 7, block MACs from Table 8 (1024 px). Its headline claims: 106x "
    "faster than FLUX at 4K (Fig. 2, batch 1: Table 14's latencies 1023 s / 9.6 s; its throughput ratio is 104x) "
    "and 40x at 1K (Sec. 1, Fig. 4; Table 7: 39.5x, Table 14: 43.0x); Fig. 2 also has algorithm and system "
    "changes take a 4K image from 469 s to 9.6 s. Table 14 prints Sana-1.6B's 4K latency (5.9 s) below "
    "Sana-0.6B's (9.6 s) though its throughput is lower; shown as printed. Table 8's MACs are about twice our "
    "counts for both designs (6.48 T vs our PixArt 3.25 T, 1.08 T vs our Sana-0.6B 0.56 T): the paper does not "
    "say how it counts (a CFG batch of 2 would double them). Ours: forward MACs at batch 1 counted on the meta "
    "device; PixArt-Sigma is counted as the registry's PixArt-alpha 1024-MS transformer (the same DiT; Sigma's "
    "300 caption tokens and its key/value token compression at 4K are not modelled, so our 4K PixArt count is an "
    "upper bound); Sana-0.6B at 4K is sana-600m counted at 4096 px (no 0.6B 4K model was released). FLUX-dev has "
    "no registry entry. Not found in the paper, so not shown: MACs at 4K and MACs of FLUX; its memory and "
    "laptop claims are not compared. --measure on a CPU times one full-width block of each model at the token "
    "grid and multiplies by the depth (embeddings and final layer left out); at 4K the PixArt block takes about 8 "
    "minutes a run at one thread (a warm-up and a timed run), the whole --measure about 30 on a busy 2-core VM.",
    "dig-claims": "The paper's speed-ups are GPU measurements (training speed for S/2 at 1792 px; XL/2 at 2048 px "
    "against DiT with FlashAttention-2); ours are counted forward MACs (the GLA FLOPs as the chunked algorithm does "
    "them) and, with --measure, forward latencies on the chosen device. Its memory claim is not compared here.",
    "mo-table4": "Their DiT-XL/2 at 256 (343 'GFLOPs') is 2.9x DiT's own Table 4 (118.6 GFLOPs = our 118.6 GMACs): "
    "thop's convention differs from DiT's, so compare ratios. Their DiT/DiM ratio is constant (1.166) because thop "
    "missed the attention matmuls; with them, DiT/DiM grows with resolution. Our DiM-XL/2 is a derived design "
    "(no public code; see zoo/models/dim_mo.py).",
    "teng-table1": "Our counts are 1.49x the paper's for S, L and H alike; without the end-of-line padding tokens "
    "they come to 1.08x (S) and 1.06x (L, H): the paper's count seems to leave the pads out.",
    "teng-fig3": "Registry U-ViT-H/2 has 501M parameters (the paper scaled both models to ~0.9B for Fig. 3); MACs "
    "are not latency: the paper's crossover is measured on an H800.",
    "t2md-table3": "Counted MACs with in_proj/out_proj computed once for both scan directions (the same function): "
    "1.80x / 2.55x; with the projections per direction, as the paper's blocks are usually read, 1.46x / 2.12x, which "
    "tracks the paper's H100 speedups (1.5x, 2.1x). --measure on a CPU times one block of each kind at full width "
    "and composes them as the models are built (28 SA vs 4 SA + 12 HM + 12 WM; embeddings and final layer left "
    "out, <0.5% of the MACs).",
}

COMPARISONS: dict[str, tuple[Callable[..., list[dict]], str]] = {
    "sana-claims": (
        sana_claims,
        "SANA (Xie et al.): Sana-0.6B/1.6B vs PixArt-Sigma and FLUX-dev at 1024 and 4096 px (paper: A100, Table 14)",
    ),
    "dig-claims": (dig_claims, "DiG (Zhu et al.): DiG vs DiT at 1792 and 2048 px (paper: GPU speed-ups 2.5x, 1.8x)"),
    "t2md-table3": (t2md_table3, "T2MD Table 3: T2MD vs all-SA twin at batch 1 (paper: H100 latency)"),
    "mo-table4": (mo_table4, "DiM (Mo & Tian) Table 4: DiM-XL/2 vs DiT-XL/2 GFLOPs (paper: thop; ours: MACs)"),
    "teng-table1": (teng_table1, "DiM (Teng et al.) Table 1: parameters and GFLOPs at a 32x32 input"),
    "teng-fig3": (teng_fig3, "DiM (Teng et al.) Fig. 3: DiM-H/2 vs U-ViT-H/2 as resolution grows (paper: ~1280px)"),
}

"""DiM of Mo & Tian (2024): Tables 2, 5, 6, 7 on ImageNet 256 latents (DiT's protocol: AdamW 1e-4, batch
256, EMA 0.9999, FID-50K with 250 DDPM steps, CFG 1.5 unless a row says otherwise)."""

from __future__ import annotations

from ablations.tables.spec import Preset, TableSpec, Variant, cpu_preset, smoke_preset

_PAPER = "Mo & Tian 2024 (DiM)"
_METRICS = ("fid", "sfid", "is", "precision", "recall")
_NOTE = "FID of the EMA model (lower is better); class-conditional"
_SMALL = {"num_classes": 10}
_SMOKE = {  # per registry name: the smoke-scale model (width / 12, 2-3 blocks)
    "dit-b/4": {"hidden_size": 64, "depth": 2, "num_heads": 4, **_SMALL},
    "dim-mo-s/4": {"hidden_size": 32, "depth": 2, **_SMALL},
    "dim-mo-b/4": {"hidden_size": 64, "depth": 2, **_SMALL},
    "dim-mo-b/2": {"hidden_size": 64, "depth": 2, **_SMALL},
    "dim-mo-b/8": {"hidden_size": 64, "depth": 2, **_SMALL},
    "dim-mo-l/4": {"hidden_size": 96, "depth": 4, **_SMALL},
    "dim-mo-xl/4": {"hidden_size": 96, "depth": 5, **_SMALL},
}
_CPU = {  # about width / 6 and depth / 4 (patch sizes kept), CIFAR-10's 10 classes
    "dit-b/4": {"hidden_size": 128, "depth": 3, "num_heads": 4, **_SMALL},
    "dim-mo-s/4": {"hidden_size": 64, "depth": 4, **_SMALL},
    "dim-mo-b/4": {"hidden_size": 128, "depth": 4, **_SMALL},
    "dim-mo-b/2": {"hidden_size": 128, "depth": 4, **_SMALL},
    "dim-mo-b/8": {"hidden_size": 128, "depth": 4, **_SMALL},
    "dim-mo-l/4": {"hidden_size": 160, "depth": 8, **_SMALL},
    "dim-mo-xl/4": {"hidden_size": 192, "depth": 9, **_SMALL},
}
_CPU_COST = {  # from scripts/estimate_presets.py --preset cpu (2 threads); rerun it to update
    "mo-table2": "~1.7 h on 2 CPU cores (2 runs; measured)",
    "mo-table5": "~3.1 h on 2 CPU cores (3 runs; measured)",
    "mo-table6": "~5.2 h on 2 CPU cores (4 runs; measured)",
    "mo-table7": "~1.2 h on 2 CPU cores (2 runs; measured)",
}  # scripts/estimate_presets.py


def _presets(table: str, checkpoints: dict[str, float] | None = None) -> dict[str, Preset]:
    steps = checkpoints or {"final": 1.0}
    return {
        "smoke": smoke_preset(
            cfg=1.5,
            space="pixel",
            model_overrides=_SMOKE,
            checkpoints=steps,
            deviations="built-in shapes in pixel space at 16 px instead of ImageNet 256 latents; tiny widths; "
            "30 steps; FID of 16 images",
            cost="1-2 minutes on 2 CPU cores",
        ),
        "cpu": cpu_preset(
            data="cifar10",
            lr=4e-4,
            cfg=1.5,
            space="pixel",
            model_overrides=_CPU,
            checkpoints=steps,
            deviations="CIFAR-10 (10 classes) in pixel space at 32 px instead of ImageNet 256 latents; width / 6, "
            "depth / 4; 3K steps of batch 32; FID of 1K samples (DPM-Solver 25 steps) against 5K training images",
            cost=_CPU_COST[table],
        ),
        "paper": Preset(
            "paper",
            ema_warmup=False,
            data="imagenet",
            res=256,
            steps=400_000,
            batch=256,
            lr=1e-4,
            ema=0.9999,
            n_samples=50_000,
            ref_n=50_000,
            sampler="ddpm",
            sample_steps=250,
            cfg=1.5,
            checkpoints=steps,
            needs_vae=True,
            deviations="reference statistics from ImageNet train images through our pipeline (pass --ref with "
            "ADM's VIRTUAL_imagenet256_labeled.npz for the papers' reference)",
            cost="GPU-hours not reported by the paper",
        ),
    }


def _row(fid, sfid, is_, p, r):
    return dict(zip(_METRICS, (fid, sfid, is_, p, r), strict=True))


_STEPS = {"100K": 0.25, "200K": 0.5, "300K": 0.75, "400K": 1.0}
TABLE2 = TableSpec(
    id="mo-table2",
    paper=_PAPER,
    title="Table 2: DiT-B/4 vs DiM-B/4 over training steps (CFG 1.5)",
    variants=(
        Variant(
            "dit-b4",
            "DiT-B/4",
            "dit-b/4",
            paper={
                "100K": _row(79.45, 14.62, 17.41, 0.31, 0.41),
                "200K": _row(59.02, 11.26, 25.01, 0.39, 0.49),
                "300K": _row(49.89, 10.38, 30.69, 0.44, 0.52),
                "400K": _row(44.43, 9.95, 35.03, 0.47, 0.53),
            },
        ),
        Variant(
            "dim-b4",
            "DiM-B/4",
            "dim-mo-b/4",
            reference=True,
            paper={
                "100K": _row(74.69, 16.13, 19.38, 0.34, 0.39),
                "200K": _row(53.69, 12.14, 29.42, 0.44, 0.50),
                "300K": _row(43.57, 10.83, 37.47, 0.49, 0.51),
                "400K": _row(37.62, 10.20, 43.93, 0.52, 0.53),
            },
        ),
    ),
    presets=_presets("mo-table2", _STEPS),
    paper_metrics=_METRICS,
    note=_NOTE,
)

# cpu-learn for Table 5: Teng's cpu-learn regime (issue #28; results/reports/teng-cpu-learning-preset.md) with
# DiM-B at width 96, 6 blocks, its three patch sizes kept (16 px: 2x2, 4x4, 8x8 tokens), class-conditional with
# CFG 1.5 as the paper; 3 seeds run: results/reports/mo-table5-cpu-learn.md
_LEARN_TABLE5 = cpu_preset(
    "cpu-learn",
    data="builtin",
    res=16,
    steps=2400,
    lr=2e-3,
    ref_n=2000,
    cfg=1.5,
    space="pixel",
    model_overrides={f"dim-mo-b/{p}": {"hidden_size": 96, "depth": 6, **_SMALL} for p in (2, 4, 8)},
    deviations="built-in shapes in pixel space at 16 px instead of ImageNet 256 latents; DiM-B at width 96, 6 "
    "blocks (paper: 768, 12); 2.4K steps of batch 32 at lr 2e-3 (paper: 400K of 256 at 1e-4); EMA 0.999 with "
    "warm-up; FID of 1K samples (DPM-Solver++ 25 steps) against 2K training images (paper: 50K)",
    cost="training steps of 0.05 / 0.10 / 0.32 s for B/8, B/4, B/2 (one thread, CPU time, measured): ~2 / 4 / 13 "
    "min of training per run plus ~7 min sampling and FID, ~40 min of one core per seed for the three rows",
)

TABLE5 = TableSpec(
    id="mo-table5",
    paper=_PAPER,
    title="Table 5: patch size of DiM-B (400K steps, CFG 1.5); paper GFLOPs: B/8 3.83, B/4 14.71, B/2 58.23",
    variants=(
        Variant("b8", "DiM-B/8", "dim-mo-b/8", paper={"final": _row(96.10, 27.27, 15.20, 0.27, 0.30)}),
        Variant("b4", "DiM-B/4", "dim-mo-b/4", reference=True, paper={"final": _row(37.62, 10.20, 43.93, 0.52, 0.53)}),
        Variant("b2", "DiM-B/2", "dim-mo-b/2", paper={"final": _row(15.39, 5.76, 88.25, 0.69, 0.52)}),
    ),
    presets={**_presets("mo-table5"), "cpu-learn": _LEARN_TABLE5},
    paper_metrics=_METRICS,
    note=_NOTE,
)

TABLE6 = TableSpec(
    id="mo-table6",
    paper=_PAPER,
    title="Table 6: model size at patch 4 (400K steps, CFG 1.5); paper params 33.71 / 134.37 / 473.73 / 673.82 M",
    variants=(
        Variant("s4", "DiM-S/4", "dim-mo-s/4", paper={"final": _row(71.03, 17.65, 21.54, 0.36, 0.41)}),
        Variant("b4", "DiM-B/4", "dim-mo-b/4", reference=True, paper={"final": _row(37.62, 10.2, 43.93, 0.52, 0.53)}),
        Variant("l4", "DiM-L/4", "dim-mo-l/4", paper={"final": _row(20.67, 7.44, 75.14, 0.63, 0.53)}),
        Variant("xl4", "DiM-XL/4", "dim-mo-xl/4", paper={"final": _row(17.26, 6.93, 86.62, 0.66, 0.53)}),
    ),
    presets=_presets("mo-table6"),
    paper_metrics=_METRICS,
    note=_NOTE,
)

TABLE7 = TableSpec(
    id="mo-table7",
    paper=_PAPER,
    title="Table 7: classifier-free guidance 1.0 vs 1.5 (400K steps); the two CFG rows of a model share one run",
    variants=(
        Variant(
            "dit-b4-cfg1",
            "DiT-B/4, CFG 1.0",
            "dit-b/4",
            cfg=1.0,
            paper={"final": _row(67.42, 12.62, 20.62, 0.37, 0.55)},
        ),
        Variant(
            "dim-b4-cfg1",
            "DiM-B/4, CFG 1.0",
            "dim-mo-b/4",
            cfg=1.0,
            paper={"final": _row(61.99, 13.23, 23.67, 0.40, 0.56)},
        ),
        Variant(
            "dit-b4-cfg1.5",
            "DiT-B/4, CFG 1.5",
            "dit-b/4",
            cfg=1.5,
            paper={"final": _row(44.43, 9.95, 35.03, 0.47, 0.53)},
        ),
        Variant(
            "dim-b4-cfg1.5",
            "DiM-B/4, CFG 1.5",
            "dim-mo-b/4",
            cfg=1.5,
            reference=True,
            paper={"final": _row(37.62, 10.20, 43.93, 0.52, 0.53)},
        ),
    ),
    presets=_presets("mo-table7"),
    paper_metrics=_METRICS,
    note=_NOTE,
)

TABLES = (TABLE2, TABLE5, TABLE6, TABLE7)

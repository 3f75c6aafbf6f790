"""DiM of Teng et al. (2024): Table 4 (architecture ablations) and Table 6 (scan patterns), CIFAR-10,
unconditional, DiM-S/2 (Sec. 4.5)."""

from __future__ import annotations

from ablations.tables.spec import Preset, TableSpec, Variant, cpu_preset, smoke_preset

_PAPER = "Teng et al. 2024 (DiM)"
_MODEL = "dim-teng-s/2-cifar10"
_CPU_COST = {  # from scripts/estimate_presets.py --preset cpu (2 threads); rerun it to update
    "teng-table4": "~4.5 h on 2 CPU cores (5 runs; measured)",
    "teng-table6": "~2.6 h on 2 CPU cores (3 runs; measured)",
}  # filled from scripts/estimate_presets.py
# cpu-learn: the regime search of issue #28 (results/reports/teng-cpu-learning-preset.md has every run)
_LEARN_STEPS = 2400
_LEARN_DEVIATIONS = (
    "built-in shapes at 16 px instead of CIFAR-10 at 32; width 96, 9 blocks, patch 2 (paper: 512, 25, patch 2); "
    "2.4K steps of batch 32 at lr 2e-3 (paper: 500K of 128 at 2e-4); EMA 0.999 with warm-up; FID of 1K samples "
    "(DPM-Solver++ 25 steps) against 2K training images (paper: 50K)"
)
_LEARN_COST = (
    "~40 min per run on one CPU core (2.4K steps 33.5 min, sampling 1K ~3 min, FID 1K 4 min; measured, with the "
    "other core busy; baseline FID 95 at seed 0); estimate_presets.py --threads 1: 1.9 h for Table 6's 3 runs, "
    "2.8 h for Table 4's 5, per seed"
)


def _presets(table: str) -> dict[str, Preset]:
    return {
        "smoke": smoke_preset(
            model_overrides={_MODEL: {"hidden_size": 64, "depth": 5}},
            deviations="built-in shapes at 16 px instead of CIFAR-10; width 64, 5 blocks; 30 steps; FID of 16 images",
            cost="about 1 minute on 2 CPU cores",
        ),
        "cpu": cpu_preset(
            data="cifar10",
            model_overrides={_MODEL: {"hidden_size": 96, "depth": 9, "patch_size": 4}},
            deviations="width 96, 9 blocks, patch 4 (paper: 512, 25, patch 2); 3K steps of batch 32 (paper: 500K of "
            "128); "
            "FID of 1K samples against 5K training images (paper: 50K)",
            cost=_CPU_COST[table],
        ),
        "cpu-builtin": cpu_preset(
            "cpu-builtin",
            data="builtin",
            steps=1200,
            ref_n=2000,
            model_overrides={_MODEL: {"hidden_size": 96, "depth": 9, "patch_size": 4}},
            deviations="the cpu preset on the built-in shapes (no download) instead of CIFAR-10, 1.2K steps "
            "instead of 3K, FID of 1K samples against 2K training images: sized so that 3 seeds of Table 6 and "
            "Table 4's long-skip row train in about 2 hours on 2 CPU cores (`--seeds 3 --jobs 2`)",
            cost="~16 min per run on one CPU core (1.2K steps 12 min, sampling 1.5 min, FID 3 min; measured)",
        ),
        "cpu-learn": cpu_preset(
            "cpu-learn",
            data="builtin",
            res=16,
            steps=_LEARN_STEPS,
            lr=2e-3,
            ref_n=2000,
            model_overrides={_MODEL: {"hidden_size": 96, "depth": 9, "patch_size": 2}},
            deviations=_LEARN_DEVIATIONS,
            cost=_LEARN_COST,
        ),
        "paper": Preset(
            "paper",
            ema_warmup=False,
            data="cifar10",
            res=32,
            steps=500_000,
            batch=128,
            lr=2e-4,
            ema=0.9999,
            n_samples=50_000,
            ref_n=50_000,
            sample_steps=50,
            adam_betas=(0.99, 0.999),
            weight_decay=0.03,
            deviations="DPM-Solver++(2M) 50 steps for sampling (U-ViT's CIFAR code integrates the SDE); "
            "discrete linear-beta DDPM schedule for the paper's VP SDE",
            cost="GPU-hours not reported by the paper (it trained on 8 A100-80G)",
        ),
    }


_NOTE = "FID of the EMA model against the training set of the preset (unconditional; lower is better)"
TEACHERLESS = dict(paper_metrics=("fid",), note=_NOTE)

TABLE4 = TableSpec(
    id="teng-table4",
    paper=_PAPER,
    title="Table 4: architecture ablations (MS scan patterns, LSC long skips, PT padding tokens, LFE local convs)",
    variants=(
        Variant("full", "MS + LSC + PT + LFE", _MODEL, paper={"final": {"fid": 2.92}}, reference=True),
        Variant("no-lfe", "without LFE", _MODEL, {"local_conv": False}, paper={"final": {"fid": 3.07}}),
        Variant("no-pt", "without PT", _MODEL, {"pad_tokens": False}, paper={"final": {"fid": 2.94}}),
        Variant("no-lsc", "without LSC", _MODEL, {"long_skip": False}, paper={"final": {"fid": 6.23}}),
        Variant(
            "no-ms", "without MS (row-major scan only)", _MODEL, {"scan_patterns": "1"}, paper={"final": {"fid": 17.60}}
        ),
    ),
    presets=_presets("teng-table4"),
    **TEACHERLESS,
)

TABLE6 = TableSpec(
    id="teng-table6",
    paper=_PAPER,
    title="Table 6: scan patterns",
    variants=(
        Variant("1234", "patterns 1 2 3 4", _MODEL, paper={"final": {"fid": 2.92}}, reference=True),
        Variant("12", "patterns 1 2", _MODEL, {"scan_patterns": "12"}, paper={"final": {"fid": 2.91}}),
        Variant("1", "pattern 1", _MODEL, {"scan_patterns": "1"}, paper={"final": {"fid": 17.60}}),
    ),
    presets=_presets("teng-table6"),
    **TEACHERLESS,
)

TABLES = (TABLE4, TABLE6)

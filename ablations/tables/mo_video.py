"""DiM of Mo & Tian (2024), Table 3: video generation on UCF-101, FVD (lower is better), DiM against Latte, each
without and with video-image joint training ("IMG").

The paper's protocol (Sec. 4.1): 16-frame clips of UCF-101 at a sampling interval, frames resized to 256x256,
Stable Diffusion 1.4's VAE, AdamW at 1e-4 without weight decay, EMA 0.9999, "the Latte model specifications";
FVD of 2,048 clips of 16 frames following StyleGAN-V (``ablations.fvd``). It gives no batch size, step count,
sampler or guidance scale for video: the paper preset says what we chose. Our rows run on the registry's
``latte-xl/2`` and ``dim-mo-video-xl/2``; the paper's other rows (other methods) are listed beside them.
"""

from __future__ import annotations

from ablations.fvd import FVD_CLIPS, FVD_FRAMES
from ablations.tables.spec import Preset, TableSpec, Variant, cpu_preset, smoke_preset
from ablations.video_train import LATTE_UCF101_IMAGES

_PAPER = "Mo & Tian 2024 (DiM)"
_IMG = {"image_joint": LATTE_UCF101_IMAGES}  # Latte's recipe: 8 frames of other videos appended to each clip


def _models(hidden: int, depth: int, heads: int, classes: int, patch: int = 2) -> dict[str, dict]:
    """Both registry entries shrunk alike (widths, depths and, on CPU, patch 4 as the image tables' Mamba models)."""
    common = {"hidden_size": hidden, "depth": depth, "num_classes": classes, "patch_size": patch}
    return {"latte-xl/2": {**common, "num_heads": heads}, "dim-mo-video-xl/2": common}


_CPU_COST = (  # from scripts/estimate_presets.py --preset cpu-builtin --tables mo-table3 --threads 1
    "~6.3 h on one core for the four rows (measured per step: training 5.3 h, an IMG row's step 12-23% dearer "
    "than its plain row's; sampling 1.0 h), plus the I3D's features of 1K clips (not timed: the I3D is "
    "user-supplied)"
)
_CPU_COMMON = dict(res=32, frames=16, steps=2000, batch=8, lr=4e-4, n_samples=512, ref_n=512, cfg=1.0, space="pixel")
PRESETS = {
    "smoke": smoke_preset(
        data="videoshapes",
        frames=16,
        cfg=1.0,
        space="pixel",
        model_overrides=_models(64, 4, 4, 10),
        deviations="built-in moving shapes in pixel space at 16 px instead of UCF-101 256 latents; tiny widths; "
        "30 steps; FVD of 16 clips of 16 frames against 16",
        cost="2.5 min on 2 CPU cores for the four rows (measured with a random I3D of the real one's interface)",
    ),
    "cpu": cpu_preset(
        data="ucf101",
        frame_interval=3,
        model_overrides=_models(128, 4, 4, 101, patch=4),
        deviations="UCF-101 in pixel space at 32 px instead of 256 latents; width / 9, 4 blocks, patch 4 (64 tokens a "
        "frame); 2K steps of batch 8; FVD of 512 clips (DPM-Solver 25 steps) against 512 training clips",
        cost=_CPU_COST + "; plus decoding the .avi clips",
        **_CPU_COMMON,
    ),
    "cpu-builtin": cpu_preset(
        "cpu-builtin",
        data="videoshapes",
        model_overrides=_models(128, 4, 4, 10, patch=4),
        deviations="the cpu preset on the built-in moving shapes (10 classes: shape x motion) instead of UCF-101",
        cost=_CPU_COST,
        **_CPU_COMMON,
    ),
    "paper": Preset(
        "paper",
        ema_warmup=False,
        data="ucf101",
        res=256,
        frames=FVD_FRAMES,
        frame_interval=3,
        steps=300_000,
        batch=32,
        lr=1e-4,
        ema=0.9999,
        n_samples=FVD_CLIPS,
        ref_n=FVD_CLIPS,
        sampler="ddpm",
        sample_steps=250,
        cfg=1.0,
        needs_vae=True,
        deviations="the paper gives no video batch size, step count, sampler or CFG: ours are batch 32, 300K steps, "
        "DDPM 250 steps (its image protocol), no guidance, frame interval 3 (Latte's); reference clips from our "
        "UCF-101 pipeline at that interval (StyleGAN-V: consecutive frames); use SD 1.4's VAE (--vae) as the paper",
        cost="GPU-hours not reported by the paper",
    ),
}

TABLE3 = TableSpec(
    id="mo-table3",
    paper=_PAPER,
    title="Table 3: video generation on UCF-101 (FVD, 2,048 clips of 16 frames); IMG = video-image joint training",
    variants=(
        Variant("latte", "Latte", "latte-xl/2", paper={"final": {"fvd": 477.97}}),
        Variant("latte-img", "Latte+IMG", "latte-xl/2", run_overrides=_IMG, paper={"final": {"fvd": 333.61}}),
        Variant("dim", "DiM", "dim-mo-video-xl/2", reference=True, paper={"final": {"fvd": 358.75}}),
        Variant("dim-img", "DiM+IMG", "dim-mo-video-xl/2", run_overrides=_IMG, paper={"final": {"fvd": 206.83}}),
    ),
    presets=PRESETS,
    paper_metrics=("fvd",),
    our_metric="fvd",
    note="FVD of the EMA model (lower is better; StyleGAN-V's protocol, I3D features), class-conditional",
    paper_only=(
        ("MoCoGAN", 2886.9),
        ("VideoGPT", 2880.6),
        ("MoCoGAN-HD", 1729.6),
        ("DIGAN", 1630.2),
        ("StyleGAN-V", 1431.0),
        ("PVDM", 1141.9),
        ("MoStGAN-V", 1380.3),
        ("LVDM", 372.00),
    ),
)

TABLES = (TABLE3,)

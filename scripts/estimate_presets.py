"""Expected wall time of each table at a preset on this machine, from measured costs:

    training: a few optimiser steps of every distinct run at the preset's batch (after a warm-up), x steps
    sampling: one batched forward of the EMA model, x samples x sampler steps (x2 with CFG)
    FID:      Inception features of 32 images, x (samples per row + reference images once per table)

Usage: ``python scripts/estimate_presets.py [--preset cpu] [--threads 2] [--tables teng-table6 ...]``.
Prints a Markdown table (these numbers go into the presets' ``cost`` and docs/ablations.md).
"""

from __future__ import annotations

import argparse
import time

import torch

from ablations.diffusion import GaussianDiffusion
from ablations.experiment import config_hash, model_setup
from ablations.tables import TABLES
from ablations.tables.layout import not_runnable, variant_config


def _train_seconds_per_step(config, repeats: int = 2) -> float:
    setup = model_setup(config)
    model = setup.build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    diffusion = GaussianDiffusion.from_name(config.schedule)
    x0 = torch.randn(config.batch, *setup.sample_shape(extra_frames=config.image_joint))  # images, or clips
    labels = torch.arange(config.batch) % 10
    y = setup.condition(model, labels)
    joint = {}  # video-image joint training: the appended image frames and their labels
    if config.image_joint:
        image_labels = labels.roll(1).view(-1, 1).repeat(1, config.image_joint)
        joint = dict(use_image_num=config.image_joint, image_cond=image_labels)

    def step():
        t = torch.randint(0, 1000, (config.batch,))
        noise = torch.randn_like(x0)
        x_t = diffusion.q_sample(x0, t, noise)
        loss = diffusion.training_loss(model(x_t, t, y, **joint), x0, x_t, t, noise)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    train = (time.perf_counter() - start) / repeats
    if config.distill is not None:  # a frozen teacher forward rides along every distillation step
        with torch.no_grad():
            start = time.perf_counter()
            model(x0, torch.zeros(config.batch, dtype=torch.long), y, **joint)
            train += time.perf_counter() - start
    return train


def _sample_seconds_per_image(config, batch: int = 64) -> float:
    setup = model_setup(config)
    model = setup.build().eval()
    batch = 8 if setup.frames else batch  # clips: 8 at a time
    x = torch.randn(batch, *setup.sample_shape())
    y = setup.condition(model, torch.arange(batch) % 10)
    with torch.no_grad():
        model(x, torch.zeros(batch, dtype=torch.long), y)
        start = time.perf_counter()
        model(x, torch.zeros(batch, dtype=torch.long), y)
    return (time.perf_counter() - start) / batch


def _inception_seconds_per_image() -> float:
    from ablations.fid import InceptionFeatures

    extractor = InceptionFeatures()
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    extractor([images[:4]])
    start = time.perf_counter()
    extractor([images])
    return (time.perf_counter() - start) / 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tables", nargs="*", default=list(TABLES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inception = _inception_seconds_per_image()
    print(f"Inception: {inception:.3f} s/image ({args.threads} threads)\n")
    print("| table | runs | training h | sampling h | FID h | total h |")
    print("|---|---|---|---|---|---|")
    for name in args.tables:
        table = TABLES[name]
        preset = table.presets[args.preset]
        video = table.our_metric == "fvd"  # the I3D is user-supplied: FVD is not timed (0 in the FID column)
        seen, train_s, sample_s, fid_s = set(), 0.0, 0.0, 0.0 if video else preset.ref_n * inception
        teacher = "teacher" if table.teacher else None
        for variant in table.variants:
            config = variant_config(table, variant, preset, teacher=teacher)
            if not_runnable(config):  # e.g. video-image joint training on a model without use_image_num
                continue
            cfg = variant.cfg if variant.cfg is not None else preset.cfg
            evals = preset.n_samples * preset.sample_steps * (2 if cfg != 1 else 1) * len(preset.checkpoints)
            sample_s += evals * _sample_seconds_per_image(config)
            fid_s += 0.0 if video else preset.n_samples * len(preset.checkpoints) * inception
            key = config_hash(config)  # one training per distinct run (rows may share one, e.g. CFG rows)
            if key not in seen:
                seen.add(key)
                train_s += config.steps * _train_seconds_per_step(config)
        total = (train_s + sample_s + fid_s) / 3600
        print(
            f"| {name} | {len(seen)} | {train_s / 3600:.1f} | {sample_s / 3600:.2f} | {fid_s / 3600:.2f} | "
            f"{total:.1f} |"
        )


if __name__ == "__main__":
    main()

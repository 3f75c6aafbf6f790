"""Scoring an image folder against a data set (or precomputed statistics): FID, KID, precision, recall, IS.

Reference features of (data set, split, size, count, Inception weights) are computed once and cached in
``$MAMBABENCH_CACHE/fid/``; a ``.npz`` of ``mu``/``sigma`` is accepted instead (then only FID is possible).
Every score records how many images it used: FID is biased at small counts, so compare only equal counts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ablations.data import default_data_root, open_dataset
from ablations.fid import (
    FeatureStats,
    InceptionFeatures,
    _cache_dir,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from ablations.generate import load_image_folder
from mambabench.errors import UserError
from mambabench.files import atomic_save, claim

UNAVAILABLE = {
    "is": "the offline FID Inception (fid-helper) has no logits layer; use torch-fidelity's own weights for IS",
}


def _batches(dataset, count: int, batch: int = 50):
    for start in range(0, count, batch):
        yield torch.stack([dataset[i][0] for i in range(start, min(count, start + batch))])


def reference_features(
    data: str, size: int, count: int, extractor: InceptionFeatures, root=None, split: str = "train"
) -> dict[str, torch.Tensor]:
    """{"pool": (N, 2048), "spatial": (N, 2023)} Inception features of the first ``count`` images (cached)."""
    weights_id = hashlib.sha1(str(extractor.weights.name).encode()).hexdigest()[:8]
    label = data
    if ":" in data:  # captions:DIR, wds:PATTERN: one file name per folder or pattern, wherever it resolves
        where = f"{data}|{Path(root or default_data_root()).resolve()}|{Path.cwd()}"
        label = f"{data.partition(':')[0]}-{hashlib.sha1(where.encode()).hexdigest()[:12]}"
    path = _cache_dir() / "fid" / f"{label}-{split}-{size}px-n{count}-{weights_id}-v2.pt"
    with claim(path.with_name(path.name + ".lock")):  # two scoring processes compute it once, not twice
        return _reference_features(path, data, size, count, extractor, root, split)


def _reference_features(path: Path, data: str, size: int, count: int, extractor, root, split: str) -> dict:
    if path.is_file():
        return torch.load(path)
    dataset = open_dataset(data, root, size=size, split=split)
    if len(dataset) < count:
        raise UserError(f"{data} {split} has {len(dataset)} images; asked for {count} reference images")
    features, _ = extractor(_batches(dataset, count))
    cached = {"pool": features.float(), "spatial": extractor.last_spatial}
    atomic_save(cached, path)
    return cached


def score(
    images: str | Path,
    ref: str,
    size: int | None = None,
    ref_count: int | None = None,
    root=None,
    device: str = "cpu",
    inception: str | None = None,
    limit: int | None = None,
) -> dict:
    """Scores of the images in a folder against ``ref`` (a data set name or a stats ``.npz``)."""
    generated = load_image_folder(images, limit)
    extractor = InceptionFeatures(inception, device=device)
    gen_features, logits = extractor([generated])
    gen_spatial = extractor.last_spatial
    result = {"n_generated": len(generated), "inception": str(extractor.weights)}
    if ref.endswith(".npz"):
        ref_stats = FeatureStats.load(ref)
        result.update(
            fid=frechet_distance(FeatureStats.of(gen_features), ref_stats),
            n_reference=ref_stats.count,
            reference=ref,
            kid=None,
            precision=None,
            recall=None,
            sfid=None,
        )
        result["unavailable"] = {"kid, precision, recall, sfid": "need reference features; a .npz holds mu/sigma"}
    else:
        size = size or generated.shape[-1]
        count = ref_count or len(generated)
        reference = reference_features(ref, size, count, extractor, root)
        ref_features = reference["pool"]
        result.update(
            fid=frechet_distance(FeatureStats.of(gen_features), FeatureStats.of(ref_features)),
            sfid=frechet_distance(FeatureStats.of(gen_spatial), FeatureStats.of(reference["spatial"])),
            n_reference=count,
            reference=f"{ref} train {size}px",
        )
        result["kid"] = kernel_inception_distance(gen_features, ref_features)
        result["precision"], result["recall"] = precision_recall(gen_features, ref_features.double())
        result["unavailable"] = {}
    result["is"] = inception_score(logits)
    result["unavailable"] = {
        **result["unavailable"],
        **{k: v for k, v in UNAVAILABLE.items() if k != "is" or result["is"] is None},
    }
    return result

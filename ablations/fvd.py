"""FVD (Fréchet Video Distance) with StyleGAN-V's protocol, which Mo & Tian follow (Sec. 4.1: "adhering to the
evaluation guidelines introduced by StyleGAN-V ... 2,048 video clips, each comprising 16 frames").

- Network: the I3D (Kinetics-400) TorchScript file StyleGAN-V loads, ``i3d_torchscript.pt`` (its port of the
  tf.hub I3D of the original FVD code). Called as StyleGAN-V calls it, ``detector(clips, rescale=True,
  resize=True, return_features=True)`` on uint8 clips (N, 3, T, H, W): the network itself rescales to [-1, 1]
  and resizes frames to 224x224, and returns the features before its softmax (400 values per clip).
- Weights: supplied by the user, never downloaded: ``--i3d PATH``, else ``$MAMBABENCH_I3D``, else
  ``$MAMBABENCH_CACHE/i3d/i3d_torchscript.pt``. Without them ``I3DMissing`` says where to get the file.
- Statistics: mean and covariance of the features, the covariance divided by N as StyleGAN-V's code does
  (``FeatureStats.of(..., population=True)``); the distance is ``ablations.fid.frechet_distance``, the one
  function FID uses too.
- Clips: StyleGAN-V scores 2048 generated clips of 16 frames against 2048 real ones (``fvd2048_16f``). The
  real clips here come from the training pipeline (``ablations.video_data``: the run's frame interval, size
  and crop), as FID's reference images do; StyleGAN-V takes 16 consecutive frames of each real video
  (``ablations fvd --ref-interval 1`` does that). Compare only equal clip counts: FVD is biased at small counts.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

from ablations.fid import FeatureStats, _cache_dir, check_not_degenerate, frechet_distance
from mambabench import settings
from mambabench.errors import UserError
from mambabench.files import atomic_save, claim

I3D_FILE = "i3d_torchscript.pt"
I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"  # StyleGAN-V's detector_url
I3D_KWARGS = {"rescale": True, "resize": True, "return_features": True}  # StyleGAN-V's detector_kwargs
FVD_CLIPS, FVD_FRAMES = 2048, 16  # StyleGAN-V's fvd2048_16f; Mo & Tian Sec. 4.1


class I3DMissing(UserError, FileNotFoundError):
    """No I3D weights were found; the message says where we looked and how to get them."""


def default_i3d_file() -> Path:
    return _cache_dir() / "i3d" / I3D_FILE


def find_i3d_weights(weights: str | Path | None = None) -> Path:
    """The I3D TorchScript file: ``weights``, ``$MAMBABENCH_I3D``, or the cache's ``i3d/i3d_torchscript.pt``."""
    explicit = weights or settings.i3d_weights()
    if explicit:
        if Path(explicit).is_file():
            return Path(explicit)
        raise I3DMissing(f"I3D weights {explicit} (from --i3d/$MAMBABENCH_I3D) do not exist; " + _how_to_get())
    if default_i3d_file().is_file():
        return default_i3d_file()
    raise I3DMissing(f"FVD needs the I3D network and none was found (looked in {default_i3d_file()}). " + _how_to_get())


def _how_to_get() -> str:
    return (
        f"Download StyleGAN-V's {I3D_FILE} (the Kinetics-400 I3D that FVD uses, TorchScript) from {I3D_URL} where "
        f"you have internet, then pass --i3d PATH, set $MAMBABENCH_I3D, or put it at {default_i3d_file()}"
    )


class I3DFeatures:
    """I3D features (float64 (N, D); 400 with StyleGAN-V's file) of uint8 clips (B, 3, T, H, W)."""

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu", batch: int = 8):
        self.weights = find_i3d_weights(weights)
        try:
            with warnings.catch_warnings():  # torch.jit.load is deprecated; StyleGAN-V's file is TorchScript
                warnings.simplefilter("ignore", FutureWarning)
                self.net = torch.jit.load(str(self.weights), map_location=device).eval()
        except (RuntimeError, ValueError) as error:
            first = (str(error).strip().splitlines() or [""])[0][:120]
            raise I3DMissing(f"{self.weights} is not a TorchScript I3D ({first}). {_how_to_get()}") from error
        self.device, self.batch = torch.device(device), batch  # StyleGAN-V: 128 frames a batch at 256 px

    @torch.no_grad()
    def __call__(self, clips: Iterable[Tensor]) -> Tensor:
        features = []
        for batch in clips:
            if batch.dim() != 5 or batch.shape[1] != 3 or batch.dtype != torch.uint8:
                raise ValueError(f"I3D takes uint8 clips (B, 3, T, H, W); got {batch.dtype} {tuple(batch.shape)}")
            for chunk in batch.split(self.batch):
                out = self.net(chunk.to(self.device), **I3D_KWARGS)
                features.append(out.reshape(len(chunk), -1).double().cpu())
        stacked = torch.cat(features)
        check_not_degenerate(stacked)
        return stacked


def fvd(generated: Tensor, reference: Tensor) -> float:
    """FVD of two feature sets (N, D): StyleGAN-V's statistics, the Fréchet distance shared with FID."""
    return frechet_distance(FeatureStats.of(generated, population=True), FeatureStats.of(reference, population=True))


def _batches(dataset, count: int, batch: int = 8):
    for start in range(0, count, batch):
        yield torch.stack([dataset[i][0] for i in range(start, min(count, start + batch))])


def reference_video_features(
    data: str,
    size: int,
    frames: int,
    interval: int | None,
    count: int,
    extractor: I3DFeatures,
    root=None,
    split: str = "train",
) -> Tensor:
    """I3D features of the first ``count`` clips of a video data set (cached in ``$MAMBABENCH_CACHE/fvd``)."""
    from ablations.data import open_dataset

    weights_id = hashlib.sha1(str(extractor.weights.resolve()).encode()).hexdigest()[:8]
    name = f"{data}-{split}-{size}px-{frames}f-i{interval or 'default'}-n{count}-{weights_id}.pt"
    path = _cache_dir() / "fvd" / name
    with claim(path.with_name(path.name + ".lock")):
        if path.is_file():
            return torch.load(path)
        dataset = open_dataset(data, root, size=size, split=split, frames=frames, interval=interval)
        if len(dataset) < count:
            raise UserError(f"{data} {split} has {len(dataset)} clips; asked for {count} reference clips")
        features = extractor(_batches(dataset, count))
        atomic_save(features, path)
        return features


def score_videos(
    clips: str | Path,
    ref: str,
    size: int | None = None,
    ref_count: int | None = None,
    root=None,
    device: str = "cpu",
    i3d: str | None = None,
    interval: int | None = None,
    limit: int | None = None,
) -> dict:
    """FVD of the ``.npy`` clips in a folder against ``ref``, a video data set (clips of the same length)."""
    from ablations.video_io import load_clip_folder

    generated = load_clip_folder(clips, limit)
    extractor = I3DFeatures(i3d, device=device)
    size = size or generated.shape[-1]
    frames = generated.shape[2]
    count = ref_count or len(generated)
    gen_features = extractor([generated])
    ref_features = reference_video_features(ref, size, frames, interval, count, extractor, root)
    return {
        "fvd": fvd(gen_features, ref_features),
        "n_generated": len(generated),
        "n_reference": count,
        "frames": frames,
        "reference": f"{ref} train {size}px {frames} frames",
        "i3d": str(extractor.weights),
        "unavailable": {},
    }

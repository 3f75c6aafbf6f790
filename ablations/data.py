"""Data sets the papers train on, read from their real on-disk layouts, plus a built-in procedural one.

Every data set yields ``(image, label)`` with ``image`` a uint8 tensor (3, H, W) at the training size and
``label`` an int (0 for unlabelled sets). Conversion to model space ([-1, 1], flips, VAE latents) happens in
the trainer, so FID reference images come from exactly the same pipeline.

- ``builtin``: coloured shapes drawn procedurally (deterministic, no download): every command's default.
- ``cifar10``: ``<root>/cifar-10-batches-py/`` pickles (our own reader; ``download_cifar10`` fetches them).
- ``celeba``: ``<root>/celeba/img_align_celeba/*.jpg`` + ``list_eval_partition.txt``; cropped then resized.
- ``imagenet``: ``<root>/imagenet/{train,val}/<wnid>/*.JPEG`` (ImageFolder), ADM/DiT centre crop.
- ``latents:<dir>``: shards written by ``ablations latents`` (VAE moments; see ``ablations.latents``).
- ``captions:<dir>``, ``wds:<pattern>``, ``captioned-shapes``: images with captions for the text-to-image
  models; items are ``(image, index)``, the caption ``dataset.captions[index]`` (``ablations.caption_data``).
- ``videoshapes``, ``ucf101``: video clips (3, T, H, W), see ``ablations.video_data``.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ablations.caption_data import caption_dataset_present, is_caption_dataset, open_caption_dataset
from ablations.data_catalog import CAPTION_DATASETS, DATASETS, VIDEO_DATASETS, DatasetMissing
from ablations.video_data import open_video_dataset, video_dataset_present
from mambabench import settings
from mambabench.errors import UserError
from mambabench.files import atomic_path

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def default_data_root() -> Path:
    """``$MAMBABENCH_DATA`` or ``./data``."""
    return settings.data_dir()


# ---------------------------------------------------------------- built-in procedural data set


class BuiltinShapes(Dataset):
    """Coloured shapes on textured backgrounds, ``num_classes`` classes (shape kind x colour family).

    Item i is drawn from a generator seeded by (seed, i): the same images on every machine. Each image has a
    random position, size, rotation-free geometry, hue jitter and a smooth background gradient, so sample
    quality differences show in FID while a tiny model can still learn it in minutes."""

    KINDS = ("disk", "square", "ring", "cross", "stripes")

    def __init__(self, size: int = 32, length: int = 10_000, num_classes: int = 10, seed: int = 0):
        self.size, self.length, self.num_classes, self.seed = size, length, num_classes, seed
        coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        self.yy, self.xx = torch.meshgrid(coords, coords, indexing="ij")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        label = index % self.num_classes
        kind = self.KINDS[label % len(self.KINDS)]
        warm = (label // len(self.KINDS)) % 2 == 0
        u = torch.rand(8, generator=g)
        cx, cy, r = 0.25 + 0.5 * u[0], 0.25 + 0.5 * u[1], 0.12 + 0.16 * u[2]
        dx, dy = self.xx - cx, self.yy - cy
        mask = {
            "disk": dx.square() + dy.square() < r * r,
            "square": (dx.abs() < r) & (dy.abs() < r),
            "ring": ((dx.square() + dy.square()).sqrt() - r).abs() < 0.3 * r,
            "cross": ((dx.abs() < 0.35 * r) | (dy.abs() < 0.35 * r)) & (dx.abs() < r) & (dy.abs() < r),
            "stripes": (torch.sin((self.xx + self.yy) * (8 + 8 * u[3]) * math.pi) > 0) & (dx.abs() < r * 1.5),
        }[kind]
        hue = torch.tensor([1.0, 0.35 + 0.4 * u[4], 0.1]) if warm else torch.tensor([0.1, 0.45 + 0.4 * u[4], 1.0])
        background = (0.2 + 0.3 * u[5]) + 0.3 * (u[6] - 0.5) * (self.xx + self.yy - 1)
        image = background.expand(3, -1, -1) * torch.tensor([0.6, 0.7, 0.8]).view(3, 1, 1)
        image = torch.where(mask, hue.view(3, 1, 1) * (0.75 + 0.25 * u[7]), image)
        return (image.clamp(0, 1) * 255).round().to(torch.uint8), label


# ---------------------------------------------------------------- CIFAR-10 (python pickles)


class Cifar10(Dataset):
    """CIFAR-10 from ``<root>/cifar-10-batches-py``: ``data_batch_1..5`` (train) or ``test_batch`` (test).

    Each batch is a pickled dict with ``data`` (N, 3072) uint8, rows R|G|B planes of 32x32, and ``labels``."""

    def __init__(self, root: str | Path, split: str = "train"):
        folder = Path(root) / "cifar-10-batches-py"
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise DatasetMissing(
                f"CIFAR-10 not found: {folder} lacks {', '.join(missing)}. Get it with "
                f"`ablations data download cifar10 --root {root}` (163 MB from {CIFAR10_URL}), or extract "
                f"cifar-10-python.tar.gz into {root}."
            )
        images, labels = [], []
        for name in names:
            with open(folder / name, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(int(v) for v in batch["labels"])
        self.images = torch.from_numpy(np.concatenate(images))
        self.labels = labels
        self.num_classes = 10

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], self.labels[index]


class DownloadFailed(DatasetMissing):
    """A download did not complete; the message names the URL and where to put the file by hand."""


def download_cifar10(root: str | Path) -> Path:
    """Fetch and extract the CIFAR-10 python tarball into ``root`` (MD5-checked); needs internet. Offline, a
    ``DownloadFailed`` says where to put the tarball fetched elsewhere (then this extracts it)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    manual = (
        f"download {CIFAR10_URL} on a machine with internet and put it at {archive} (this command then checks "
        f"and extracts it), or extract it into {root}"
    )
    if not archive.exists():
        try:
            with atomic_path(archive) as partial:  # removed when the download fails
                urllib.request.urlretrieve(CIFAR10_URL, partial)
        except (OSError, ValueError) as error:  # URLError, HTTPError, timeouts and refused connections are OSErrors
            reason = getattr(error, "reason", None) or error
            raise DownloadFailed(f"downloading CIFAR-10 from {CIFAR10_URL} failed ({reason}); {manual}") from error
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    if digest != CIFAR10_MD5:
        raise DownloadFailed(
            f"{archive}: MD5 {digest} != {CIFAR10_MD5} (incomplete or another file); delete it and "
            f"run this again, or {manual}"
        )
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DownloadFailed(f"{archive} does not extract ({error}); delete it and run this again") from error
    return root / "cifar-10-batches-py"


# ---------------------------------------------------------------- CelebA (aligned JPEGs)


def _resize_bicubic(image: Image.Image, size: int) -> Image.Image:
    return image.resize((size, size), Image.Resampling.BICUBIC)


class CelebA(Dataset):
    """CelebA from ``<root>/celeba``: ``img_align_celeba/NNNNNN.jpg`` (178x218) and ``list_eval_partition.txt``.

    Protocol (U-ViT's CelebA 64 code, which WD-Mamba compares against): a ``crop`` x ``crop`` box centred at
    (89, 121), then a bicubic resize to ``size``. Our choice where WD-Mamba's paper is silent."""

    SPLITS = {"train": "0", "valid": "1", "test": "2", "all": None}

    def __init__(self, root: str | Path, split: str = "train", size: int = 64, crop: int = 128):
        folder = Path(root) / "celeba"
        partition = folder / "list_eval_partition.txt"
        images = folder / "img_align_celeba"
        if not partition.is_file() or not images.is_dir():
            raise DatasetMissing(
                f"CelebA not found: expected {images}/ and {partition}. Download 'Align&Cropped Images' "
                "(img_align_celeba.zip) and 'Eval/list_eval_partition.txt' from "
                "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html and unzip them there."
            )
        wanted = self.SPLITS[split]
        rows = [line.split() for line in partition.read_text().splitlines() if line.strip()]
        self.files = [images / name for name, part in rows if wanted is None or part == wanted]
        self.size, self.crop, self.num_classes = size, crop, 0

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        with Image.open(self.files[index]) as f:
            image = f.convert("RGB")
        cx, cy, half = 89, 121, self.crop // 2
        image = _resize_bicubic(image.crop((cx - half, cy - half, cx + half, cy + half)), self.size)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1), 0


# ---------------------------------------------------------------- ImageNet (ImageFolder)


def center_crop_arr(image: Image.Image, size: int) -> Image.Image:
    """ADM/DiT preprocessing: BOX-halve while the short side >= 2 size, BICUBIC to short side = size, crop."""
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.Resampling.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.Resampling.BICUBIC)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


class ImageNet(Dataset):
    """ImageNet from ``<root>/imagenet/<split>/<wnid>/*.JPEG``; classes are the sorted wnid folders."""

    EXTENSIONS = (".jpeg", ".jpg", ".png")

    def __init__(self, root: str | Path, split: str = "train", size: int = 256):
        folder = Path(root) / "imagenet" / split
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        if not classes:
            raise DatasetMissing(
                f"ImageNet not found: expected {folder}/<wnid>/*.JPEG (the ILSVRC-2012 {split} set, one folder per "
                "class). Get ILSVRC2012_img_train.tar from https://image-net.org/download and extract each class "
                "tar into its wnid folder."
            )
        self.samples = [
            (path, label)
            for label, wnid in enumerate(classes)
            for path in sorted((folder / wnid).iterdir())
            if path.suffix.lower() in self.EXTENSIONS
        ]
        self.classes, self.size, self.num_classes = classes, size, len(classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as f:
            image = center_crop_arr(f.convert("RGB"), self.size)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1), label


def open_dataset(
    name: str,
    root: str | Path | None = None,
    size: int = 32,
    split: str = "train",
    frames: int = 16,
    interval: int | None = None,
) -> Dataset:
    """A data set by name at ``size`` pixels. Missing files raise ``DatasetMissing`` naming the fix. ``frames``
    and ``interval`` apply to the video sets only (``ablations.video_data.open_video_dataset``)."""
    root = Path(root) if root is not None else default_data_root()
    if name in VIDEO_DATASETS:
        return open_video_dataset(name, root, size, frames, interval, split)
    if is_caption_dataset(name):
        return open_caption_dataset(name, size, split, root)
    if name == "builtin":
        return BuiltinShapes(size=size, seed=0 if split == "train" else 1)
    if name == "cifar10":
        if size != 32:
            raise UserError(f"CIFAR-10 images are 32x32; got --res {size}")
        return Cifar10(root, "train" if split == "train" else "test")
    if name == "celeba":
        return CelebA(root, split, size=size)
    if name == "imagenet":
        return ImageNet(root, split, size=size)
    known = ", ".join((*DATASETS, *VIDEO_DATASETS, *CAPTION_DATASETS))
    raise UserError(f"unknown data set {name!r}; choose one of {known}, captions:<dir>, wds:<pattern> or latents:<dir>")


def dataset_present(name: str, root: str | Path | None = None) -> bool:
    """Whether ``open_dataset(name, root)`` would find its files (cheap: no image is decoded)."""
    root = Path(root) if root is not None else default_data_root()
    if name in VIDEO_DATASETS:
        return video_dataset_present(name, root)
    if is_caption_dataset(name):
        return caption_dataset_present(name, root)
    return {
        "builtin": lambda: True,
        "cifar10": lambda: (root / "cifar-10-batches-py" / "data_batch_1").is_file(),
        "celeba": lambda: (root / "celeba" / "list_eval_partition.txt").is_file(),
        "imagenet": lambda: (root / "imagenet" / "train").is_dir(),
    }.get(name, lambda: False)()

"""Video data sets: UCF-101 read from its real .avi files and official split lists, and a built-in procedural
set of moving shapes that needs no download.

Every set yields ``(clip, label)`` with ``clip`` a uint8 tensor (3, T, H, W) at the training size: the
video tensor convention of the models, (B, C, T, H, W) once batched. Conversion to model space ([-1, 1],
flips, VAE latents frame by frame) happens in the trainer, as for images.

- ``videoshapes``: coloured shapes moving over a textured background (deterministic, no download); the class
  is (shape kind, motion kind), so a model must get the motion right, not only the look of a frame.
- ``ucf101``: ``<root>/UCF-101/<Class>/v_<Class>_gNN_cNN.avi`` (the extracted ``UCF101.rar``) and
  ``<root>/ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt`` (the official splits). Decoded with PyAV
  (``pip install av``; FFmpeg ships inside its wheel).

Clips follow the paper's recipe (Mo & Tian Sec. 4.1: "16-frame video clips using a specific sampling interval,
each frame resized to 256x256"), with Latte's UCF-101 pipeline where the paper is silent (its Sec. 4.1 says
the video setup follows Latte): a temporal window of ``(frames - 1) * interval + 1`` frames at an offset in
the video, every ``interval``-th frame of it, the short side resized (bilinear) to the size, then a centre
crop. A video shorter than the window gives ``frames`` frames spread evenly over the whole video (frames
repeat). Our choice: clip ``i`` takes its offset from a generator seeded by (seed, i), so the same index is
the same clip on every machine (the trainer's exact resume needs that); ``clips_per_video`` > 1 gives each
video several fixed offsets.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ablations.data_catalog import VIDEO_DATASETS, DatasetMissing
from mambabench.errors import UserError

UCF101_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101.rar"
UCF101_SPLITS_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip"
UCF101_INTERVAL = 3  # Latte's UCF-101 frame interval (the paper says only "a specific sampling interval")
PYAV_INSTALL = "pip install av"


def clip_indices(total: int, frames: int, interval: int, offset_fraction: float) -> list[int]:
    """Frame indices of a clip: every ``interval``-th frame of a window placed at ``offset_fraction`` of the
    free range, or ``frames`` indices spread over the whole video when it is shorter than the window."""
    span = (frames - 1) * interval + 1
    if total >= span:
        start = min(total - span, int(offset_fraction * (total - span + 1)))
        return [start + interval * k for k in range(frames)]
    return np.linspace(0, max(total - 1, 0), frames).round().astype(int).tolist()


def resize_center_crop(clip: Tensor, size: int) -> Tensor:
    """uint8 (3, T, H, W): the short side bilinearly resized to ``size``, then the centre ``size`` x ``size``
    (Latte's UCF-101 transform)."""
    _, _, h, w = clip.shape
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    frames = clip.permute(1, 0, 2, 3).float()  # (T, 3, H, W)
    if (new_h, new_w) != (h, w):
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    frames = frames[:, :, top : top + size, left : left + size]
    return frames.round().clamp(0, 255).to(torch.uint8).permute(1, 0, 2, 3).contiguous()


# ---------------------------------------------------------------- built-in procedural video set


class VideoShapes(Dataset):
    """Coloured shapes moving over a static textured background, ``num_classes`` classes = shape kind x
    motion kind (5 x 2 by default: the motion is part of the class).

    Item i is drawn from a generator seeded by (seed, i): position, size, speed, direction, colour and the
    clip's start time. Frame k shows time ``start + k * interval`` (one unit moves a slide by 1/32 of the
    frame), so ``interval`` plays the role of UCF-101's sampling interval."""

    KINDS = ("disk", "square", "ring", "cross", "bar")
    MOTIONS = ("slide", "orbit")

    def __init__(
        self,
        size: int = 16,
        frames: int = 16,
        interval: int = 1,
        length: int = 10_000,
        num_classes: int = 10,
        seed: int = 0,
    ):
        if num_classes > len(self.KINDS) * len(self.MOTIONS):
            raise ValueError(f"videoshapes has at most {len(self.KINDS) * len(self.MOTIONS)} classes")
        self.size, self.frames, self.interval, self.length = size, frames, interval, length
        self.num_classes, self.seed = num_classes, seed
        coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        self.yy, self.xx = torch.meshgrid(coords, coords, indexing="ij")

    def __len__(self) -> int:
        return self.length

    def _mask(self, kind: str, cx: Tensor, cy: Tensor, r: float) -> Tensor:
        dx, dy = self.xx - cx.view(-1, 1, 1), self.yy - cy.view(-1, 1, 1)
        if kind == "disk":
            return dx.square() + dy.square() < r * r
        if kind == "square":
            return (dx.abs() < r) & (dy.abs() < r)
        if kind == "ring":
            return ((dx.square() + dy.square()).sqrt() - r).abs() < 0.3 * r
        if kind == "cross":
            return ((dx.abs() < 0.35 * r) | (dy.abs() < 0.35 * r)) & (dx.abs() < r) & (dy.abs() < r)
        return (dx.abs() < 0.3 * r) & (dy.abs() < 1.2 * r)  # bar: a tall thin rectangle

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        label = index % self.num_classes
        kind = self.KINDS[label % len(self.KINDS)]
        motion = self.MOTIONS[(label // len(self.KINDS)) % len(self.MOTIONS)]
        u = torch.rand(10, generator=g)
        r = 0.12 + 0.1 * u[0]
        time = u[1] * 64 + torch.arange(self.frames, dtype=torch.float32) * self.interval
        if motion == "slide":  # straight line, bouncing off the borders (a triangle wave in x and y)
            angle = 2 * math.pi * u[2]
            span = 1 - 2 * r

            def bounce(p):
                return r + span * (1 - ((p % 2) - 1).abs())

            cx = bounce(u[3] * 2 + time * math.cos(angle) / 32 / span)
            cy = bounce(u[4] * 2 + time * math.sin(angle) / 32 / span)
        else:  # orbit: a circle around the centre, either way round
            direction = 1.0 if u[2] < 0.5 else -1.0
            radius = 0.12 + 0.1 * u[3]
            phase = 2 * math.pi * u[4] + direction * time * 2 * math.pi / 24
            cx, cy = 0.5 + radius * torch.cos(phase), 0.5 + radius * torch.sin(phase)
        warm = u[5] < 0.5
        hue = torch.tensor([1.0, 0.35 + 0.4 * u[6], 0.1]) if warm else torch.tensor([0.1, 0.45 + 0.4 * u[6], 1.0])
        background = (0.2 + 0.3 * u[7]) + 0.3 * (u[8] - 0.5) * (self.xx + self.yy - 1)
        base = background.expand(3, -1, -1) * torch.tensor([0.6, 0.7, 0.8]).view(3, 1, 1)
        mask = self._mask(kind, cx, cy, float(r)).unsqueeze(0)  # (1, T, H, W)
        clip = torch.where(mask, (hue * (0.75 + 0.25 * u[9])).view(3, 1, 1, 1), base.unsqueeze(1))
        return (clip.clamp(0, 1) * 255).round().to(torch.uint8), label


# ---------------------------------------------------------------- UCF-101 (.avi files + official splits)


def _pyav():
    try:
        import av
    except ImportError as error:
        raise UserError(f"reading .avi files needs PyAV: `{PYAV_INSTALL}` (or pip install -e '.[video]')") from error
    return av


def read_video_frames(path: str | Path, frames: int, interval: int, offset_fraction: float) -> Tensor:
    """uint8 (3, T, H, W): the clip ``clip_indices`` picks from a video file, decoded with PyAV (only up to the
    last frame needed when the container knows its frame count)."""
    av = _pyav()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            total = stream.frames
            decoded: list[np.ndarray] = []
            if total > 0:
                wanted = clip_indices(total, frames, interval, offset_fraction)
                last = max(wanted)
                for i, frame in enumerate(container.decode(stream)):
                    decoded.append(frame.to_ndarray(format="rgb24"))
                    if i >= last:
                        break
            else:
                decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except (OSError, av.FFmpegError) as error:
        raise UserError(f"{path}: cannot decode ({error}); re-extract UCF101.rar from {UCF101_URL}") from error
    if not decoded:
        raise UserError(f"{path}: no video frames decoded; re-extract UCF101.rar from {UCF101_URL}")
    if total <= 0 or len(decoded) <= max(clip_indices(total, frames, interval, offset_fraction)):
        total = len(decoded)  # the header's count was missing or too high: pick from what decodes
    indices = clip_indices(total, frames, interval, offset_fraction)
    clip = np.stack([decoded[i] for i in indices])  # (T, H, W, 3)
    return torch.from_numpy(clip).permute(3, 0, 1, 2).contiguous()


def ucf101_missing_message(root: Path, what: str) -> str:
    return (
        f"UCF-101 not found: {what}. Download {UCF101_URL} (6.5 GB) and extract it into {root} (it makes "
        f"{root / 'UCF-101'}/<Class>/*.avi), and the official splits {UCF101_SPLITS_URL} unzipped into {root} "
        f"(it makes {root / 'ucfTrainTestlist'}/trainlist01.txt, testlist01.txt, classInd.txt)."
    )


class UCF101(Dataset):
    """UCF-101 from ``<root>/UCF-101`` and ``<root>/ucfTrainTestlist`` (module doc). ``split`` is train or test
    of the official split ``fold`` (1-3); classes are numbered as ``classInd.txt`` (minus one). Class folder
    names are matched without regard to case (the official lists spell one class two ways)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        size: int = 256,
        frames: int = 16,
        interval: int = UCF101_INTERVAL,
        fold: int = 1,
        clips_per_video: int = 1,
        seed: int = 0,
    ):
        root = Path(root)
        videos, lists = root / "UCF-101", root / "ucfTrainTestlist"
        if split not in ("train", "test"):
            raise UserError(f"UCF-101 split must be train or test, got {split!r}")
        names = {"classInd.txt", f"{split}list0{fold}.txt"}
        missing = sorted(n for n in names if not (lists / n).is_file())
        if missing or not videos.is_dir():
            what = f"{lists} lacks {', '.join(missing)}" if missing else f"no folder {videos}"
            raise DatasetMissing(ucf101_missing_message(root, what))
        classes = {}
        for line in (lists / "classInd.txt").read_text().splitlines():
            if line.strip():
                number, name = line.split()
                classes[name.lower()] = int(number) - 1
        self.samples: list[tuple[str, int]] = []
        for line in (lists / f"{split}list0{fold}.txt").read_text().splitlines():
            if not line.strip():
                continue
            relative = line.split()[0]
            folder = relative.split("/")[0].lower()
            if folder not in classes:
                raise UserError(f"{lists / f'{split}list0{fold}.txt'}: class {folder!r} is not in classInd.txt")
            self.samples.append((relative, classes[folder]))
        self.root, self.videos = root, videos
        self.size, self.frames, self.interval = size, frames, interval
        self.clips_per_video, self.seed = clips_per_video, seed
        self.num_classes = len(classes)
        self._folders: dict[str, Path] | None = None

    def __len__(self) -> int:
        return len(self.samples) * self.clips_per_video

    def _path(self, relative: str) -> Path:
        path = self.videos / relative
        if path.is_file():
            return path
        if self._folders is None:  # e.g. HandstandPushups in the lists, HandStandPushups on disk
            self._folders = {p.name.lower(): p for p in self.videos.iterdir() if p.is_dir()}
        folder, name = relative.split("/", 1)
        folder_path = self._folders.get(folder.lower())
        if folder_path is not None:
            for candidate in folder_path.iterdir():
                if candidate.name.lower() == name.lower():
                    return candidate
        raise DatasetMissing(ucf101_missing_message(self.root, f"{path} is missing"))

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        relative, label = self.samples[index // self.clips_per_video]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        offset = float(torch.rand(1, generator=g))
        clip = read_video_frames(self._path(relative), self.frames, self.interval, offset)
        return resize_center_crop(clip, self.size), label


def open_video_dataset(
    name: str, root: str | Path, size: int, frames: int = 16, interval: int | None = None, split: str = "train"
) -> Dataset:
    """A video data set by name: clips of ``frames`` frames at ``size`` pixels, every ``interval``-th frame
    (default: 3 for UCF-101, Latte's; 1 for the shapes). Missing files raise ``DatasetMissing`` naming the fix."""
    if frames < 1:
        raise UserError(f"a video data set needs clips of at least 1 frame, got {frames}")
    if name == "videoshapes":
        return VideoShapes(size=size, frames=frames, interval=interval or 1, seed=0 if split == "train" else 1)
    if name == "ucf101":
        return UCF101(root, "train" if split == "train" else "test", size, frames, interval or UCF101_INTERVAL)
    raise UserError(f"unknown video data set {name!r}; choose one of {', '.join(VIDEO_DATASETS)}")


def video_dataset_present(name: str, root: str | Path) -> bool:
    """Whether ``open_video_dataset(name, root)`` would find its files (no video is decoded)."""
    root = Path(root)
    if name == "videoshapes":
        return True
    return (root / "ucfTrainTestlist" / "trainlist01.txt").is_file() and (root / "UCF-101").is_dir()

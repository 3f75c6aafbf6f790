"""Image-caption data sets for the text-to-image models (PixArt-alpha, T2MD): two on-disk layouts, webdataset
shards and a built-in procedural set, all behind one interface.

Every set yields ``(image, index)``: ``image`` uint8 (3, size, size) after PixArt-alpha's preprocessing and
``index`` the item's own index, which is also the index of its caption in ``dataset.captions`` (a list of
strings, known without decoding any image). The trainer looks the caption embedding up by that index in the
caption cache (``ablations.text_encoder``), and latent shards keep the index as their label, so the same
lookup works after ``ablations latents``. ``num_classes`` is 0: nothing here is class-labelled.

- ``captions:DIR``: images under DIR with either a ``captions.jsonl`` of ``{"file": ..., "caption": ...}``
  rows (``file`` relative to DIR), or a ``.txt`` beside each image with the same stem (the two layouts
  text-to-image trainers use; ``captions.jsonl`` wins when both exist). A row naming a missing image, an
  image without caption file, an empty caption or a malformed row is a ``UserError`` naming the file (and
  line).
- ``wds:PATTERN``: webdataset tar shards (``/data/shard-{000000..000099}.tar``, braces expanded by the
  ``webdataset`` package, or a glob), one sample per key with an image (``jpg``, ``jpeg``, ``png``,
  ``webp``) and a caption (``txt``, or ``json`` with a ``caption`` field, else ``text``, else ``prompt``).
  Our choice: the shards are indexed once (tar headers only) and members read by offset, so items are
  random-access like every other data set here (the trainer's exact resume needs index-based batches);
  webdataset's streaming iterator would lose that. Keys follow webdataset's rule (the basename up to its
  first dot, within its folder).
- ``captioned-shapes``: procedural images of 1-4 flat shapes (circle, square, triangle) in six colours, with
  captions in GenEval's phrasing, one of GenEval's task kinds per item in turn: colour ("a photo of a red
  circle"), counting ("a photo of three blue squares"), position ("a photo of a blue square left of a green
  triangle"; relations left of, right of, above, below as GenEval writes them), two objects with colours
  ("a photo of a red circle and a yellow triangle"). Item i is drawn from a generator seeded by (seed, i):
  the same images and captions on every machine; no download.

A relative ``DIR`` or ``PATTERN`` that is not there from the working directory is looked for under the data
root (``--data-root``, ``$MAMBABENCH_DATA``), as the named data sets are (our choice: a table preset names its
caption data that way, ``wds:t2md/*.tar``).

Preprocessing is PixArt-alpha's training transform (its ``InternalData`` at 256 / 512 px):
``T.Resize(size)`` (bilinear, the short side to ``size``) then ``T.CenterCrop(size)``.
"""

from __future__ import annotations

import glob
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ablations.data_catalog import DatasetMissing
from mambabench.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def pixart_resize_crop(image: Image.Image, size: int) -> Image.Image:
    """PixArt-alpha's ``T.Resize(size)`` + ``T.CenterCrop(size)``: bilinear to short side ``size`` (the long
    side ``int(size * long / short)``, as torchvision computes it), then the centred ``size`` square."""
    w, h = image.size
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    if new != image.size:
        image = image.resize(new, Image.Resampling.BILINEAR)
    w, h = image.size
    left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _decode(data: bytes | Path, size: int, what: str) -> Tensor:
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as f:
            image = pixart_resize_crop(f.convert("RGB"), size)
    except (OSError, ValueError) as error:  # PIL.UnidentifiedImageError is an OSError
        raise UserError(f"{what} is not a readable image ({error})") from error
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def _checked_caption(text: object, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where}: empty caption; every image needs a non-empty caption")
    return " ".join(text.split())


class CaptionFolder(Dataset):
    """``captions:DIR``: images with ``DIR/captions.jsonl`` or a same-stem ``.txt`` each (module doc)."""

    def __init__(self, folder: str | Path, size: int = 256):
        self.folder, self.size, self.num_classes = Path(folder), size, 0
        if not self.folder.is_dir():
            raise DatasetMissing(
                f"--data captions:{folder}: no such folder; it should hold images and a captions.jsonl of "
                '{"file", "caption"} rows, or a .txt caption beside each image'
            )
        index = self.folder / "captions.jsonl"
        self.files, self.captions = self._from_jsonl(index) if index.is_file() else self._from_txt()
        if not self.files:
            raise DatasetMissing(
                f"--data captions:{folder}: no captioned images (no captions.jsonl, no image with a .txt beside it)"
            )

    def _from_jsonl(self, index: Path) -> tuple[list[Path], list[str]]:
        files, captions = [], []
        for number, line in enumerate(index.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{index}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{where}: not a JSON line ({error.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("file"), str):
                raise UserError(f'{where}: expected {{"file": ..., "caption": ...}}, got {line.strip()[:80]}')
            path = self.folder / row["file"]
            if not path.is_file():
                raise UserError(f"{where}: the image {row['file']!r} does not exist in {self.folder}")
            files.append(path)
            captions.append(_checked_caption(row.get("caption"), f"{where} ({row['file']})"))
        return files, captions

    def _from_txt(self) -> tuple[list[Path], list[str]]:
        images = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        files, captions = [], []
        for path in images:
            text = path.with_suffix(".txt")
            if not text.is_file():
                raise UserError(
                    f"{path} has no caption: put {text.name} beside it, or list every image in "
                    f"{self.folder / 'captions.jsonl'}"
                )
            files.append(path)
            captions.append(_checked_caption(text.read_text(), str(text)))
        return files, captions

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return _decode(self.files[index], self.size, str(self.files[index])), index


def _caption_of_json(data: bytes, where: str) -> object:
    try:
        row = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{where}: not JSON ({error})") from None
    if isinstance(row, dict):
        for key in ("caption", "text", "prompt"):
            if key in row:
                return row[key]
    return None


def expand_shards(pattern: str) -> list[Path]:
    """The shard files of ``wds:PATTERN``: brace ranges expanded as webdataset does, then globs."""
    try:
        from webdataset.shardlists import expand_urls
    except ImportError as error:
        raise UserError("--data wds: needs the webdataset package: pip install -e '.[text]'") from error
    paths = []
    for url in expand_urls(pattern):
        paths += sorted(glob.glob(url)) if any(c in url for c in "*?[") else [url]
    missing = [p for p in paths if not Path(p).is_file()]
    if not paths or missing:
        raise DatasetMissing(
            f"--data wds:{pattern}: {'no shard matches' if not paths else f'missing shard {missing[0]}'}; give "
            "webdataset .tar shards, e.g. wds:/data/shard-{000000..000099}.tar"
        )
    return [Path(p) for p in paths]


class WebDatasetShards(Dataset):
    """``wds:PATTERN``: webdataset tar shards, indexed once and read by member offset (module doc)."""

    def __init__(self, pattern: str, size: int = 256):
        self.size, self.num_classes = size, 0
        self.items: list[tuple[Path, int, int, str]] = []  # shard, offset, size, key
        self.captions: list[str] = []
        for shard in expand_shards(pattern):
            self._index(shard)
        if not self.items:
            raise DatasetMissing(f"--data wds:{pattern}: the shards hold no sample with an image and a caption")

    def _index(self, shard: Path) -> None:
        samples: dict[str, dict[str, tarfile.TarInfo]] = {}
        try:
            with tarfile.open(shard) as tar:
                members = [m for m in tar.getmembers() if m.isfile()]
                for member in members:
                    folder, _, base = member.name.rpartition("/")
                    stem, dot, ext = base.partition(".")
                    if dot and not base.startswith("."):
                        samples.setdefault(f"{folder}/{stem}" if folder else stem, {})[ext.lower()] = member
                for key, parts in samples.items():
                    image = next((parts[e] for e in ("jpg", "jpeg", "png", "webp") if e in parts), None)
                    if image is None:
                        continue
                    where = f"{shard}: sample {key}"
                    if "txt" in parts:
                        caption = tar.extractfile(parts["txt"]).read().decode("utf-8", errors="replace")
                    elif "json" in parts:
                        caption = _caption_of_json(tar.extractfile(parts["json"]).read(), where)
                    else:
                        raise UserError(f"{where} has an image but no caption (.txt or .json)")
                    self.captions.append(_checked_caption(caption, where))
                    self.items.append((shard, image.offset_data, image.size, key))
        except tarfile.TarError as error:
            raise UserError(f"{shard} is not a readable tar shard ({error})") from error

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        shard, offset, length, key = self.items[index]
        with open(shard, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        return _decode(data, self.size, f"{shard}: sample {key}"), index


# ---------------------------------------------------------------- captioned-shapes


SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (0.86, 0.13, 0.13),
    "green": (0.15, 0.68, 0.22),
    "blue": (0.15, 0.3, 0.9),
    "yellow": (0.95, 0.85, 0.12),
    "purple": (0.55, 0.2, 0.75),
    "orange": (0.97, 0.55, 0.1),
}
NUMBERS = {2: "two", 3: "three", 4: "four"}
RELATIONS = ("left of", "right of", "above", "below")
TASKS = ("colors", "counting", "position", "color_attr")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class CaptionedShapes(Dataset):
    """``captioned-shapes``: 1-4 coloured shapes with GenEval-phrased captions (module doc)."""

    def __init__(self, size: int = 32, length: int = 10_000, seed: int = 0):
        self.size, self.length, self.seed, self.num_classes = size, length, seed, 0
        coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        self.yy, self.xx = torch.meshgrid(coords, coords, indexing="ij")
        self.captions = [self.scene(i)[1] for i in range(length)]

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> tuple[list[tuple[str, str, float, float, float]], str]:
        """([(shape, colour, cx, cy, radius)], caption) of item ``index``: positions as fractions of the side."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        u = lambda: float(torch.rand((), generator=g))  # noqa: E731
        pick = lambda seq: seq[int(torch.randint(len(seq), (), generator=g))]  # noqa: E731
        task = TASKS[index % len(TASKS)]
        shape, colour = pick(SHAPES), pick(list(COLOURS))
        if task == "colors":
            r = 0.2 + 0.08 * u()
            objects = [(shape, colour, 0.35 + 0.3 * u(), 0.35 + 0.3 * u(), r)]
            return objects, f"a photo of {_article(colour)} {colour} {shape}"
        if task == "counting":
            n = 2 + int(torch.randint(3, (), generator=g))
            cells = torch.randperm(4, generator=g)[:n].tolist()
            r = 0.1 + 0.04 * u()
            objects = [
                (shape, colour, 0.27 + 0.46 * (c % 2) + 0.06 * (u() - 0.5), 0.27 + 0.46 * (c // 2), r) for c in cells
            ]
            return objects, f"a photo of {NUMBERS[n]} {colour} {shape}s"
        shape2 = pick([s for s in SHAPES if s != shape]) if u() < 0.7 else shape
        colour2 = pick([c for c in COLOURS if c != colour])
        r = 0.13 + 0.05 * u()
        if task == "position":
            relation = pick(RELATIONS)
            near, far, across = 0.27 + 0.04 * (u() - 0.5), 0.73 + 0.04 * (u() - 0.5), 0.35 + 0.3 * u()
            a, b = {
                "left of": ((near, across), (far, across)),
                "right of": ((far, across), (near, across)),
                "above": ((across, near), (across, far)),
                "below": ((across, far), (across, near)),
            }[relation]
            objects = [(shape, colour, *a, r), (shape2, colour2, *b, r)]
            what = f"{_article(colour)} {colour} {shape} {relation} {_article(colour2)} {colour2} {shape2}"
            return objects, f"a photo of {what}"
        flip = u() < 0.5  # color_attr: the two objects side by side, either order
        xs = (0.28, 0.72) if not flip else (0.72, 0.28)
        objects = [(shape, colour, xs[0], 0.35 + 0.3 * u(), r), (shape2, colour2, xs[1], 0.35 + 0.3 * u(), r)]
        what = f"{_article(colour)} {colour} {shape} and {_article(colour2)} {colour2} {shape2}"
        return objects, f"a photo of {what}"

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        objects, _ = self.scene(index)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index + 7)
        tone = 0.78 + 0.12 * float(torch.rand((), generator=g))
        image = (tone - 0.1 * (self.yy - 0.5)).expand(3, -1, -1).clone()
        for shape, colour, cx, cy, r in objects:
            dx, dy = self.xx - cx, self.yy - cy
            mask = {
                "circle": dx.square() + dy.square() < r * r,
                "square": (dx.abs() < 0.85 * r) & (dy.abs() < 0.85 * r),
                "triangle": (dy.abs() < r) & (dx.abs() < (dy + r) * 0.6),
            }[shape]
            image = torch.where(mask, torch.tensor(COLOURS[colour]).view(3, 1, 1), image)
        return (image.clamp(0, 1) * 255).round().to(torch.uint8), index


def _under_root(where: str, root: str | Path | None) -> str:
    """A relative DIR or PATTERN that is not there from the working directory is looked up under the data
    root (``--data-root``, ``$MAMBABENCH_DATA``), as the named data sets are: ``captions:coco`` ->
    ``<root>/coco`` (how a table preset names its caption data)."""
    path = Path(where)
    if path.is_absolute() or root is None or path.exists() or glob.glob(where.split("{")[0] + "*"):
        return where
    return str(Path(root) / where)


def open_caption_dataset(name: str, size: int, split: str = "train", root: str | Path | None = None) -> Dataset:
    """``captions:DIR``, ``wds:PATTERN`` or ``captioned-shapes`` (the test split of the built-in set is another
    seed; the on-disk sets have one split)."""
    if name == "captioned-shapes":
        return CaptionedShapes(size=size, seed=0 if split == "train" else 1)
    kind, _, where = name.partition(":")
    where = _under_root(where, root)
    if kind == "captions":
        return CaptionFolder(where, size)
    if kind == "wds":
        return WebDatasetShards(where, size)
    raise UserError(f"unknown caption data set {name!r}; use captions:DIR, wds:PATTERN or captioned-shapes")


def is_caption_dataset(name: str) -> bool:
    return name == "captioned-shapes" or name.startswith(("captions:", "wds:"))


def caption_dataset_present(name: str, root: str | Path | None = None) -> bool:
    if name == "captioned-shapes":
        return True
    kind, _, where = name.partition(":")
    where = _under_root(where, root)
    if kind == "captions":
        return Path(where).is_dir()
    if kind == "wds":
        try:
            return bool(expand_shards(where))
        except UserError:
            return False
    return False


def captions_of(dataset: Dataset) -> list[str] | None:
    """The captions of a caption data set (index-aligned with its items), or None for any other set."""
    captions = getattr(dataset, "captions", None)
    return list(captions) if captions is not None else None

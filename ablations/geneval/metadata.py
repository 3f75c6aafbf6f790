"""GenEval's inputs: the prompt metadata (``evaluation_metadata.jsonl``) and a folder of generated images in
GenEval's layout, read and checked before any model loads, so bad input is one line and exit 2.

The metadata file is GenEval's own (``prompts/evaluation_metadata.jsonl`` of djghosh13/geneval): 553 JSON
lines, each ``{"tag", "prompt", "include": [{"class", "count", "color"?, "position"?}], "exclude"?: [...]}``
over the six tasks of ``TASKS``. The image folder is the layout GenEval's generation script writes (and
``evaluate_images.py`` reads): ``<index>/metadata.jsonl`` (that prompt's metadata line) and
``<index>/samples/<n>.png``. As the official script does, only all-digit folder names and ``<digits>.png``
sample names count; anything else in the folder (our ``geneval/`` results folder) is ignored.

Our choices where GenEval is silent: every prompt folder must hold the same number of samples, at least
``per_prompt`` (4, the protocol's default); with a metadata file every one of its lines must have its folder
(``<index>`` as a number, so ``00012`` and ``12`` are both prompt 12) holding that same line, so a summary
always covers the whole benchmark."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from mambabench.errors import UserError

TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")

# GenEval's object_names.txt: COCO's 80 classes in COCO's order (the detector's label order), with GenEval's
# names for three of them (mouse, remote, keyboard), which its prompts use.
CLASSES = tuple(
    (
        "person, bicycle, car, motorcycle, airplane, bus, train, truck, boat, traffic light, fire hydrant, "
        "stop sign, parking meter, bench, bird, cat, dog, horse, sheep, cow, elephant, bear, zebra, giraffe, "
        "backpack, umbrella, handbag, tie, suitcase, frisbee, skis, snowboard, sports ball, kite, baseball bat, "
        "baseball glove, skateboard, surfboard, tennis racket, bottle, wine glass, cup, fork, knife, spoon, "
        "bowl, banana, apple, sandwich, orange, broccoli, carrot, hot dog, pizza, donut, cake, chair, couch, "
        "potted plant, bed, dining table, toilet, tv, laptop, computer mouse, tv remote, computer keyboard, "
        "cell phone, microwave, oven, toaster, sink, refrigerator, book, clock, vase, scissors, teddy bear, "
        "hair drier, toothbrush"
    ).split(", ")
)

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
RELATIONS = ("left of", "right of", "above", "below")
PER_PROMPT = 4
_SAMPLE = re.compile(r"\d+\.png")


@dataclass(frozen=True)
class Prompt:
    """One prompt folder: its index, its metadata line and its sample files (sorted by number)."""

    index: int
    folder: Path
    metadata: dict
    samples: tuple[Path, ...]


def check_metadata(entry: object, where: str) -> dict:
    """One metadata line checked against GenEval's shape; a ``UserError`` naming ``where`` otherwise."""

    def bad(why: str) -> UserError:
        return UserError(f"{where}: not GenEval metadata ({why}); use GenEval's prompts/evaluation_metadata.jsonl")

    if not isinstance(entry, dict):
        raise bad("a line is not a JSON object")
    if entry.get("tag") not in TASKS:
        raise bad(f"tag {entry.get('tag')!r} is none of {', '.join(TASKS)}")
    if not isinstance(entry.get("prompt"), str):
        raise bad("no prompt")
    include, exclude = entry.get("include"), entry.get("exclude", [])
    if not isinstance(include, list) or not include or not isinstance(exclude, list):
        raise bad("include must be a non-empty list, exclude a list")
    for position, clause in enumerate(include + exclude):
        if not isinstance(clause, dict) or not isinstance(clause.get("count"), int) or clause["count"] < 1:
            raise bad("every clause needs a class and a count >= 1")
        if clause.get("class") not in CLASSES:
            raise bad(f"class {clause.get('class')!r} is not one of the 80 COCO classes GenEval detects")
        if "color" in clause and clause["color"] not in COLORS:
            raise bad(f"colour {clause['color']!r} is none of {', '.join(COLORS)}")
        if "position" in clause:
            relation = clause["position"]
            valid = isinstance(relation, list) and len(relation) == 2 and relation[0] in RELATIONS
            if not valid or not isinstance(relation[1], int) or not 0 <= relation[1] < min(position, len(include)):
                raise bad(f"position {relation!r} is not [relation, index of an earlier include clause]")
    return entry


def read_metadata(path: Path) -> list[dict]:
    """Every line of GenEval's ``evaluation_metadata.jsonl``, checked."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"metadata file {path} not found: download prompts/evaluation_metadata.jsonl from GenEval")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{number}: not a JSON line; use GenEval's evaluation_metadata.jsonl") from None
        entries.append(check_metadata(entry, f"{path}:{number}"))
    if not entries:
        raise UserError(f"{path} holds no prompts; use GenEval's evaluation_metadata.jsonl")
    return entries


def _same(a: dict, b: dict) -> bool:
    keys = ("tag", "prompt", "include", "exclude")
    return all(a.get(k) == b.get(k) for k in keys)


def read_folder(images: Path, metadata: list[dict] | None = None, per_prompt: int = PER_PROMPT) -> list[Prompt]:
    """The prompt folders of ``images`` in GenEval's layout, checked (and matched against ``metadata``)."""
    images = Path(images)
    if not images.is_dir():
        raise UserError(f"image folder {images} not found")
    prompts = []
    for folder in sorted((p for p in images.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        line = folder / "metadata.jsonl"
        if not line.is_file():
            raise UserError(f"{line} is missing: every prompt folder holds its metadata line (GenEval's layout)")
        try:
            entry = json.loads(line.read_text().strip().splitlines()[0])
        except (json.JSONDecodeError, IndexError):
            raise UserError(f"{line}: not a JSON line of GenEval metadata") from None
        check_metadata(entry, str(line))
        names = sorted(
            (p for p in (folder / "samples").glob("*.png") if _SAMPLE.fullmatch(p.name)), key=lambda p: int(p.stem)
        )
        prompts.append(Prompt(int(folder.name), folder, entry, tuple(names)))
    if not prompts:
        raise UserError(f"{images} holds no prompt folders (<index>/metadata.jsonl, <index>/samples/NNNN.png)")
    if len({p.index for p in prompts}) != len(prompts):
        raise UserError(f"{images}: two folders name the same prompt index")
    expected = max(per_prompt, max(len(p.samples) for p in prompts))
    for prompt in prompts:
        if len(prompt.samples) < expected:
            have = {int(p.stem) for p in prompt.samples}
            first = next(n for n in range(expected) if n not in have)
            raise UserError(
                f"missing sample {prompt.folder / 'samples' / f'{first:05d}.png'}: {len(prompt.samples)} of "
                f"{expected} images for prompt {prompt.index} (sample every prompt {expected} times)"
            )
    if metadata is not None:
        by_index = {p.index: p for p in prompts}
        for index, entry in enumerate(metadata):
            if index not in by_index:
                raise UserError(f"prompt {index} ({entry['prompt']!r}) has no folder {images / f'{index:05d}'}")
            if not _same(by_index[index].metadata, entry):
                raise UserError(f"{by_index[index].folder / 'metadata.jsonl'} is not line {index + 1} of the metadata")
        extra = sorted(set(by_index) - set(range(len(metadata))))
        if extra:
            raise UserError(f"{images}: prompt folder {extra[0]} is beyond the {len(metadata)} prompts of the metadata")
    return prompts

"""Scoring a GenEval image folder: every sample through the detector, the rules and the colour step, one
line per image in ``results.jsonl`` (the official columns: filename, tag, prompt, correct, reason, metadata,
details; plus the detector and CLIP that scored it), then the summary.

``results.jsonl`` is appended to and flushed after every image, so an interrupted scoring resumes without
rescoring finished images: at start the lines already there are read back (a last line cut off by a kill is
dropped and the file rewritten atomically), and only the images they lack are scored. Lines scored by
another detector or CLIP are not mixed with new ones: that is a ``UserError`` asking for another ``--out``.

The summary follows GenEval's ``summary_scores.py``: per task the fraction of its images that are correct,
overall the unweighted mean of the task scores, plus the fraction of correct images and of prompts with at
least one correct image. It is written atomically to ``summary.json`` beside ``results.jsonl``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ablations.geneval.metadata import TASKS, Prompt
from ablations.geneval.rules import Detections, evaluate, keep_objects, overall, task_scores
from mambabench.errors import UserError
from mambabench.files import atomic_write_json, atomic_write_text

RESULTS, SUMMARY = "results.jsonl", "summary.json"


def load_image(path: Path) -> Image.Image:
    """The sample as RGB with its EXIF orientation applied (as the official script reads it)."""
    try:
        with Image.open(path) as image:
            image.load()
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        raise UserError(f"{path} does not decode as an image: regenerate it or remove its prompt folder") from None


def check_images(prompts: Sequence[Prompt]) -> None:
    """Every sample opens as an image (PIL's header and checksum check): a broken file is one line before any
    model loads (a file that passes and still fails to decode is the same error when it is scored)."""
    for prompt in prompts:
        for sample in prompt.samples:
            try:
                with Image.open(sample) as image:
                    image.verify()
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
                raise UserError(
                    f"{sample} does not decode as an image: regenerate it or remove its prompt folder"
                ) from None


def score_image(
    image: Image.Image, metadata: dict, detector: Callable[[Image.Image], Detections], colours
) -> tuple[bool, str, dict]:
    """(correct, reason, kept objects) of one image."""
    objects = keep_objects(detector(image), metadata["tag"])
    correct, reason = evaluate(objects, metadata, lambda name, found: colours(image, name, found))
    return correct, reason, objects


def read_results(path: Path) -> list[dict]:
    """The complete lines of a ``results.jsonl``; a last line cut off mid-write is dropped from the file."""
    if not path.is_file():
        return []
    text = path.read_text()
    lines = text.splitlines()
    rows = []
    for number, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines) - 1:
                raise UserError(f"{path}:{number + 1} is not a JSON line: remove the file to score afresh") from None
    if len(rows) < len(lines) or (text and not text.endswith("\n")):  # cut off: the next append starts a line
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def score_folder(
    prompts: Sequence[Prompt],
    images: Path,
    detector,
    colours,
    out: Path,
    on_image: Callable[[], None] | None = None,
) -> list[dict]:
    """Score every sample of ``prompts`` not yet in ``out/results.jsonl``; returns every result line."""
    results_file = Path(out) / RESULTS
    scorer = {"detector": f"{detector.backend}: {detector.name}", "clip": f"{colours.backend}: {colours.name}"}
    rows = read_results(results_file)
    for row in rows:
        if {k: row.get(k) for k in scorer} != scorer:
            raise UserError(
                f"{results_file} was scored with {row.get('detector')} and {row.get('clip')}, not "
                f"{scorer['detector']} and {scorer['clip']}: pass another --out or remove it"
            )
    wanted = {str(s.relative_to(images)) for p in prompts for s in p.samples}
    done = {row["filename"] for row in rows} & wanted
    todo = [(p, s) for p in prompts for s in p.samples if str(s.relative_to(images)) not in done]
    for _ in range(len(done) if on_image else 0):
        on_image()
    results_file.parent.mkdir(parents=True, exist_ok=True)
    with open(results_file, "a") as handle:
        for prompt, sample in todo:
            correct, reason, objects = score_image(load_image(sample), prompt.metadata, detector, colours)
            row = {
                "filename": str(sample.relative_to(images)),
                "tag": prompt.metadata["tag"],
                "prompt": prompt.metadata["prompt"],
                "correct": correct,
                "reason": reason,
                "metadata": json.dumps(prompt.metadata),
                "details": json.dumps({k: [[*d.box, d.score] for d in v] for k, v in objects.items()}),
                **scorer,
            }
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            rows.append(row)
            if on_image:
                on_image()
    return [row for row in rows if row["filename"] in wanted]


def summarise(rows: Sequence[dict]) -> dict:
    """GenEval's summary of result lines: the six task scores (those present), overall, counts."""
    scores = task_scores(rows)
    tasks = {task: scores[task] for task in TASKS if task in scores}
    prompts: dict[str, bool] = {}
    for row in rows:
        prompts[row["metadata"]] = prompts.get(row["metadata"], False) or bool(row["correct"])
    return {
        "tasks": tasks,
        "overall": overall(tasks) if tasks else None,
        "missing_tasks": [task for task in TASKS if task not in scores],
        "images": len(rows),
        "prompts": len(prompts),
        "correct_images": sum(bool(r["correct"]) for r in rows) / len(rows) if rows else None,
        "correct_prompts": sum(prompts.values()) / len(prompts) if prompts else None,
        "detector": rows[0]["detector"] if rows else None,
        "clip": rows[0]["clip"] if rows else None,
    }


def write_summary(out: Path, summary: dict) -> Path:
    return atomic_write_json(Path(out) / SUMMARY, summary, indent=2)

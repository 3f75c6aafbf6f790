"""GenEval's rules, as the official ``evaluate_images.py`` (djghosh13/geneval) applies them, as pure functions
over one image's detections (boxes, masks, scores, class names); the models are elsewhere, so the tests can
script every case.

1. **Which detections count** (``keep_objects``): per class, the detections scoring strictly above 0.3 (0.9
   for the ``counting`` task), most confident first, at most 16 per class; then the official greedy NMS,
   which keeps the most confident box and drops the others of its class that overlap it by an IoU of at
   least ``max_overlap`` (the official default is 1.0, which switches NMS off: GenEval relies on the
   detector's own de-duplication; the IoU is the official one, with the +1 pixel convention).
2. **Whether the image is correct** (``evaluate``): every ``include`` clause must find ``count`` objects of its
   class (the most confident ones); with a ``color`` their colours (``colours``, the CLIP step) must all be
   that colour; with a ``position`` each of them must stand in that relation to every object matched by the
   clause it names; any ``exclude`` clause that finds ``count`` or more objects makes the image wrong (this is
   how ``counting`` is wrong when one more instance is found: its metadata excludes count + 1). The failure
   ``reason`` is the official wording, one line per failed clause.
3. **Relative position** (``relative_position``): from the two boxes' centres; each offset is shrunk by 0.1
   times the sum of the two boxes' sizes on that axis (the official relative margin), then normalised by the
   raw offset's length; left/right/above/below when a component passes 0.5 (image y grows downwards).

The colour step is a function passed in (``ColourFn``: class name and that class's kept objects to one colour
name each), so these rules never load CLIP.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ablations.geneval.metadata import COLORS

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
MAX_OVERLAP = 1.0  # the official NMS IoU threshold: 1.0 = off
POSITION_MARGIN = 0.1


@dataclass(frozen=True)
class Detection:
    """One detected instance: box (x1, y1, x2, y2) in pixels, confidence, and its mask ((H, W) bool) or None."""

    box: tuple[float, float, float, float]
    score: float
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)


Detections = Mapping[str, Sequence[Detection]]  # by class name
ColourFn = Callable[[str, Sequence[Detection]], list[str]]


def compute_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """The official IoU of two (x1, y1, x2, y2) boxes: areas count the +1 pixel of inclusive coordinates."""

    def area(box: Sequence[float]) -> float:
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)

    inter = area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = area(a) + area(b) - inter
    return inter / union if union else 0.0


def keep_objects(
    detections: Detections,
    tag: str,
    threshold: float = THRESHOLD,
    counting_threshold: float = COUNTING_THRESHOLD,
    max_objects: int = MAX_OBJECTS,
    max_overlap: float = MAX_OVERLAP,
) -> dict[str, list[Detection]]:
    """The objects GenEval counts, per class, most confident first (classes with none are left out)."""
    cutoff = counting_threshold if tag == "counting" else threshold
    kept = {}
    for classname, found in detections.items():
        order = sorted((d for d in found if d.score > cutoff), key=lambda d: d.score, reverse=True)[:max_objects]
        chosen = []
        while order:
            best = order.pop(0)
            chosen.append(best)
            if max_overlap < 1:
                order = [d for d in order if compute_iou(best.box, d.box) < max_overlap]
        if chosen:
            kept[classname] = chosen
    return kept


def relative_position(a: Detection, b: Detection, margin: float = POSITION_MARGIN) -> set[str]:
    """Where ``a`` stands relative to ``b``: a subset of {left of, right of, above, below}; empty when the
    centres are closer than the margin on both axes."""
    box_a, box_b = np.asarray(a.box, dtype=np.float64), np.asarray(b.box, dtype=np.float64)
    offset = (box_a[:2] + box_a[2:]) / 2 - (box_b[:2] + box_b[2:]) / 2
    sizes = np.abs(box_a[2:] - box_a[:2]) + np.abs(box_b[2:] - box_b[:2])
    revised = np.maximum(np.abs(offset) - margin * sizes, 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def evaluate(objects: Detections, metadata: Mapping, colours: ColourFn) -> tuple[bool, str]:
    """(correct, reason) of one image from its kept objects (``keep_objects``) and its metadata line."""
    correct, reasons, matched_groups = True, [], []
    for clause in metadata.get("include", []):
        classname, count = clause["class"], clause["count"]
        found = list(objects.get(classname, []))[:count]
        matched = True
        if len(found) < count:
            matched = False
            reasons.append(f"expected {classname}>={count}, found {len(found)}")
        else:
            if "color" in clause:
                names = colours(classname, found)
                wanted = clause["color"]
                if names.count(wanted) < count:
                    matched = False
                    seen = ", ".join(f"{names.count(c)} {c}" for c in COLORS if c in names)
                    reasons.append(
                        f"expected {wanted} {classname}>={count}, found {names.count(wanted)} {wanted}; and {seen}"
                    )
            if "position" in clause and matched:
                relation, target = clause["position"]
                if matched_groups[target] is None:
                    matched = False
                    reasons.append(f"no target for {classname} to be {relation}")
                else:
                    matched, reason = _positioned(found, matched_groups[target], classname, relation)
                    reasons += [reason] if reason else []
        correct = correct and matched
        matched_groups.append(found if matched else None)
    for clause in metadata.get("exclude", []):
        found = objects.get(clause["class"], [])
        if len(found) >= clause["count"]:
            correct = False
            reasons.append(f"expected {clause['class']}<{clause['count']}, found {len(found)}")
    return correct, "\n".join(reasons)


def _positioned(found, targets, classname: str, relation: str) -> tuple[bool, str]:
    """Whether every found object stands in ``relation`` to every target; the official reason at the first miss."""
    for obj in found:
        for target in targets:
            seen = relative_position(obj, target)
            if relation not in seen:
                # the official script joins a set: its order is Python's; sorted here so reasons are reproducible
                return False, f"expected {classname} {relation} target, found {' and '.join(sorted(seen))} target"
    return True, ""


def task_scores(results: Sequence[Mapping]) -> dict[str, float]:
    """Per task (``tag``), the fraction of its images that are correct."""
    by_task: dict[str, list[bool]] = {}
    for row in results:
        by_task.setdefault(row["tag"], []).append(bool(row["correct"]))
    return {tag: sum(values) / len(values) for tag, values in by_task.items()}


def overall(scores: Mapping[str, float]) -> float:
    """GenEval's overall score: the unweighted mean of the task scores."""
    return math.fsum(scores.values()) / len(scores) if scores else float("nan")

"""GenEval (Ghosh et al. 2023), the text-to-image metric of T2MD's Table 1, scored offline as GenEval's
``evaluate_images.py`` scores it: object-focused compositional correctness of images generated from its 553
prompts, judged by a Mask2Former detector and CLIP.

- ``metadata``: the prompt metadata file and the image folder in GenEval's layout, checked;
- ``rules``: the official rules as pure functions over detections (thresholds, NMS, counting, position,
  the correctness of an image and its reason, the task and overall scores);
- ``detectors``: Mask2Former through transformers (default) or mmdet (the official backend);
- ``colour``: the CLIP ViT-L/14 zero-shot colour step (open_clip or transformers);
- ``score``: a folder scored into ``results.jsonl`` with resume, and the summary.

The command is ``ablations geneval``; docs/geneval.md says where the metadata and the weights come from.
"""

from __future__ import annotations

from ablations.geneval.metadata import CLASSES, COLORS, TASKS, Prompt, read_folder, read_metadata
from ablations.geneval.rules import Detection, evaluate, keep_objects, relative_position
from ablations.geneval.score import score_folder, summarise

__all__ = [
    "CLASSES",
    "COLORS",
    "TASKS",
    "Detection",
    "Prompt",
    "evaluate",
    "keep_objects",
    "read_folder",
    "read_metadata",
    "relative_position",
    "score_folder",
    "summarise",
]

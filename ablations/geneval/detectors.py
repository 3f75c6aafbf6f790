"""GenEval's detector, Mask2Former (Swin-S, COCO instance segmentation), behind one call: an image in, every
instance with its class, box, score and mask out (``Detections``); ``rules.keep_objects`` then applies
GenEval's thresholds.

Two backends, whose name goes into every result and report because they can differ slightly:

- ``transformers`` (the default): ``Mask2FormerForUniversalSegmentation`` and its image processor from a local
  folder (facebook/mask2former-swin-small-coco-instance, the same network as the official checkpoint). The
  post-processing is mmdet's Mask2Former instance post-processing, written here so it does not depend on the
  transformers version: class scores are the softmax without the no-object class, the top 100 (query,
  class) pairs are kept, each query's mask logits are upsampled to the padded input, cropped to the resized
  image and resized to the original (bilinear), binarised at 0, the score is multiplied by the mean mask
  probability inside the mask, and the box is the mask's bounding box (x2, y2 exclusive, mmdet's
  ``mask2bbox``). What can differ from the official run is the input size: the folder's image processor
  (its preprocessor_config.json) resizes, where mmdet's test pipeline resizes to 1333x800 (a 512 px sample
  to 800x800).
- ``mmdet`` (the official one): mmdet's ``init_detector`` / ``inference_detector`` with a config file
  (mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py) and GenEval's checkpoint, when mmdet is installed;
  results of mmdet 2.x (per-class arrays) and 3.x (``DetDataSample``) are both read.

Labels map to ``metadata.CLASSES`` by index (COCO order), as the official script maps them to
``object_names.txt``; a detector without exactly 80 classes is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from ablations.geneval.metadata import CLASSES
from ablations.geneval.rules import Detection
from mambabench.errors import UserError

TRANSFORMERS_DETECTOR = "facebook/mask2former-swin-small-coco-instance"
MMDET_CHECKPOINT = "GenEval's evaluation/download_models.sh (mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth)"
MAX_PER_IMAGE = 100  # mmdet's test_cfg max_per_image for Mask2Former


class Detector(Protocol):
    backend: str
    name: str

    def __call__(self, image: Image.Image) -> dict[str, list[Detection]]: ...


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, 4) x1, y1, x2, y2 of (N, H, W) boolean masks, x2 and y2 exclusive (mmdet's ``mask2bbox``); zeros
    for an empty mask."""
    boxes = torch.zeros(masks.shape[0], 4)
    cols, rows = masks.any(dim=1), masks.any(dim=2)
    for i in range(masks.shape[0]):
        x, y = torch.where(cols[i])[0], torch.where(rows[i])[0]
        if len(x) and len(y):
            boxes[i] = torch.tensor([x[0], y[0], x[-1] + 1, y[-1] + 1], dtype=torch.float32)
    return boxes


def instances(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    input_size: tuple[int, int],
    valid_size: tuple[int, int],
    image_size: tuple[int, int],
    max_per_image: int = MAX_PER_IMAGE,
) -> dict[str, list[Detection]]:
    """mmdet's Mask2Former instance post-processing of one image's queries: ``class_logits`` (Q, C + 1),
    ``mask_logits`` (Q, h, w); sizes are (height, width) of the padded input, its valid part and the image."""
    scores = class_logits.float().softmax(-1)[:, :-1]
    classes = scores.shape[1]
    top_scores, top = scores.flatten().topk(min(max_per_image, scores.numel()))
    labels, queries = top % classes, top // classes
    masks = torch.nn.functional.interpolate(
        mask_logits[queries][None].float(), size=input_size, mode="bilinear", align_corners=False
    )[..., : valid_size[0], : valid_size[1]]
    masks = torch.nn.functional.interpolate(masks, size=image_size, mode="bilinear", align_corners=False)[0]
    binary = masks > 0
    mask_scores = (masks.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    final = (top_scores * mask_scores).tolist()
    boxes = mask_boxes(binary).tolist()
    binary = binary.cpu().numpy()
    found: dict[str, list[Detection]] = {}
    for i, label in enumerate(labels.tolist()):
        found.setdefault(CLASSES[label], []).append(Detection(tuple(boxes[i]), final[i], binary[i]))
    return found


class TransformersMask2Former:
    """Mask2Former through transformers, from a local folder (config, weights, preprocessor_config.json)."""

    backend = "transformers"

    def __init__(self, folder: Path, device: torch.device | str = "cpu"):
        folder = Path(folder)
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise UserError(
                f"detector folder {folder} not found (no config.json): download {TRANSFORMERS_DETECTOR} from "
                "the Hugging Face hub into it (see docs/geneval.md) and pass it with --detector"
            )
        config = json.loads(config_file.read_text())
        if config.get("model_type") != "mask2former":
            raise UserError(
                f"--detector {folder} holds a {config.get('model_type')!r} model, not Mask2Former "
                f"({TRANSFORMERS_DETECTOR})"
            )
        labels = len(config.get("id2label") or {}) or config.get("num_labels")
        if labels != len(CLASSES):
            raise UserError(f"--detector {folder} detects {labels} classes, not COCO's 80 ({TRANSFORMERS_DETECTOR})")
        try:
            from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor
        except ImportError:
            raise UserError(
                "the transformers detector needs transformers and scipy: pip install 'mambabench[text]'"
            ) from None

        if not (folder / "preprocessor_config.json").is_file():
            raise UserError(f"--detector {folder} lacks preprocessor_config.json of {TRANSFORMERS_DETECTOR}")
        self.processor = Mask2FormerImageProcessor.from_pretrained(folder)
        self.model = Mask2FormerForUniversalSegmentation.from_pretrained(folder).to(device).eval()
        self.device = torch.device(device)
        self.name = f"Mask2Former {folder.name}"

    def __call__(self, image: Image.Image) -> dict[str, list[Detection]]:
        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device)
        with torch.no_grad():
            out = self.model(pixel_values=pixels, pixel_mask=inputs["pixel_mask"].to(self.device))
        mask = inputs["pixel_mask"][0].bool()
        valid = (int(mask.any(1).sum()), int(mask.any(0).sum()))
        return instances(
            out.class_queries_logits[0].cpu(),
            out.masks_queries_logits[0].cpu(),
            tuple(pixels.shape[-2:]),
            valid,
            (image.height, image.width),
        )


class MMDetMask2Former:
    """The official detector: mmdet with a Mask2Former config file and checkpoint."""

    backend = "mmdet"

    def __init__(self, config: Path, checkpoint: Path, device: torch.device | str = "cpu"):
        try:
            from mmdet.apis import init_detector
        except ImportError:
            raise UserError(
                "--detector-checkpoint needs mmdet (GenEval's official backend; see docs/geneval.md); "
                "without it pass a transformers Mask2Former folder as --detector"
            ) from None
        for what, path in (("config", config), ("checkpoint", checkpoint)):
            if not Path(path).is_file():
                raise UserError(f"mmdet {what} {path} not found: the checkpoint is {MMDET_CHECKPOINT}")
        self.model = init_detector(str(config), str(checkpoint), device=str(device))
        meta = getattr(self.model, "dataset_meta", None) or {}
        classes = meta.get("classes") or getattr(self.model, "CLASSES", None) or ()
        if len(classes) != len(CLASSES):
            raise UserError(f"--detector {config}: a model of {len(classes)} classes, not COCO's 80")
        self.name = f"Mask2Former {Path(checkpoint).stem}"

    def __call__(self, image: Image.Image) -> dict[str, list[Detection]]:
        from mmdet.apis import inference_detector

        result = inference_detector(self.model, np.asarray(image.convert("RGB"))[:, :, ::-1].copy())  # BGR
        found: dict[str, list[Detection]] = {}
        if hasattr(result, "pred_instances"):  # mmdet 3.x
            pred = result.pred_instances
            masks = pred.masks.cpu().numpy() if hasattr(pred, "masks") else None
            for i, (box, score, label) in enumerate(
                zip(pred.bboxes.tolist(), pred.scores.tolist(), pred.labels.tolist(), strict=True)
            ):
                found.setdefault(CLASSES[label], []).append(
                    Detection(tuple(box), score, None if masks is None else masks[i])
                )
            return found
        boxes, segms = result if isinstance(result, tuple) else (result, None)  # mmdet 2.x
        for label, rows in enumerate(boxes):
            for i, row in enumerate(rows):
                mask = None if segms is None else np.asarray(segms[label][i], dtype=bool)
                found.setdefault(CLASSES[label], []).append(Detection(tuple(row[:4].tolist()), float(row[4]), mask))
        return found


def load_detector(path: Path, checkpoint: Path | None = None, device: torch.device | str = "cpu") -> Detector:
    """mmdet when a checkpoint is given (``path`` is then its config file), else transformers from a folder."""
    if checkpoint is not None:
        return MMDetMask2Former(Path(path), Path(checkpoint), device)
    return TransformersMask2Former(Path(path), device)

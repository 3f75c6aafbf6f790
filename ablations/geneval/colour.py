"""GenEval's colour step: CLIP ViT-L/14 (OpenAI's weights) zero-shot over GenEval's ten colour names, on each
object's crop, as the official ``evaluate_images.py`` does it.

- The crop: the image with everything outside the object's mask replaced by grey #999999 (the official
  ``bgcolor`` default), cut to the object's box (PIL rounds the float box); without a mask, the plain box.
- The classifier: per object class, one text embedding per colour, the mean of the normalised embeddings of
  three prompts ("a photo of a {colour} {class}", "a photo of a {colour}-colored {class}", "a photo of a
  {colour} object"), normalised again (clip_benchmark's ``zero_shot_classifier``, which the official script
  calls); the colour is the argmax of the normalised image embedding against them.
- The model, from a local file or folder (``load_clip``): a file is open_clip's ViT-L-14 with the OpenAI
  weights (QuickGELU, as open_clip's ``pretrained="openai"`` builds it) and open_clip's preprocessing; a
  folder is a transformers ``CLIPModel`` with its tokenizer and image processor (openai/clip-vit-large-patch14
  is the same network). The official script runs CLIP under CUDA autocast; we run float32 on every device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ablations.geneval.metadata import COLORS
from ablations.geneval.rules import Detection
from mambabench.errors import UserError

BACKGROUND = "#999999"
TEMPLATES = ("a photo of a {c} {o}", "a photo of a {c}-colored {o}", "a photo of a {c} object")
OPEN_CLIP_WEIGHTS = "timm/vit_large_patch14_clip_224.openai (open_clip_model.safetensors)"
TRANSFORMERS_CLIP = "openai/clip-vit-large-patch14"


def masked_crop(image: Image.Image, detection: Detection, background: str = BACKGROUND) -> Image.Image:
    """The object's pixels over a grey background, cut to its box (the official crop)."""
    image = image.convert("RGB")
    if detection.mask is not None:
        mask = np.asarray(detection.mask, dtype=bool)
        if mask.shape != (image.height, image.width):
            raise ValueError(f"mask of shape {mask.shape} for an image of {image.height}x{image.width}")
        blank = Image.new("RGB", image.size, color=background)
        image = Image.composite(image, blank, Image.fromarray(mask))
    return image.crop(tuple(detection.box))


class ColourClassifier:
    """CLIP zero-shot over ``COLORS``; call it with an image, a class name and that class's objects."""

    def __init__(
        self,
        encode_text: Callable[[list[str]], torch.Tensor],
        encode_images: Callable[[list[Image.Image]], torch.Tensor],
        backend: str,
        name: str,
    ):
        self.encode_text, self.encode_images = encode_text, encode_images
        self.backend, self.name = backend, name
        self._classifiers: dict[str, torch.Tensor] = {}

    def classifier(self, classname: str) -> torch.Tensor:
        """(dim, colours): the zero-shot weights for objects of ``classname``."""
        if classname not in self._classifiers:
            columns = []
            with torch.no_grad():
                for colour in COLORS:
                    texts = [t.format(c=colour, o=classname) for t in TEMPLATES]
                    embedding = torch.nn.functional.normalize(self.encode_text(texts).float(), dim=-1).mean(0)
                    columns.append(embedding / embedding.norm())
            self._classifiers[classname] = torch.stack(columns, dim=1)
        return self._classifiers[classname]

    def __call__(self, image: Image.Image, classname: str, objects: Sequence[Detection]) -> list[str]:
        if not objects:
            return []
        crops = [masked_crop(image, obj) for obj in objects]
        with torch.no_grad():
            features = torch.nn.functional.normalize(self.encode_images(crops).float(), dim=-1)
        logits = 100.0 * features @ self.classifier(classname).to(features.device)
        return [COLORS[i] for i in logits.argmax(1).tolist()]


def _features(output) -> torch.Tensor:
    """transformers 4 returns the projected features; 5 an output whose pooler_output holds them."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def load_clip(path: Path, device: torch.device | str = "cpu") -> ColourClassifier:
    """The colour classifier from a local open_clip ViT-L-14 weights file or a transformers CLIP folder."""
    path = Path(path)
    if path.is_dir():
        return _transformers_clip(path, torch.device(device))
    if path.is_file():
        return _open_clip(path, torch.device(device))
    raise UserError(
        f"CLIP weights {path} not found: download {OPEN_CLIP_WEIGHTS} (a file) or the folder of "
        f"{TRANSFORMERS_CLIP} from the Hugging Face hub and pass it with --clip"
    )


def _transformers_clip(folder: Path, device: torch.device) -> ColourClassifier:
    try:
        from transformers import AutoConfig, AutoTokenizer, CLIPImageProcessor, CLIPModel
    except ImportError:
        raise UserError(f"--clip {folder}: a CLIP folder needs transformers: pip install 'mambabench[text]'") from None

    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise UserError(f"--clip {folder}: not a transformers model folder ({error}); see docs/geneval.md") from None
    if config.model_type != "clip":
        raise UserError(f"--clip {folder} holds a {config.model_type} model, not CLIP ({TRANSFORMERS_CLIP})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        processor = CLIPImageProcessor.from_pretrained(folder)
    except (OSError, ValueError):
        raise UserError(f"--clip {folder} lacks the tokenizer or preprocessor files of {TRANSFORMERS_CLIP}") from None
    model = CLIPModel.from_pretrained(folder).to(device).eval()
    length = config.text_config.max_position_embeddings

    def encode_text(texts: list[str]) -> torch.Tensor:
        tokens = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt")
        return _features(model.get_text_features(**{k: v.to(device) for k, v in tokens.items()}))

    def encode_images(crops: list[Image.Image]) -> torch.Tensor:
        pixels = processor(images=crops, return_tensors="pt")["pixel_values"].to(device)
        return _features(model.get_image_features(pixel_values=pixels))

    return ColourClassifier(encode_text, encode_images, "transformers", f"CLIPModel {folder.name}")


def _open_clip(file: Path, device: torch.device) -> ColourClassifier:
    try:
        import open_clip
    except ImportError:
        raise UserError(
            f"--clip {file} is an open_clip weights file and open_clip is not installed: pip install "
            "'mambabench[text]' (or pass a transformers CLIP folder)"
        ) from None
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            "ViT-L-14", pretrained=str(file), force_quick_gelu=True, device=device
        )
    except Exception as error:  # only the user's file loads in here: whatever it is, it is not these weights
        why = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        raise UserError(f"--clip {file}: not open_clip ViT-L-14 weights ({why}); see docs/geneval.md") from None
    model.eval()
    tokenizer = open_clip.get_tokenizer("ViT-L-14")

    def encode_text(texts: list[str]) -> torch.Tensor:
        return model.encode_text(tokenizer(texts).to(device))

    def encode_images(crops: list[Image.Image]) -> torch.Tensor:
        return model.encode_image(torch.stack([preprocess(c) for c in crops]).to(device))

    return ColourClassifier(encode_text, encode_images, "open_clip", f"ViT-L-14 openai ({file.name})")

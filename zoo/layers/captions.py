"""Class labels as caption embeddings, so text-conditioned models (PixArt, T2MD) train on the harness's
class-labelled data sets (CIFAR-10, ImageNet) unchanged.

Each class gets a fixed caption of ``tokens`` embeddings of width ``channels`` drawn from a generator seeded
by (seed, class), scaled like T5 outputs of unit RMS; the mask marks every token as real. The mapping is
deterministic across machines and runs, so checkpoints trained with it stay usable. To use a real text
encoder instead, encode prompts with a T5 encoder of width 4096 (e.g. "a photo of a {class name}") and pass
its last hidden state and attention mask as ``y`` and ``mask``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def class_captions(labels: Tensor, channels: int, tokens: int = 1, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(labels.shape[0], tokens, channels) caption embeddings and a (batch, tokens) all-True mask."""
    table = {}
    for label in labels.unique().tolist():
        generator = torch.Generator().manual_seed(seed * 1_000_003 + int(label))
        table[label] = torch.randn(tokens, channels, generator=generator)
    captions = torch.stack([table[label] for label in labels.tolist()]).to(labels.device)
    return captions, torch.ones(labels.shape[0], tokens, dtype=torch.bool, device=labels.device)

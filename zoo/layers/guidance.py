"""Classifier-free guidance shared by every model's ``forward_with_cfg``."""

from __future__ import annotations

import torch
from torch import Tensor


def combine_cfg(out: Tensor, noise_channels: int, scale: float) -> Tensor:
    """``out`` is the prediction for a batch whose second half repeats the first without conditioning.
    Returns eps = eps_u + scale (eps_c - eps_u) on the first ``noise_channels`` channels (all latent channels,
    unlike DiT's code, which guides three) for both halves; later channels (learned sigma) pass through.
    ``scale`` is the standard w (U-ViT's and DiM's code use w - 1)."""
    eps, rest = out[:, :noise_channels], out[:, noise_channels:]
    cond, uncond = eps.chunk(2, dim=0)
    guided = uncond + scale * (cond - uncond)
    return torch.cat([torch.cat([guided, guided], dim=0), rest], dim=1)

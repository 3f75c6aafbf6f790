"""A stand-in for StyleGAN-V's ``i3d_torchscript.pt`` with its interface and random weights (tests only)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RandomI3D(nn.Module):
    """StyleGAN-V's I3D call, ``net(uint8 clips (N, 3, T, H, W), rescale, resize, return_features)`` -> (N, D),
    on a random 3-D conv; it refuses any other flags, so the test also checks how FVD calls the network."""

    def __init__(self, dim: int = 12):
        super().__init__()
        self.conv = nn.Conv3d(3, 16, 3, stride=2, padding=1)
        self.head = nn.Linear(16, dim)
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")  # default init: near-constant features

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        if not (rescale and resize and return_features and x.dtype == torch.uint8):
            raise RuntimeError("called without StyleGAN-V's flags on uint8 clips")
        clip = x.float() / 127.5 - 1
        clip = F.interpolate(clip, size=(clip.shape[2], 32, 32), mode="trilinear", align_corners=False)
        return self.head(torch.relu(self.conv(clip)).mean(dim=(2, 3, 4)))


def write_random_i3d(path: Path, seed: int = 0) -> Path:
    """A scripted ``RandomI3D`` saved as a TorchScript file, like the real one."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated; the real file is TorchScript
        torch.jit.script(RandomI3D()).save(str(path))
    return path

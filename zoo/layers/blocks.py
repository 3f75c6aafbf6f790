"""The two small layers DiT-style models share, with timm's parameter names so checkpoints of the official
DiT / U-ViT / PixArt code load unchanged (``tests/test_layers.py`` checks parity with timm's modules).

Ours rather than ``timm.layers``: importing timm imports torchvision and with it ``torch._dynamo`` (3.1 s here),
which every command touching the registry paid for two ten-line layers; ``bench flops -m t2md -r 3840x2160``
went from ~7.5 s to ~6 s wall (meta-device execution still imports ``torch._dynamo`` on first use).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn


class Mlp(nn.Module):
    """fc1 -> activation -> fc2 (timm's ``Mlp`` with dropout 0 and no norm: the same state-dict keys)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
    ):
        super().__init__()
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches of any input size -> (batch, tokens, dim), row-major (timm's
    ``PatchEmbed(None, p, in_chans, dim)``: a strided conv named ``proj``)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, bias: bool = True):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)

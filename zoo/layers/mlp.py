"""The MLP of DiT-style blocks, with timm's parameter names so checkpoints of the official DiT / U-ViT /
PixArt code load unchanged (``tests/test_layers.py`` checks parity with timm's ``Mlp``).

Ours rather than ``timm.layers``: importing timm imports torchvision and ``torch._dynamo``, which every
command touching the registry would pay for a ten-line layer.
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

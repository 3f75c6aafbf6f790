"""Every family's tiny entry learns: a few optimiser steps on a fixed random batch lower the loss
(gradients flow through the custom ops and the CPU scan kernels)."""

from __future__ import annotations

import pytest
import torch

import zoo


@pytest.mark.parametrize("name", [n for n in zoo.list_models() if n.endswith("-tiny")])
def test_tiny_model_loss_decreases(name):
    entry = zoo.get_entry(name)
    model = zoo.create_model(name)
    size = entry.inputs.image_size // entry.inputs.spatial_factor
    x = torch.randn(4, entry.inputs.in_channels, size, size)
    t = torch.randint(0, 1000, (4,))
    spec = entry.inputs
    y = {
        "class": lambda: torch.randint(0, spec.num_classes, (4,)),
        "text": lambda: torch.randn(4, spec.caption_tokens, spec.caption_channels),
        "none": lambda: None,
    }[spec.conditioning]()
    noise = torch.randn_like(x)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        out = model(x, t, y)[:, : x.shape[1]]
        loss = (out - noise).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses

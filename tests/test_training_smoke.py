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
    # video entries: (B, C, T, H, W), as many clips as make 4 frames (the images of an image entry's batch)
    clip = (entry.inputs.frames,) if entry.inputs.frames else ()
    batch = max(1, 4 // entry.inputs.frames) if entry.inputs.frames else 4
    x = torch.randn(batch, entry.inputs.in_channels, *clip, size, size)
    t = torch.randint(0, 1000, (batch,))
    spec = entry.inputs
    y = {
        "class": lambda: torch.randint(0, spec.num_classes, (batch,)),
        "text": lambda: torch.randn(batch, spec.caption_tokens, spec.caption_channels),
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

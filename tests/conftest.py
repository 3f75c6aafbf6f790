"""Test-wide settings: one intra-op thread (a shared 2-core machine oversubscribes badly with two) and a
fixed seed per test."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

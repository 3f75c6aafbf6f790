"""The one device check every command runs on ``--device``."""

from __future__ import annotations

import torch

from mambabench.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``--device NAME`` as a torch device that exists on this machine, else a ``UserError`` saying what does."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name}: not a device; use cpu or cuda (cuda:N for one GPU)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: PyTorch sees no CUDA GPU on this machine; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(f"--device {name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"--device {name}: MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise UserError(f"--device {name}: not supported; use cpu or cuda (cuda:N for one GPU)")
    return device

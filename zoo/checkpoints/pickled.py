"""Training checkpoints that pickle more than tensors, read without running anything from the file.

The training scripts of several families save ``{"model", "ema", "opt", "args", ...}`` where ``args`` is the
script's configuration object: an ``argparse.Namespace`` (feizc/DiS, hustvl/DiG, facebookresearch/DiT
``train.py``) or a Hydra/OmegaConf ``DictConfig`` (CompVis/zigma ``train_acc.py``, whose released files are
such checkpoints, read through their ``"ema"`` entry). ``torch.load(weights_only=True)`` refuses those classes.
``load_with_stand_ins`` reads the file with the weights-only unpickler all the same: every global it refuses
is replaced by an inert stand-in class (it stores nothing and runs nothing), so the configuration comes back
as empty placeholders and the tensors as tensors. Nothing named in the file is imported or called.
"""

from __future__ import annotations

from pathlib import Path

import torch


class _StandIn:
    """Takes any constructor arguments and any pickled state, and keeps none of it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


def load_with_stand_ins(path: str | Path) -> object:
    """``torch.load(path, weights_only=True)`` with inert stand-ins for the globals the weights-only unpickler
    refuses; raises the unpickler's error when the torch in use cannot list them (before 2.6) or when the file
    still does not load."""
    serialization = torch.serialization
    if not hasattr(serialization, "get_unsafe_globals_in_checkpoint"):
        raise RuntimeError("this torch cannot list a checkpoint's globals (torch >= 2.6 can)")
    names = serialization.get_unsafe_globals_in_checkpoint(str(path))
    stand_ins = [(type(name.rsplit(".", 1)[-1], (_StandIn,), {}), name) for name in names]
    with serialization.safe_globals(stand_ins):
        return torch.load(path, map_location="cpu", weights_only=True)

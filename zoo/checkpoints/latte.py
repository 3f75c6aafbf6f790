"""Vchitect/Latte ``models/latte.py`` checkpoints (``ucf101.pt``: the EMA weights under ``ema``).

Our names are Latte's, which are DiT's (``x_embedder``, ``t_embedder``, ``y_embedder.embedding_table``,
``blocks.N``, ``final_layer``). Its two fixed tables are checked and dropped: ``pos_embed`` (DiT's 2-D sin-cos
of the training grid) and ``temp_embed`` (1, frames, dim), the 1-D sin-cos of the frame index, which our
model computes for the clip that comes in. Export writes the frame table for ``frames`` (16 in the UCF-101
model).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.checkpoints.dit import POS_EMBED
from zoo.checkpoints.layout import FixedTable, Layout, check_fixed_table, register_layouts
from zoo.layers.pos_embed import sincos_1d


def _check_temp_embed(table: Tensor, model: nn.Module) -> None:
    if table.dim() != 3 or table.shape[0] != 1:
        raise ValueError(f"temp_embed {tuple(table.shape)} is not a (1, frames, dim) frame table")
    with torch.device("cpu"):
        expected = sincos_1d(table.shape[-1], torch.arange(table.shape[1]))[None]
    check_fixed_table("temp_embed", table, expected, f"Latte's fixed sin-cos table of {table.shape[1]} frames")


def _build_temp_embed(model: nn.Module, frames: int = 16, **options: object) -> Tensor:
    return sincos_1d(model.x_embedder.proj.out_channels, torch.arange(frames))[None].float()


TEMP_EMBED = FixedTable("temp_embed", _check_temp_embed, _build_temp_embed)
OFFICIAL = Layout("official", "the official Latte layout (Vchitect/Latte)", tables=(POS_EMBED, TEMP_EMBED))

register_layouts("latte", OFFICIAL)

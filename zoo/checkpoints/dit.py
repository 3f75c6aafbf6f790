"""facebookresearch/DiT ``models.py`` checkpoints (``DiT-XL-2-256x256.pt``, ``DiT-XL-2-512x512.pt``: plain
state dicts of the EMA weights; its training checkpoints nest them under ``model`` / ``ema``).

Our names are DiT's. Its ``pos_embed`` is a saved, fixed sin-cos table (a frozen Parameter) of the training
grid (32 x 32 in ``DiT-XL-2-512x512.pt``); it is checked against ours (``sincos_2d``) and dropped, since our
DiT computes the table for whatever grid comes in.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.checkpoints.layout import FixedTable, Layout, check_fixed_table, register_layouts, square_grid
from zoo.layers.pos_embed import sincos_2d


def sincos_pos_embed_table(owner: str) -> FixedTable:
    """DiT's fixed 2-D sin-cos ``pos_embed`` of a square grid as ``owner``'s checkpoints save it (DiT's own, and
    DiG's, which keeps DiT's table): checked against ours and dropped on import, rebuilt on export."""

    def check(table: Tensor, model: nn.Module) -> None:
        grid = square_grid("pos_embed", table)
        with torch.device("cpu"):  # also when the model is built on the meta device
            expected = sincos_2d(table.shape[-1], grid, grid)[None]
        check_fixed_table("pos_embed", table, expected, f"{owner}'s fixed sin-cos table of a {grid}x{grid} grid")

    def build(model: nn.Module, **options: object) -> Tensor:
        grid = model.input_size // model.patch_size
        return sincos_2d(model.x_embedder.proj.out_channels, grid, grid)[None]

    return FixedTable("pos_embed", check, build)


POS_EMBED = sincos_pos_embed_table("DiT")
OFFICIAL = Layout("official", "the official DiT layout (facebookresearch/DiT)", tables=(POS_EMBED,))

register_layouts("dit", OFFICIAL)

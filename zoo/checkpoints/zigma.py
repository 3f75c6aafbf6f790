"""CompVis/zigma checkpoints (``model_zigma.ZigMa``), for the ``zigma`` family.

The container: ``train_acc.py`` saves ``{"model", "ema", "opt", "args", "train_steps", "best_fid"}`` (``args``
the Hydra config, read as an inert stand-in by ``zoo.checkpoints.pickled``), and ``sample_acc.py`` loads
``["ema"]`` with any ``module.`` prefix removed; the released files of the README (``faceshq1024_0090000.pt``,
``landscape1024_0210000.pt``: config ``s1024_zigzag8_b2_old``; ``churches256_0280000.pt``: ``zigzag8_b1_pe2``)
are read the same way, the ``ema`` entry first.

The names: ours are the official ones (``x_embedder.proj``, ``t_embedder.mlp.{0,2}``, ``pos_embed``,
``blocks.N.{norm,mixer.*,adaLN_modulation.1}``, ``norm_f``, ``final_layer.linear``; the mixer is mamba_ssm's
``Mamba`` with the zigzag permutation, which holds no tensor: the paths are plain lists in the code). Two
tensors differ, and this layout converts them:

- ``use_pe=1`` (fixed sin-cos): the code saves its table as the frozen parameter ``pos_embed`` of the training
  grid; ours (``pos_embed="sincos"``) computes it. It is checked against ours (MAE's table) and dropped, and
  written on export. (``use_pe=2``, learned, is ours as is; ``use_pe=0`` has none.)
- class-conditional models (``num_classes > 0``; none is released): the code's ``LabelEmbedder`` is built with
  ``dropout_prob=0.0``, so its table has ``num_classes`` rows and no null row; ours has the null row
  ``num_classes`` (the contract's unconditional label). On import the model keeps its own null row, as built
  (a label the official model never saw: guidance needs a model trained with label dropout); on export it is
  left out. A table that already has it (ours) is read as is.

What the weights do not say: the code multiplies t in [0, 1] by 1000 before its timestep embedding; ours
embeds t as given, so official sampling code calls ``model(x, 1000 * t)``. The text-conditioned (``has_text``,
MS COCO) and video (``zzvideo_*``, ``3d_*`` configs) models hold cross-attention and temporal tensors that our
model does not build: those checkpoints are refused by the strict check, naming the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zoo.checkpoints.layout import Layout, Rename, StateDict, check_fixed_table, register_layouts, square_grid
from zoo.layers.pos_embed import sincos_2d

POS_EMBED = "pos_embed"
LABEL_TABLE = "y_embedder.embedding_table.weight"


def _sincos_model(model: nn.Module) -> bool:
    return getattr(model, "pos_embed_kind", None) == "sincos"


@dataclass(frozen=True)
class ZigMaLayout(Layout):
    """The official names are ours; the fixed sin-cos table and the label table's null row are converted."""

    def to_ours(self, state: StateDict, model: nn.Module, model_name: str) -> tuple[StateDict, list[str], list[str]]:
        state, dropped = dict(state), []
        if _sincos_model(model) and POS_EMBED in state:
            table = state.pop(POS_EMBED)
            grid = square_grid(POS_EMBED, table)
            with torch.device("cpu"):  # also when the model is built on the meta device
                expected = sincos_2d(table.shape[-1], grid, grid)[None]
            what = f"ZigMa's fixed sin-cos table (use_pe=1) of a {grid}x{grid} grid"
            check_fixed_table(POS_EMBED, table, expected, what)
            dropped.append(POS_EMBED)
        classes = getattr(model, "num_classes", 0)
        table = state.get(LABEL_TABLE)
        if classes > 0 and table is not None and table.dim() == 2 and table.shape[0] == classes:
            null = model.state_dict()[LABEL_TABLE][-1:].detach()  # the model's own null row, as built
            if null.device != table.device or null.shape[1] != table.shape[1]:  # meta model / wrong width
                null = table.new_zeros(1, table.shape[1])
            state[LABEL_TABLE] = torch.cat([table, null.to(table.dtype)])
        state, more, kept = super().to_ours(state, model, model_name)
        return state, dropped + more, kept

    def from_ours(self, model: nn.Module, **options: Any) -> StateDict:
        state = super().from_ours(model, **options)
        if LABEL_TABLE in state:
            state[LABEL_TABLE] = state[LABEL_TABLE][:-1].clone()
        if _sincos_model(model):
            with torch.device("cpu"):
                table = sincos_2d(model.x_embedder.proj.out_channels, model.grid, model.grid)[None]
            state = {POS_EMBED: table, **state}
        return state


OFFICIAL = ZigMaLayout(
    "official",
    "the official ZigMa layout (CompVis/zigma model_zigma.ZigMa)",
    # the official names are ours: one identity rule per top-level module, so that the check in the official
    # names (complete) covers every tensor
    renames=tuple(
        Rename(name, name)
        for name in ("x_embedder.", "t_embedder.", "y_embedder.", POS_EMBED, "blocks.", "norm_f.", "final_layer.")
    ),
    markers=("",),  # any state dict of the family is read through it (the conversions apply only where needed)
    complete=True,
    grid_tables=(POS_EMBED,),  # use_pe=2: a learned table of another grid passes on to the size check
)

register_layouts("zigma", OFFICIAL)

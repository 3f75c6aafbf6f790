"""PixArt-alpha checkpoints, for the ``pixart`` and ``t2md`` families (T2MD keeps PixArt-alpha's skeleton).

- ``official``: PixArt-alpha ``PixArt.py`` / ``PixArtMS.py`` (the ``.pth`` files nest the state dict under
  ``state_dict``). Our names are PixArt's; the saved ``pos_embed`` buffer (fixed sin-cos with
  ``lewei_scale`` over the base grid) is checked and dropped.
- ``diffusers``: ``PixArtTransformer2DModel`` (``diffusion_pytorch_model.safetensors`` / ``.bin``:
  ``pos_embed.proj``, ``adaln_single.*``, ``caption_projection.*``, ``transformer_blocks.N.attn1.to_q`` ...),
  renamed, with q/k/v concatenated into ``qkv`` and k/v into ``kv_linear``. diffusers' conversion script
  (``convert_pixart_alpha_to_diffusers.py``) writes PixArt-alpha's null caption as
  ``caption_projection.y_embedding``: it loads into ``y_embedder.y_embedding``, so CFG guides against the
  checkpoint's null caption, as PixArt-alpha's own sampling does. A file without it (diffusers' own
  ``PixArtTransformer2DModel`` saves none: its pipelines guide against the T5 encoding of the empty prompt)
  leaves the model its own, and ``LoadReport.kept`` says so; export leaves it out, as diffusers' model has
  no such tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.checkpoints.layout import (
    FixedTable,
    Fuse,
    Layout,
    Rename,
    check_fixed_table,
    close,
    register_layouts,
    square_grid,
)
from zoo.layers.pos_embed import sincos_2d_pixart

NULL_CAPTION = "y_embedder.y_embedding"


def _table(model: nn.Module, grid: int, lewei_scale: float) -> Tensor:
    with torch.device("cpu"):  # also when the model is built on the meta device
        return sincos_2d_pixart(model.x_embedder.proj.out_channels, grid, grid, grid, lewei_scale)[None]


def _check_pos_embed(table: Tensor, model: nn.Module) -> None:
    grid = square_grid("pos_embed", table)
    if grid != model.base_size:
        raise ValueError(
            f"pos_embed is PixArt's table of a {grid}x{grid} base grid, this model's base grid is "
            f"{model.base_size}x{model.base_size}: pass input_size={grid * model.patch_size}"
        )
    scale = float(model.lewei_scale)
    fits = [s for s in (0.5, 1.0, 2.0) if s != scale and close(table, _table(model, grid, s))]
    hint = f": it is the table of lewei_scale={fits[0]:g}, pass that" if fits else ""
    what = f"PixArt's fixed sin-cos table (lewei_scale={scale:g}, {grid}x{grid})"
    check_fixed_table("pos_embed", table, _table(model, grid, scale), what, hint)


def _build_pos_embed(model: nn.Module, **options: object) -> Tensor:
    return _table(model, model.base_size, float(model.lewei_scale))


POS_EMBED = FixedTable("pos_embed", _check_pos_embed, _build_pos_embed)

OFFICIAL = Layout("official", "the official PixArt-alpha layout", tables=(POS_EMBED,))

_BLOCK = "transformer_blocks.{i}."
DIFFUSERS = Layout(
    "diffusers",
    "diffusers PixArt checkpoint",
    renames=(  # diffusers PixArtTransformer2DModel (official) <-> PixArt-alpha's names (ours)
        Rename("pos_embed.proj.", "x_embedder.proj."),
        Rename("adaln_single.emb.timestep_embedder.linear_1.", "t_embedder.mlp.0."),
        Rename("adaln_single.emb.timestep_embedder.linear_2.", "t_embedder.mlp.2."),
        Rename("adaln_single.emb.resolution_embedder.linear_1.", "csize_embedder.mlp.0."),
        Rename("adaln_single.emb.resolution_embedder.linear_2.", "csize_embedder.mlp.2."),
        Rename("adaln_single.emb.aspect_ratio_embedder.linear_1.", "ar_embedder.mlp.0."),
        Rename("adaln_single.emb.aspect_ratio_embedder.linear_2.", "ar_embedder.mlp.2."),
        Rename("adaln_single.linear.", "t_block.1."),
        Rename("caption_projection.linear_1.", "y_embedder.y_proj.fc1."),
        Rename("caption_projection.linear_2.", "y_embedder.y_proj.fc2."),
        Rename("caption_projection.y_embedding", NULL_CAPTION),  # diffusers' conversion script keeps it here
        Rename("proj_out.", "final_layer.linear."),
        Rename("scale_shift_table", "final_layer.scale_shift_table"),
        Rename(_BLOCK + "scale_shift_table", "blocks.{i}.scale_shift_table"),
        Rename(_BLOCK + "attn1.to_out.0.", "blocks.{i}.attn.proj."),
        Rename(_BLOCK + "attn2.to_q.", "blocks.{i}.cross_attn.q_linear."),
        Rename(_BLOCK + "attn2.to_out.0.", "blocks.{i}.cross_attn.proj."),
        Rename(_BLOCK + "ff.net.0.proj.", "blocks.{i}.mlp.fc1."),
        Rename(_BLOCK + "ff.net.2.", "blocks.{i}.mlp.fc2."),
    ),
    fuses=(
        Fuse((_BLOCK + "attn1.to_q.", _BLOCK + "attn1.to_k.", _BLOCK + "attn1.to_v."), "blocks.{i}.attn.qkv."),
        Fuse((_BLOCK + "attn2.to_k.", _BLOCK + "attn2.to_v."), "blocks.{i}.cross_attn.kv_linear."),
    ),
    tables=(POS_EMBED,),  # not in diffusers' files (it computes the table), checked when one holds it
    write_tables=False,
    keep=(NULL_CAPTION,),
    markers=("transformer_blocks.", "adaln_single.", "caption_projection."),
)

register_layouts("pixart", DIFFUSERS, OFFICIAL)
register_layouts("t2md", DIFFUSERS, OFFICIAL)

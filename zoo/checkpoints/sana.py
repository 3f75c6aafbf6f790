"""SANA checkpoints, for the ``sana`` family.

- ``official``: NVlabs/Sana's own ``.pth`` files (``Efficient-Large-Model/Sana_*`` ``checkpoints/*.pth``, the
  state dict under ``state_dict``; some files in bf16: loading casts to the model's dtype). Our names are
  ``SanaMS``'s, tensor for tensor and fused as there (``attn.qkv`` = [q | k | v], ``cross_attn.kv_linear`` =
  [k | v], Mix-FFN ``mlp.{inverted,depth,point}_conv.conv``, ``t_block.1``, ``y_embedder.y_proj.fc1/fc2``,
  the null caption ``y_embedder.y_embedding``, ``attention_y_norm``, ``final_layer.scale_shift_table``), so
  nothing is renamed. The files also save the ``pos_embed`` buffer (1, grid*grid, width) of the training grid
  (``input_size // patch_size``): zeros in the models without a position table (``use_pe: false``, the 512 /
  1024 px ones; any grid passes, the buffer is unused), PixArt's sin-cos table with ``pe_interpolation`` over
  that grid in the 2K / 4K ones (``use_pe: true``, ``pe_interpolation`` 1 / 2). It is checked against ours
  (``interpolation_scale``, ``input_size``; bf16 files within bf16 rounding) and dropped; export writes it.
  ``logvar_linear`` (SANA-Sprint's uncertainty head of the training loss, unused by the denoiser), where a
  file holds it, is dropped.
- ``diffusers``: ``SanaTransformer2DModel`` (``transformer/diffusion_pytorch_model.safetensors``, or its
  ``.bf16`` variant: ``patch_embed.proj``, ``time_embed.*``, ``caption_projection.*``, ``caption_norm``,
  ``transformer_blocks.N.attn1.to_q`` ...), renamed onto NVlabs/Sana's names (ours), with the self-attention's
  q/k/v concatenated into ``attn.qkv`` and the cross-attention's k/v into ``kv_linear``, as diffusers'
  ``convert_sana_to_diffusers.py`` splits them. diffusers' model keeps no null caption
  (``y_embedder.y_embedding``) and no position table (the 2K / 4K models' sin-cos table is computed, not
  saved): the model keeps its own null caption and ``LoadReport.kept`` says so; export leaves it out.

SANA 1.5 (``q_norm`` / ``k_norm``) and SANA-Sprint (``cfg_embedder``) files hold tensors our model lacks: the
strict load names them.
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
SCALES = (0.5, 1.0, 2.0)  # pe_interpolation values a saved table is matched against for the hint


def _sincos(model: nn.Module, grid: int, scale: float) -> Tensor:
    """NVlabs/Sana's saved table: PixArt's sin-cos over the square training grid, base_size = grid."""
    with torch.device("cpu"):  # also when the model is built on the meta device
        return sincos_2d_pixart(model.x_embedder.proj.out_channels, grid, grid, grid, scale)[None]


def _fitting_scale(table: Tensor, model: nn.Module, grid: int) -> float | None:
    return next((s for s in SCALES if close(table, _sincos(model, grid, s))), None)


def _check_pos_embed(table: Tensor, model: nn.Module) -> None:
    grid, width = square_grid("pos_embed", table), model.x_embedder.proj.out_channels
    if table.shape[-1] != width:
        raise ValueError(f"pos_embed {tuple(table.shape)} is not a table of this model's width {width}")
    scale, meta = model.interpolation_scale, table.device.type == "meta"
    zeros = not meta and not bool(table.detach().any())
    if scale is None:  # no table in this model: the file's must be the unused zero buffer (use_pe: false)
        if meta or zeros:
            return
        found = _fitting_scale(table, model, grid)
        hint = (
            f": it is the sin-cos table of a {grid}x{grid} grid with pe_interpolation {found:g}, create the model "
            f"with interpolation_scale={found:g}, input_size={grid * model.patch_size}"
            if found is not None
            else ""
        )
        raise ValueError(f"pos_embed is not the zero buffer of a model without a position table (use_pe: false){hint}")
    if grid != model.base_size:
        raise ValueError(
            f"pos_embed is the table of a {grid}x{grid} training grid, this model's is "
            f"{model.base_size}x{model.base_size}: pass input_size={grid * model.patch_size}"
        )
    if zeros:
        raise ValueError(
            "pos_embed is zeros: the file's model adds no position table (use_pe: false): pass interpolation_scale=None"
        )
    if meta:  # names and shapes only
        return
    expected = _sincos(model, grid, scale)
    if close(table, expected):
        return
    found = _fitting_scale(table, model, grid)
    hint = f": it is the table of pe_interpolation {found:g}, pass interpolation_scale={found:g}" if found else ""
    what = f"SANA's fixed sin-cos table (pe_interpolation={scale:g}, {grid}x{grid})"
    check_fixed_table("pos_embed", table, expected, what, hint)


def _build_pos_embed(model: nn.Module, **options: object) -> Tensor:
    grid = model.base_size
    if model.interpolation_scale is None:  # the zero buffer SanaMS registers and leaves unfilled
        return torch.zeros(1, grid * grid, model.x_embedder.proj.out_channels)
    return _sincos(model, grid, float(model.interpolation_scale))


POS_EMBED = FixedTable("pos_embed", _check_pos_embed, _build_pos_embed)

OFFICIAL = Layout(
    "official",
    "the official NVlabs/Sana layout",
    tables=(POS_EMBED,),
    ignore=("logvar_linear.",),
    markers=("pos_embed", "logvar_linear."),
)

_BLOCK = "transformer_blocks.{i}."
DIFFUSERS = Layout(
    "diffusers",
    "diffusers SANA checkpoint",
    renames=(  # diffusers SanaTransformer2DModel (official) <-> NVlabs/Sana's names (ours)
        Rename("patch_embed.proj.", "x_embedder.proj."),
        Rename("time_embed.emb.timestep_embedder.linear_1.", "t_embedder.mlp.0."),
        Rename("time_embed.emb.timestep_embedder.linear_2.", "t_embedder.mlp.2."),
        Rename("time_embed.linear.", "t_block.1."),
        Rename("caption_projection.linear_1.", "y_embedder.y_proj.fc1."),
        Rename("caption_projection.linear_2.", "y_embedder.y_proj.fc2."),
        Rename("caption_norm.weight", "attention_y_norm.weight"),
        Rename("proj_out.", "final_layer.linear."),
        Rename("scale_shift_table", "final_layer.scale_shift_table"),
        Rename(_BLOCK + "scale_shift_table", "blocks.{i}.scale_shift_table"),
        Rename(_BLOCK + "attn1.to_out.0.", "blocks.{i}.attn.proj."),
        Rename(_BLOCK + "attn2.to_q.", "blocks.{i}.cross_attn.q_linear."),
        Rename(_BLOCK + "attn2.to_out.0.", "blocks.{i}.cross_attn.proj."),
        Rename(_BLOCK + "ff.conv_inverted.", "blocks.{i}.mlp.inverted_conv.conv."),
        Rename(_BLOCK + "ff.conv_depth.", "blocks.{i}.mlp.depth_conv.conv."),
        Rename(_BLOCK + "ff.conv_point.", "blocks.{i}.mlp.point_conv.conv."),
    ),
    fuses=(
        Fuse((_BLOCK + "attn1.to_q.", _BLOCK + "attn1.to_k.", _BLOCK + "attn1.to_v."), "blocks.{i}.attn.qkv."),
        Fuse((_BLOCK + "attn2.to_k.", _BLOCK + "attn2.to_v."), "blocks.{i}.cross_attn.kv_linear."),
    ),
    keep=(NULL_CAPTION,),
    markers=("transformer_blocks.", "caption_norm.", "time_embed."),
)

register_layouts("sana", DIFFUSERS, OFFICIAL)

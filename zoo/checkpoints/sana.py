"""SANA checkpoints, for the ``sana`` family.

- ``diffusers``: ``SanaTransformer2DModel`` (``transformer/diffusion_pytorch_model.safetensors``, or its
  ``.bf16`` variant: ``patch_embed.proj``, ``time_embed.*``, ``caption_projection.*``, ``caption_norm``,
  ``transformer_blocks.N.attn1.to_q`` ...), renamed onto NVlabs/Sana's names (ours), with the self-attention's
  q/k/v concatenated into ``attn.qkv`` and the cross-attention's k/v into ``kv_linear``, as diffusers'
  ``convert_sana_to_diffusers.py`` splits them. diffusers' model keeps no null caption
  (``y_embedder.y_embedding``) and no position table (the 2K / 4K models' sin-cos table is computed, not
  saved): the model keeps its own null caption and ``LoadReport.kept`` says so; export leaves it out.

NVlabs/Sana's own ``.pth`` files are not read here (their names are ours, but they also hold ``pos_embed``
and ``logvar_linear``, which no file was at hand to check): convert them with diffusers' script.
"""

from __future__ import annotations

from zoo.checkpoints.layout import Fuse, Layout, Rename, register_layouts

NULL_CAPTION = "y_embedder.y_embedding"

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

register_layouts("sana", DIFFUSERS)

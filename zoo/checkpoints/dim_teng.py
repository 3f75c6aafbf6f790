"""tyshiwo1/DiM-DiffusionMamba checkpoints (``nnet_ema.pth``: a plain state dict of its ``Mamba2DModel``,
defined in ``mamba_2d.py``, ``attention.py``, ``normalization.py`` and ``adapter_attn4mamba.py``).

Every official tensor has one counterpart in ``DiMTeng``, renamed or reshaped by the rules below. The
parent class of ``Mamba2DModel`` (a diffusers ``Transformer2DModel``) builds modules of its own (PatchEmbed,
BasicTransformerBlocks, LayerNorm norm_out, proj_out, scale_shift_table, AdaLayerNormSingle), but the
subclass replaces them or sets them to None under the diffusers its environment pins, so none is in
``nnet_ema.pth`` and nothing is dropped. The layout is checked in its own names first: a missing,
unexpected or mis-shaped official key is an error naming it (and our counterpart). A position table of
another grid (same width and prefix) passes on as ``pos_embed``: the size check then names the
``input_size`` that fits it, and ``--init-from`` resizes it (DiM's 256 -> 512 fine-tuning).
"""

from __future__ import annotations

from torch import Tensor

from zoo.checkpoints.layout import Layout, Rename, register_layouts


def _pad_token_to_ours(value: Tensor) -> Tensor:  # (1, d, k) -> (k, d): token i = pad_token[0, :, i]
    return value[0].transpose(0, 1).contiguous()


def _pad_token_from_ours(value: Tensor) -> Tensor:
    return value.transpose(0, 1)[None].contiguous()


_BLOCK = "transformer_blocks.{i}."
OFFICIAL = Layout(
    "official",
    "the official DiM layout (tyshiwo1/DiM-DiffusionMamba Mamba2DModel)",
    renames=(
        # mamba_2d.py: learned (1, time [+ class] + grid, d), added before the adapter
        Rename("additional_embed", "pos_embed"),
        # adapter_attn4mamba.py: (1, k, d), k = mamba_d_conv
        Rename("a4m_adapter.pad_token_dec_split", "split_tokens", lambda v: v[0], lambda v: v[None]),
        # adapter_attn4mamba.py: (1, d, k)
        Rename("a4m_adapter.pad_token", "padding.tokens", _pad_token_to_ours, _pad_token_from_ours),
        Rename("pos_embed.proj.", "x_embedder.proj."),  # mamba_2d.py UViTPatchEmbed.proj: the patchify Conv2d
        Rename("label_emb.", "label_token."),  # mamba_2d.py label_emb: the class token, num_embeds_ada_norm + 1 rows
        # normalization.py PixArtAlphaEmbeddings (diffusers TimestepEmbedding)
        Rename("adaln_single.emb.timestep_embedder.linear_1.", "t_embedder.mlp.0."),
        Rename("adaln_single.emb.timestep_embedder.linear_2.", "t_embedder.mlp.2."),
        Rename("adaln_single.emb.class_embedder.embedding_table.", "label_adaln."),  # normalization.py LabelEmbedding
        Rename("adaln_single.linear.", "t_block.1."),  # normalization.py AdaRMSNormSingle.linear, after SiLU
        Rename("a4m_adapter.first_smoother.", "first_conv."),  # adapter_attn4mamba.py: depthwise 3x3 Conv2d, bias
        Rename("a4m_adapter.last_smoother.", "last_conv."),
        Rename("norm_out.norm.", "norm_final."),  # mamba_2d.py FusedAddRMSNorm -> mamba_ssm RMSNorm (weight only)
        # mamba_2d.py: (shift, scale) = proj_out_1(silu(time + class token))
        Rename("proj_out_1.", "final_modulation.1."),
        Rename("proj_out_2.", "linear_out."),  # mamba_2d.py: to patch pixels
        Rename("final_layer.", "final_conv."),  # mamba_2d.py use_final_conv (off in the DiM configs)
        # attention.py BasicMambaBlock.norm1: FusedAddRMSNorm (ada_norm_single, rms)
        Rename(_BLOCK + "norm1.norm.", "blocks.{i}.norm."),
        # attention.py: attn1 = mamba_simple.Mamba (in_proj, conv1d, x_proj, dt_proj, A_log, D, ...)
        Rename(_BLOCK + "attn1.", "blocks.{i}.mixer."),
        # attention.py: dim > 512, skip_linear[0](x) + skip_linear[1](skip)
        Rename(_BLOCK + "skip_linear.0.", "blocks.{i}.skip_proj_x."),
        Rename(_BLOCK + "skip_linear.1.", "blocks.{i}.skip_proj_skip."),
        Rename(_BLOCK + "skip_linear.", "blocks.{i}.skip_proj."),  # attention.py: dim <= 512, on cat([x, skip])
        # attention.py: (3, d) per-block (shift, scale, gate) table
        Rename(_BLOCK + "scale_shift_table", "blocks.{i}.scale_shift_table"),
    ),
    markers=(
        "transformer_blocks.",
        "a4m_adapter.",
        "adaln_single.",
        "additional_embed",
        "proj_out_1.",
        "proj_out_2.",
        "norm_out.",
        "label_emb.",
        "pos_embed.proj.",
    ),
    complete=True,
    grid_tables=("additional_embed",),
)

register_layouts("dim-teng", OFFICIAL)

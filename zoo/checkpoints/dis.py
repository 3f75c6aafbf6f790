"""feizc/DiS checkpoints (``models_dis.DisModel``), for the ``dis`` family.

The container: ``train.py`` saves ``{"model", "ema", "opt", "args"}`` (``args`` an ``argparse.Namespace``, read
as an inert stand-in by ``zoo.checkpoints.pickled``) and ``sample.py`` loads ``["ema"]``; the ``ema`` entry is
read first. No checkpoint file is linked from the README at the time of writing.

The names: ours are the official ones, tensor for tensor: ``patch_embed.proj``, ``time_embed.{0,2}`` (none with
``mlp_time_embed=False``), ``label_emb.embedding_table`` (``num_classes + 1`` rows: the code's label dropout
0.1 adds the null row, as ours has), ``pos_embed`` (learned, ``(1, extras + grid**2, d)``),
``{in_blocks.N,mid_block,out_blocks.N}.{norm,mixer.*}`` (the mixer is the fork's ``bimamba_type="v2"``
Mamba: ``conv1d_b``, ``x_proj_b``, ``dt_proj_b``, ``A_b_log``, ``D_b`` beside mamba_ssm's names),
``out_blocks.N.skip_linear``, ``norm_f``, ``final_layer.linear`` and, for class models,
``final_layer.adaLN_modulation.1``. No arithmetic: the layout only checks a checkpoint in the official names
(missing, unexpected, mis-shaped keys named), and lets a position table of another grid through to the size
check, which names the ``input_size`` that fits it.

The code's ``depth`` (24 or 48) builds ``depth // 2`` in blocks, a mid block and ``depth // 2`` out blocks: the
registry's ``depth`` counts all of them (25 or 49).
"""

from __future__ import annotations

from zoo.checkpoints.layout import Layout, Rename, register_layouts

_MODULES = (
    "patch_embed.",
    "time_embed.",
    "label_emb.",
    "pos_embed",
    "in_blocks.",
    "mid_block.",
    "out_blocks.",
    "norm_f.",
    "final_layer.",
)
OFFICIAL = Layout(
    "official",
    "the official DiS layout (feizc/DiS models_dis.DisModel)",
    renames=tuple(Rename(name, name) for name in _MODULES),  # identity: the check in the official names
    markers=("in_blocks.", "mid_block.", "out_blocks."),
    complete=True,
    grid_tables=("pos_embed",),
)

register_layouts("dis", OFFICIAL)

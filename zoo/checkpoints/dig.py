"""hustvl/DiG checkpoints (``models_dig.DiG``), for the ``dig`` family.

The container: ``train.py`` saves ``{"model", "ema", "opt", "args"}`` (``args`` an ``argparse.Namespace``, read
as an inert stand-in by ``zoo.checkpoints.pickled``); the ``ema`` entry is read first. No checkpoint file is
linked from the README at the time of writing.

The names: ours are the official ones (``x_embedder.proj``, ``t_embedder.mlp.{0,2}``,
``y_embedder.embedding_table`` with the null row, ``blocks.N.attn.{q,k,v,g,o}_proj``, ``blocks.N.attn.gk_proj.{0,1}``,
``blocks.N.attn.g_norm_swish_gate.weight`` (fla's fused RMSNorm-swish gate: a weight, no bias),
``blocks.N.mlp.{gate,down}_proj``, ``blocks.N.adaLN_modulation.1``, ``blocks.N.dw_conv``, ``blocks.N.skip_linear``
(``-skip`` models, blocks > depth // 2), ``final_layer.{linear,adaLN_modulation.1}``; the block's LayerNorms
carry no weights, and the code deletes GLABlock's ``attn_norm`` / ``mlp_norm``). One tensor differs:
``pos_embed``, DiT's fixed sin-cos table of the training grid, saved as a frozen parameter. It is checked
against ours (MAE's table, which our DiG computes for whatever grid comes in) and dropped; export writes it.
"""

from __future__ import annotations

from zoo.checkpoints.dit import sincos_pos_embed_table
from zoo.checkpoints.layout import Layout, register_layouts

POS_EMBED = sincos_pos_embed_table("DiG")
# every other name is ours: the strict load checks them (missing, unexpected, mis-shaped keys named)
OFFICIAL = Layout("official", "the official DiG layout (hustvl/DiG models_dig.DiG)", tables=(POS_EMBED,))

register_layouts("dig", OFFICIAL)

"""ZigMa, DiS and DiG official checkpoints through ``zoo.create_model(name, pretrained=PATH)`` (#30 item 2).

The official layouts are written down here from the public code, as key -> shape tables that are functions of
depth and width, independently of ``zoo.checkpoints``: CompVis/zigma ``model_zigma.py`` and its vendored
``dis_mamba/mamba_ssm/modules/mamba_simple.py``; feizc/DiS ``models_dis.py`` and its vendored
``mamba/mamba_ssm/modules/mamba_simple.py`` (``bimamba_type="v2"``); hustvl/DiG ``models_dig.py``,
``module_dig.py`` and ``models_dit.py``. Each test builds a small configuration of the official layout with
random values, saves it in the training scripts' container (``{"model", "ema", "opt", "args"}``, the args a
pickled configuration object), loads it, and compares our outputs with a reference written here from the
official forward passes in float64: mamba_ssm's ``mamba_inner_ref`` (a step-by-step selective scan),
fla's GLA recurrence, and the block wiring of each model class (residual streams, zigzag paths, tokens, long
skips, flips and transposes).
"""

from __future__ import annotations

import argparse
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.checkpoints import LAYOUTS, export_state_dict

D_STATE, D_CONV = 16, 4  # mamba_ssm's defaults, used by all three codes

# ---------------------------------------------------------------- official layouts (from the public code)


def _mamba_keys(prefix: str, d: int, bidirectional: bool) -> dict[str, tuple]:
    """mamba_simple.Mamba (expand 2, dt_rank ceil(d / 16), no in/out bias); the "v2" fork adds the _b set."""
    inner, rank = 2 * d, math.ceil(d / 16)
    keys = {
        "in_proj.weight": (2 * inner, d),
        "conv1d.weight": (inner, 1, D_CONV),
        "conv1d.bias": (inner,),
        "x_proj.weight": (rank + 2 * D_STATE, inner),
        "dt_proj.weight": (inner, rank),
        "dt_proj.bias": (inner,),
        "A_log": (inner, D_STATE),
        "D": (inner,),
        "out_proj.weight": (d, inner),
    }
    if bidirectional:
        keys.update(
            {
                "A_b_log": (inner, D_STATE),
                "conv1d_b.weight": (inner, 1, D_CONV),
                "conv1d_b.bias": (inner,),
                "x_proj_b.weight": (rank + 2 * D_STATE, inner),
                "dt_proj_b.weight": (inner, rank),
                "dt_proj_b.bias": (inner,),
                "D_b": (inner,),
            }
        )
    return {prefix + k: v for k, v in keys.items()}


def _zigma_official_keys(depth: int, d: int, p: int, c: int, grid: int, use_pe: int, classes: int = -1):
    """model_zigma.ZigMa: out_channels = in_channels, FinalLayer(cond=False), RMSNorm (weight only) blocks."""
    keys = {
        "x_embedder.proj.weight": (d, c, p, p),
        "x_embedder.proj.bias": (d,),
        "t_embedder.mlp.0.weight": (d, 256),
        "t_embedder.mlp.0.bias": (d,),
        "t_embedder.mlp.2.weight": (d, d),
        "t_embedder.mlp.2.bias": (d,),
        "final_layer.linear.weight": (p * p * c, d),
        "final_layer.linear.bias": (p * p * c,),
        "norm_f.weight": (d,),
    }
    if use_pe in (1, 2):  # 1: frozen sin-cos parameter, 2: learned
        keys["pos_embed"] = (1, grid * grid, d)
    if classes > 0:  # LabelEmbedder(num_classes, dropout_prob=0.0): no null row
        keys["y_embedder.embedding_table.weight"] = (classes, d)
    for i in range(depth):
        keys[f"blocks.{i}.norm.weight"] = (d,)
        keys[f"blocks.{i}.adaLN_modulation.1.weight"] = (3 * d, d)
        keys[f"blocks.{i}.adaLN_modulation.1.bias"] = (3 * d,)
        keys.update(_mamba_keys(f"blocks.{i}.mixer.", d, bidirectional=False))
    return keys


def _dis_official_keys(code_depth: int, d: int, p: int, c: int, grid: int, classes: int):
    """models_dis.DisModel (learn_sigma, mlp_time_embed, skip, class_dropout_prob 0.1); ``code_depth`` is the
    code's depth argument: depth // 2 in blocks, a mid block, depth // 2 out blocks."""
    extras = 2 if classes > 0 else 1
    keys = {
        "patch_embed.proj.weight": (d, c, p, p),
        "patch_embed.proj.bias": (d,),
        "time_embed.0.weight": (4 * d, d),
        "time_embed.0.bias": (4 * d,),
        "time_embed.2.weight": (d, 4 * d),
        "time_embed.2.bias": (d,),
        "pos_embed": (1, extras + grid * grid, d),
        "norm_f.weight": (d,),
        "final_layer.linear.weight": (p * p * 2 * c, d),
        "final_layer.linear.bias": (p * p * 2 * c,),
    }
    if classes > 0:
        keys["label_emb.embedding_table.weight"] = (classes + 1, d)
        keys["final_layer.adaLN_modulation.1.weight"] = (2 * d, d)
        keys["final_layer.adaLN_modulation.1.bias"] = (2 * d,)
    half = code_depth // 2
    blocks = [f"in_blocks.{i}" for i in range(half)] + ["mid_block"] + [f"out_blocks.{i}" for i in range(half)]
    for block in blocks:
        keys[f"{block}.norm.weight"] = (d,)
        keys.update(_mamba_keys(f"{block}.mixer.", d, bidirectional=True))
        if block.startswith("out_blocks"):
            keys[f"{block}.skip_linear.weight"], keys[f"{block}.skip_linear.bias"] = (d, 2 * d), (d,)
    return keys


def _dig_official_keys(depth: int, d: int, heads: int, p: int, c: int, grid: int, classes: int, skip: bool):
    """models_dig.DiG (bid-layer-dwconv-qdir[-skip]): GLA with expand_k 0.5, gate_low_rank_dim 16, fused
    RMSNorm-swish gate over head_v_dim; GLAMLP with 2/3 * 4d rounded up to 256; frozen sin-cos pos_embed."""
    inter = 256 * ((int(d * 4 * 2 / 3) + 255) // 256)
    keys = {
        "x_embedder.proj.weight": (d, c, p, p),
        "x_embedder.proj.bias": (d,),
        "pos_embed": (1, grid * grid, d),
        "t_embedder.mlp.0.weight": (d, 256),
        "t_embedder.mlp.0.bias": (d,),
        "t_embedder.mlp.2.weight": (d, d),
        "t_embedder.mlp.2.bias": (d,),
        "y_embedder.embedding_table.weight": (classes + 1, d),
        "final_layer.linear.weight": (p * p * 2 * c, d),
        "final_layer.linear.bias": (p * p * 2 * c,),
        "final_layer.adaLN_modulation.1.weight": (2 * d, d),
        "final_layer.adaLN_modulation.1.bias": (2 * d,),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        keys.update(
            {
                b + "attn.q_proj.weight": (d // 2, d),
                b + "attn.k_proj.weight": (d // 2, d),
                b + "attn.v_proj.weight": (d, d),
                b + "attn.g_proj.weight": (d, d),
                b + "attn.gk_proj.0.weight": (16, d),
                b + "attn.gk_proj.1.weight": (d // 2, 16),
                b + "attn.gk_proj.1.bias": (d // 2,),
                b + "attn.o_proj.weight": (d, d),
                b + "attn.g_norm_swish_gate.weight": (d // heads,),
                b + "mlp.gate_proj.weight": (2 * inter, d),
                b + "mlp.down_proj.weight": (d, inter),
                b + "adaLN_modulation.1.weight": (6 * d, d),
                b + "adaLN_modulation.1.bias": (6 * d,),
                b + "dw_conv.weight": (d, 1, 3, 3),
                b + "dw_conv.bias": (d,),
            }
        )
        if skip and i > depth // 2:
            keys[b + "skip_linear.weight"], keys[b + "skip_linear.bias"] = (d, 2 * d), (d,)
    return keys


def _official_sincos(dim: int, grid: int) -> torch.Tensor:
    """MAE's ``get_2d_sincos_pos_embed`` as DiG and ZigMa (use_pe=1) copy it (numpy, meshgrid w first)."""
    pos = np.arange(grid, dtype=np.float32)
    mesh = np.stack(np.meshgrid(pos, pos), axis=0).reshape(2, -1)
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))

    def one(coords):
        out = np.einsum("m,d->md", coords, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return torch.from_numpy(np.concatenate([one(mesh[0]), one(mesh[1])], axis=1)).float()[None]


def _official_paths(n: int) -> list[list[int]]:
    """utils/utils_zigzag.py ``zigzag_path(N)``: per start corner, the row-wise then the column-wise zigzag."""
    paths = []
    for r0, c0, dr, dc in ((0, 0, 1, 1), (0, n - 1, 1, -1), (n - 1, 0, -1, 1), (n - 1, n - 1, -1, -1)):
        paths.append(
            [(r0 + dr * i) * n + c0 + dc * (j if i % 2 == 0 else n - 1 - j) for i in range(n) for j in range(n)]
        )
        paths.append(
            [(r0 + dr * (i if j % 2 == 0 else n - 1 - i)) * n + c0 + dc * j for j in range(n) for i in range(n)]
        )
    return paths


def _random_state(keys: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in keys.items():
        value = torch.randn(shape, generator=gen)
        if key.endswith(("norm.weight", "norm_f.weight", "g_norm_swish_gate.weight")):
            value = 1 + 0.1 * value
        elif key.endswith(("A_log", "A_b_log")):
            value = torch.log(torch.arange(1, shape[-1] + 1.0)).expand(shape) + 0.1 * value
        elif key.endswith(("dt_proj.bias", "dt_proj_b.bias")):
            value = -3 + 0.5 * value
        else:
            value = value * min(0.3, 1 / math.sqrt(shape[-1] if len(shape) > 1 else 16))
        state[key] = value.contiguous()
    return state


class _HydraLikeConfig:
    """Stands for the Hydra ``DictConfig`` that CompVis/zigma's train_acc.py pickles as ``args``."""

    def __init__(self, **content):
        self._content = content

    def __getstate__(self):
        return {"_content": self._content, "_metadata": {"flags": {}}}

    def __setstate__(self, state):
        self.__dict__.update(state)


def _training_checkpoint(ema: dict, args: object, prefix: str = "") -> dict:
    """The training scripts' container: the raw model (other values, so reading it would show), the EMA, an
    optimizer state and the script's args."""
    return {
        "model": {k: torch.zeros_like(v) for k, v in ema.items()},
        "ema": {prefix + k: v for k, v in ema.items()},
        "opt": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]},
        "args": args,
    }


# ---------------------------------------------------------------- references from the official forward passes


def _timestep(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    args = t.double()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _linear(x, sd, name):
    bias = sd.get(name + ".bias")
    return F.linear(x, sd[name + ".weight"], bias)


def _rms(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _layer_norm(x, eps=1e-6):
    return F.layer_norm(x, x.shape[-1:], eps=eps)


def _modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


def _patchify(x, sd, name):
    return F.conv2d(x, sd[name + ".weight"], sd[name + ".bias"], stride=sd[name + ".weight"].shape[-1]).flatten(2).mT


def _unpatchify(x, p, c):
    b, n, _ = x.shape
    g = math.isqrt(n)
    return torch.einsum("nhwpqc->nchpwq", x.reshape(b, g, g, p, p, c)).reshape(b, c, g * p, g * p)


def _mamba_direction(xz, sd, names):
    """mamba_inner_ref without out_proj: causal depthwise conv + SiLU, x_proj, softplus(dt_proj), the selective
    scan step by step, D skip, times SiLU(z). xz: (B, L, 2 * inner)."""
    x, z = xz.chunk(2, dim=-1)
    length, inner = x.shape[1], x.shape[2]
    w = sd[names["conv1d.weight"]]
    x = F.conv1d(x.mT, w, sd[names["conv1d.bias"]], padding=w.shape[-1] - 1, groups=inner)[..., :length]
    x = F.silu(x).mT
    rank = sd[names["dt_proj.weight"]].shape[1]
    dt, b, c = (x @ sd[names["x_proj.weight"]].T).split([rank, D_STATE, D_STATE], dim=-1)
    dt = F.softplus(dt @ sd[names["dt_proj.weight"]].T + sd[names["dt_proj.bias"]])
    a = -torch.exp(sd[names["A_log"]])
    h, ys = x.new_zeros(x.shape[0], inner, D_STATE), []
    for t in range(length):
        h = torch.exp(dt[:, t, :, None] * a) * h + dt[:, t, :, None] * b[:, t, None, :] * x[:, t, :, None]
        ys.append((h * c[:, t, None, :]).sum(-1) + sd[names["D"]] * x[:, t])
    return torch.stack(ys, dim=1) * F.silu(z)


def _mamba(u, sd, prefix, bidirectional=False):
    """mamba_simple.Mamba.forward: unidirectional (mamba_inner_ref) or the fork's "v2": the second direction on
    the flipped in_proj output with the _b parameters, the two summed before the shared out_proj."""
    forward = {k: prefix + k for k in ("conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight")}
    forward.update({k: prefix + k for k in ("dt_proj.bias", "A_log", "D")})
    xz = u @ sd[prefix + "in_proj.weight"].T
    y = _mamba_direction(xz, sd, forward)
    if bidirectional:
        backward = {k: v.replace("conv1d", "conv1d_b").replace("x_proj", "x_proj_b") for k, v in forward.items()}
        backward = {k: v.replace("dt_proj", "dt_proj_b") for k, v in backward.items()}
        backward["A_log"], backward["D"] = prefix + "A_b_log", prefix + "D_b"
        y = y + _mamba_direction(xz.flip(1), sd, backward).flip(1)
    return y @ sd[prefix + "out_proj.weight"].T


def _zigma_reference(sd, x, t01, y, p, depth):
    """model_zigma.ZigMa.forward (fused add+norm written out): t scaled by 1000, per block
    residual += hidden; h = RMSNorm(residual); hidden = h + gate * Mamba_path(i % 8)(modulate(h))."""
    h = _patchify(x, sd, "x_embedder.proj") + sd.get("pos_embed", 0)
    c = _linear(F.silu(_linear(_timestep(1000 * t01, 256), sd, "t_embedder.mlp.0")), sd, "t_embedder.mlp.2")
    if y is not None:
        c = c + sd["y_embedder.embedding_table.weight"][y]
    paths = _official_paths(math.isqrt(h.shape[1]))
    residual = None
    for i in range(depth):
        residual = h if residual is None else residual + h
        normed = _rms(residual, sd[f"blocks.{i}.norm.weight"], 1e-5)
        shift, scale, gate = _linear(F.silu(c), sd, f"blocks.{i}.adaLN_modulation.1").chunk(3, dim=1)
        path = torch.tensor(paths[i % len(paths)])
        inverse = torch.argsort(path)  # reverse_permut_np
        mixed = _mamba(_modulate(normed, shift, scale)[:, path], sd, f"blocks.{i}.mixer.")[:, inverse]
        h = normed + gate[:, None] * mixed
    h = _rms(residual + h, sd["norm_f.weight"], 1e-5)
    return _unpatchify(_linear(_layer_norm(h), sd, "final_layer.linear"), p, x.shape[1])


def _dis_reference(sd, x, t, y, p, code_depth):
    """models_dis.DisModel.forward: tokens [label, time, patches] + pos_embed; in blocks kept, mid, out blocks
    merging the last kept (skip_linear on [hidden, skip]); final layer modulated by time + label token."""
    d = sd["pos_embed"].shape[-1]
    tokens = _patchify(x, sd, "patch_embed.proj")
    time = _linear(F.silu(_linear(_timestep(t, d), sd, "time_embed.0")), sd, "time_embed.2")[:, None]
    label = sd["label_emb.embedding_table.weight"][y][:, None]
    h = torch.cat([label, time, tokens], dim=1) + sd["pos_embed"]
    half = code_depth // 2
    blocks = [f"in_blocks.{i}" for i in range(half)] + ["mid_block"] + [f"out_blocks.{i}" for i in range(half)]
    residual, skips = None, []
    for block in blocks:
        if block.startswith("out_blocks"):
            h = _linear(torch.cat([h, skips.pop()], dim=-1), sd, f"{block}.skip_linear")
        residual = h if residual is None else residual + h
        h = _mamba(_rms(residual, sd[f"{block}.norm.weight"], 1e-5), sd, f"{block}.mixer.", bidirectional=True)
        if block.startswith("in_blocks"):
            skips.append(h)
    h = _rms(residual + h, sd["norm_f.weight"], 1e-5)
    shift, scale = _linear(F.silu(time + label), sd, "final_layer.adaLN_modulation.1").squeeze(1).chunk(2, dim=1)
    out = _linear(_modulate(_layer_norm(h), shift, scale), sd, "final_layer.linear")[:, 2:]
    return _unpatchify(out, p, 2 * x.shape[1])


def _gla(x, sd, b, heads):
    """module_dig.GatedLinearAttention (fused_chunk mode): the recurrence S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T,
    o_t = q_t S_t / sqrt(head_k_dim), then per head RMSNorm(o) * weight * swish(g_proj(x)), o_proj."""
    bsz, length, _ = x.shape

    def split(t):
        return t.view(bsz, length, heads, -1).transpose(1, 2)

    q, k, v = (split(x @ sd[f"{b}attn.{n}_proj.weight"].T) for n in "qkv")
    gk = split(F.logsigmoid(_linear(x @ sd[f"{b}attn.gk_proj.0.weight"].T, sd, f"{b}attn.gk_proj.1")) / 16)
    state = x.new_zeros(bsz, heads, q.shape[-1], v.shape[-1])
    outs = []
    for t in range(length):
        state = torch.exp(gk[:, :, t, :, None]) * state + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append((q[:, :, t, :, None] * q.shape[-1] ** -0.5 * state).sum(-2))
    o = torch.stack(outs, dim=2).transpose(1, 2)  # (B, L, heads, head_v)
    g = (x @ sd[f"{b}attn.g_proj.weight"].T).view_as(o)
    o = _rms(o, sd[f"{b}attn.g_norm_swish_gate.weight"], 1e-6) * F.silu(g)
    return o.reshape(bsz, length, -1) @ sd[f"{b}attn.o_proj.weight"].T


def _dig_reference(sd, x, t, y, p, depth, heads, skip):
    """models_dig.DiG.forward (bid_mode 'layer', if_dw_conv, if_quad_dir): adaLN-Zero GLA + SwiGLU blocks, the
    depthwise conv over the square grid replacing x, a flip after every block, a transpose after odd ones,
    long skips (if_skip) pushed for i < depth // 2 - 1 and popped for i > depth // 2."""
    h = _patchify(x, sd, "x_embedder.proj") + sd["pos_embed"]
    c = _linear(F.silu(_linear(_timestep(t, 256), sd, "t_embedder.mlp.0")), sd, "t_embedder.mlp.2")
    c = c + sd["y_embedder.embedding_table.weight"][y]
    bsz, n, d = h.shape
    edge = math.isqrt(n)
    skips = []
    for i in range(depth):
        b = f"blocks.{i}."
        if skip and i > depth // 2:
            h = _linear(torch.cat([h, skips.pop()], dim=-1), sd, b + "skip_linear")
        mods = _linear(F.silu(c), sd, b + "adaLN_modulation.1").chunk(6, dim=1)
        h = h + mods[2][:, None] * _gla(_modulate(_layer_norm(h), mods[0], mods[1]), sd, b, heads)
        gate, value = (_modulate(_layer_norm(h), mods[3], mods[4]) @ sd[b + "mlp.gate_proj.weight"].T).chunk(2, -1)
        h = h + mods[5][:, None] * ((F.silu(gate) * value) @ sd[b + "mlp.down_proj.weight"].T)
        grid = h.mT.reshape(bsz, d, edge, edge)
        h = F.conv2d(grid, sd[b + "dw_conv.weight"], sd[b + "dw_conv.bias"], padding=1, groups=d).flatten(2).mT
        h = h.flip(1)
        if i % 2 == 1:
            h = h.reshape(bsz, edge, edge, d).transpose(1, 2).flatten(1, 2)
        if skip and i < depth // 2 - 1:
            skips.append(h)
    shift, scale = _linear(F.silu(c), sd, "final_layer.adaLN_modulation.1").chunk(2, dim=1)
    return _unpatchify(_linear(_modulate(_layer_norm(h), shift, scale), sd, "final_layer.linear"), p, 2 * x.shape[1])


def _double(state):
    return {k: v.double() for k, v in state.items()}


def _inputs(channels=4, size=8, classes=10, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, size, size, generator=gen)
    return x, torch.randint(0, classes, (2,), generator=gen)


def _close(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """Max abs difference of our float32 output from the float64 reference, relative to the output's scale."""
    return ((ours.double() - reference).abs().max() / reference.abs().max()).item()


def _one_line_error_naming(key: str, name: str, state: dict, **overrides):
    with pytest.raises(ValueError, match=re.escape(key) + r" \(") as info:
        zoo.create_model(name, pretrained=state, **overrides)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- ZigMa

ZIGMA = dict(hidden_size=32, depth=9, num_classes=0)  # 9 blocks: path 8 wraps to path 0


@pytest.mark.parametrize("use_pe", [0, 2])  # the released configs: s1024_zigzag8_b2_old and zigzag8_b1_pe2
def test_zigma_training_checkpoint_loads_and_matches_the_official_forward(tmp_path, use_pe):
    keys = _zigma_official_keys(9, 32, 2, 4, 4, use_pe)
    official = _random_state(keys, seed=use_pe)
    path = tmp_path / "faceshq1024_0090000.pt"
    # accelerate's prepared EMA model may carry DataParallel's prefix; sample_acc.py strips it
    torch.save(_training_checkpoint(official, _HydraLikeConfig(model="zigzag8_b1_pe2"), prefix="module."), path)
    overrides = dict(ZIGMA, pos_embed={0: "none", 2: "learned"}[use_pe])
    model = zoo.create_model("zigma-tiny", pretrained=path, **overrides).eval()
    ours = model.state_dict()
    assert set(ours) == set(keys)  # every official key consumed, none missing, none left over
    assert all(torch.equal(ours[k], v) for k, v in official.items())
    x, _ = _inputs()
    t01 = torch.tensor([0.25, 0.9])  # the code's flow-matching time; it embeds 1000 * t
    with torch.no_grad():
        out = model(x, 1000 * t01)
    assert _close(out, _zigma_reference(_double(official), x.double(), t01, None, 2, 9)) < 5e-5
    exported = export_state_dict(model, "zigma")
    assert {k: tuple(v.shape) for k, v in exported.items()} == keys
    reloaded = zoo.create_model("zigma-tiny", pretrained=exported, **overrides).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(x, 1000 * t01), out)
    wrong = dict(official, **{"blocks.4.mixer.A_log": torch.zeros(64, 8)})
    _one_line_error_naming("blocks.4.mixer.A_log", "zigma-tiny", wrong, **overrides)


def test_zigma_fixed_sincos_table_and_class_table_convert():
    # use_pe=1 saves MAE's table as a frozen parameter; a class model's table has no null row (dropout 0)
    keys = _zigma_official_keys(2, 32, 2, 4, 4, use_pe=1, classes=10)
    official = _random_state(keys, seed=3)
    official["pos_embed"] = _official_sincos(32, 4)
    overrides = dict(hidden_size=32, depth=2, pos_embed="sincos")
    model = zoo.create_model("zigma-tiny", pretrained=official, **overrides).eval()
    table = model.y_embedder.embedding_table.weight
    assert table.shape == (11, 32) and torch.equal(table[:10], official["y_embedder.embedding_table.weight"])
    x, y = _inputs()
    t01 = torch.tensor([0.5, 0.1])
    with torch.no_grad():
        out = model(x, 1000 * t01, y)
    assert _close(out, _zigma_reference(_double(official), x.double(), t01, y, 2, 2)) < 5e-5
    exported = export_state_dict(model, "zigma")
    assert {k: tuple(v.shape) for k, v in exported.items()} == keys
    assert (exported["pos_embed"] - official["pos_embed"]).abs().max() < 1e-6
    bad = dict(official, pos_embed=official["pos_embed"] + 1e-2)
    with pytest.raises(ValueError, match="pos_embed differs from ZigMa's fixed sin-cos table"):
        zoo.create_model("zigma-tiny", pretrained=bad, **overrides)


# ---------------------------------------------------------------- DiS


def test_dis_training_checkpoint_loads_and_matches_the_official_forward(tmp_path):
    keys = _dis_official_keys(4, 32, 2, 4, 4, classes=10)  # the code's depth 4: 2 in + mid + 2 out
    official = _random_state(keys, seed=5)
    path = tmp_path / "0100000.pt"
    torch.save(_training_checkpoint(official, argparse.Namespace(model="DiS-S/2", num_classes=10)), path)
    model = zoo.create_model("dis-tiny", pretrained=path, hidden_size=32, depth=5).eval()
    ours = model.state_dict()
    assert set(ours) == set(keys) and all(torch.equal(ours[k], v) for k, v in official.items())
    x, y = _inputs()
    t = torch.tensor([3.0, 700.0])
    with torch.no_grad():
        out = model(x, t, y)
    assert _close(out, _dis_reference(_double(official), x.double(), t, y, 2, 4)) < 5e-5
    exported = export_state_dict(model, "dis")
    assert {k: tuple(v.shape) for k, v in exported.items()} == keys
    wrong = dict(official, **{"out_blocks.1.skip_linear.weight": torch.zeros(32, 32)})
    _one_line_error_naming("out_blocks.1.skip_linear.weight", "dis-tiny", wrong, hidden_size=32, depth=5)


def test_dis_position_table_of_another_grid_names_the_input_size():
    official = _random_state(_dis_official_keys(4, 32, 2, 4, 8, classes=10), seed=6)  # a 16 px latent grid
    with pytest.raises(ValueError, match="pass input_size=16"):
        zoo.create_model("dis-tiny", pretrained=official, hidden_size=32, depth=5)
    zoo.create_model("dis-tiny", pretrained=official, hidden_size=32, depth=5, input_size=16)


# ---------------------------------------------------------------- DiG


@pytest.mark.parametrize("skip", [False, True])  # DiG-*-bid-layer-dwconv-qdir and its -skip (U-shaped) form
def test_dig_training_checkpoint_loads_and_matches_the_official_forward(tmp_path, skip):
    keys = _dig_official_keys(4, 32, 2, 2, 4, 4, classes=10, skip=skip)
    official = _random_state(keys, seed=7 + skip)
    official["pos_embed"] = _official_sincos(32, 4)
    path = tmp_path / "0400000.pt"
    torch.save(_training_checkpoint(official, argparse.Namespace(model="DiG-S/2-bid-layer-dwconv-qdir")), path)
    overrides = dict(hidden_size=32, depth=4, num_heads=2, long_skip=skip)
    model = zoo.create_model("dig-tiny", pretrained=path, **overrides).eval()
    ours = model.state_dict()
    assert set(ours) == set(keys) - {"pos_embed"}  # the fixed table is checked and dropped
    assert all(torch.equal(ours[k], v) for k, v in official.items() if k != "pos_embed")
    x, y = _inputs()
    t = torch.tensor([3.0, 700.0])
    with torch.no_grad():
        out = model(x, t, y)
    assert _close(out, _dig_reference(_double(official), x.double(), t, y, 2, 4, 2, skip)) < 5e-5
    exported = export_state_dict(model, "dig")
    assert {k: tuple(v.shape) for k, v in exported.items()} == keys
    assert (exported["pos_embed"] - official["pos_embed"]).abs().max() < 1e-6
    wrong = dict(official, **{"blocks.2.attn.g_norm_swish_gate.weight": torch.ones(32)})
    _one_line_error_naming("blocks.2.attn.g_norm_swish_gate.weight", "dig-tiny", wrong, **overrides)
    with pytest.raises(ValueError, match="pos_embed differs from DiG's fixed sin-cos table"):
        zoo.create_model("dig-tiny", pretrained=dict(official, pos_embed=official["pos_embed"] + 1e-2), **overrides)


# ---------------------------------------------------------------- the paper-size configurations, on meta


@pytest.mark.parametrize(
    "name,keys",
    [
        ("zigma-b/2-faceshq1024", _zigma_official_keys(24, 768, 2, 4, 64, use_pe=0)),
        ("zigma-b/1-256", _zigma_official_keys(24, 768, 1, 4, 32, use_pe=2)),
        ("dis-h/2", _dis_official_keys(48, 1536, 2, 4, 16, classes=1000)),
        ("dis-s/2-32", _dis_official_keys(24, 368, 2, 3, 16, classes=-1)),
        ("dig-s/2", _dig_official_keys(12, 384, 6, 2, 4, 16, classes=1000, skip=False)),
        ("dig-xl/2", _dig_official_keys(28, 1152, 18, 2, 4, 16, classes=1000, skip=False)),
        ("dig-xl/2-u", _dig_official_keys(28, 1152, 18, 2, 4, 16, classes=1000, skip=True)),
    ],
)
def test_paper_size_official_layouts_load_on_meta(name, keys):
    state = {k: torch.empty(s, device="meta") for k, s in keys.items()}
    with torch.device("meta"):
        model = zoo.create_model(name, pretrained=state)
    fixed = sum(math.prod(s) for k, s in keys.items() if k == "pos_embed" and name.startswith("dig"))
    assert sum(p.numel() for p in model.parameters()) == sum(math.prod(s) for s in keys.values()) - fixed


def test_the_three_families_have_registered_layouts():
    assert {"zigma", "dis", "dig"} <= set(LAYOUTS)


_CALLS: list[str] = []


def _record_call(what: str) -> None:
    _CALLS.append(what)


class _Payload:
    """Unpickling it would call ``_record_call``: the stand-in reader must not."""

    def __reduce__(self):
        return _record_call, ("unpickled",)


def test_pickled_args_are_read_as_inert_stand_ins(tmp_path):
    official = _random_state(_dis_official_keys(4, 32, 2, 4, 4, classes=10), seed=9)
    path = tmp_path / "0000100.pt"
    torch.save(_training_checkpoint(official, {"namespace": argparse.Namespace(lr=1e-4), "hook": _Payload()}), path)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)  # what the stand-ins are for
    model = zoo.create_model("dis-tiny", pretrained=path, hidden_size=32, depth=5)
    assert torch.equal(model.norm_f.weight, official["norm_f.weight"]) and _CALLS == []

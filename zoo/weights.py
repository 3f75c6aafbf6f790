"""Official checkpoints into registry models: ``zoo.create_model(name, pretrained=PATH)`` (timm's pattern).

A checkpoint file is read whatever its container (``read_state_dict``: a ``torch.save`` dict, the state dict
nested under ``ema`` / ``state_dict`` / ``model`` as DiT's and PixArt-alpha's training code save it, or a
``.safetensors`` file), then its family's filter maps it onto our parameter names:

- ``dit`` (facebookresearch/DiT ``models.py``): our names are DiT's. Its ``pos_embed`` is a saved, fixed
  sin-cos table (a frozen Parameter); it is checked against ours (``sincos_2d``) and dropped, since our DiT
  recomputes the table for whatever grid comes in. ``DiT-XL-2-512x512.pt`` saves a 32 x 32 table.
- ``uvit`` (baofff/U-ViT ``libs/uvit.py``, ``nnet_ema.pth``): our names are U-ViT's; ``pos_embed`` is learned
  and must match the model's grid (``input_size``).
- ``pixart`` / ``t2md`` (PixArt-alpha ``PixArt.py`` / ``PixArtMS.py``, the ``.pth`` files wrap the state dict
  under ``state_dict``): our names are PixArt's; the saved ``pos_embed`` buffer (fixed sin-cos with
  ``lewei_scale`` over the base grid) is checked and dropped. The diffusers layout
  (``PixArtTransformer2DModel``, ``diffusion_pytorch_model.safetensors`` / ``.bin``: ``pos_embed.proj``,
  ``adaln_single.*``, ``caption_projection.*``, ``transformer_blocks.N.attn1.to_q`` ...) is renamed, with q/k/v
  concatenated back into ``qkv`` and k/v into ``kv_linear``. diffusers keeps no null caption
  (``y_embedder.y_embedding``): the model keeps its own, and ``LoadReport.kept`` says so.
- ``dim-teng`` (tyshiwo1/DiM-DiffusionMamba ``mamba_2d.py``, ``attention.py``, ``normalization.py``,
  ``adapter_attn4mamba.py``; ``nnet_ema.pth``, a plain state dict of its ``Mamba2DModel``): every official
  tensor has one counterpart in ``DiMTeng``, renamed (``transformer_blocks.N.attn1.*`` -> ``blocks.N.mixer.*``,
  ``norm1.norm`` -> ``norm``, ``skip_linear`` -> ``skip_proj`` or ``skip_linear.0/1`` -> ``skip_proj_x/_skip``,
  ``adaln_single.*`` -> ``t_embedder`` / ``label_adaln`` / ``t_block``, ``a4m_adapter.first/last_smoother`` ->
  ``first_conv`` / ``last_conv``, ``additional_embed`` -> ``pos_embed``, ``label_emb`` -> ``label_token``,
  ``norm_out.norm`` / ``proj_out_1`` / ``proj_out_2`` -> ``norm_final`` / ``final_modulation.1`` /
  ``linear_out``) or reshaped (``a4m_adapter.pad_token`` (1, d, 3) -> ``padding.tokens`` (3, d), transposed;
  ``a4m_adapter.pad_token_dec_split`` (1, 3, d) -> ``split_tokens`` (3, d)). The layout is checked in its own
  names first: a missing, unexpected or mis-shaped official key is an error naming it (and our counterpart).
- ``latte`` (Vchitect/Latte ``models/latte.py``; ``ucf101.pt`` holds the EMA weights under ``ema``): our names
  are Latte's, which are DiT's (``x_embedder``, ``t_embedder``, ``y_embedder.embedding_table``, ``blocks.N``,
  ``final_layer``). Its two fixed tables are checked and dropped: ``pos_embed`` (DiT's 2-D sin-cos of the
  training grid) and ``temp_embed`` (1, frames, dim), the 1-D sin-cos of the frame index, which our model
  computes for the clip that comes in.
- every other family: our own names (our ``ablations train`` checkpoints, ``model.state_dict()`` files).

The load is strict: a missing, unexpected or mis-shaped tensor is a ValueError naming the keys and the
model; a file that is not a checkpoint is a one-line ValueError. ``export_state_dict`` writes a model's
weights in an official layout (the inverse of the filters), for official code or for tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from zoo.layers.pos_embed import sincos_1d, sincos_2d, sincos_2d_pixart

StateDict = dict[str, Tensor]
WRAPPERS = ("ema", "state_dict", "model", "module", "net", "nnet")  # first one holding a state dict wins
POS_TOLERANCE = 1e-4  # saved fixed sin-cos tables are float32 from numpy (PixArt: float32 positions)


@dataclass(frozen=True)
class Published:
    """Where official weights of an entry are published (facts of the publishers' pages)."""

    source: str  # URL or hub repository
    file: str
    note: str = ""


PUBLISHED: dict[str, tuple[Published, ...]] = {
    "dit-xl/2": (
        Published("https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt", "DiT-XL-2-256x256.pt",
                  "facebookresearch/DiT download.py; EMA weights, a plain state dict"),
        Published("https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-512x512.pt", "DiT-XL-2-512x512.pt",
                  "512 px model: also pass input_size=64"),
    ),
    "latte-xl/2": (
        Published("https://huggingface.co/maxin-cn/Latte", "ucf101.pt",
                  "Vchitect/Latte README, configs/ucf101/ucf101_sample.yaml: class-conditional UCF-101 (101 "
                  "classes), 16 frames at 256 px, frame interval 3; EMA weights under 'ema'"),
    ),
    "uvit-s/2-cifar10": (
        Published("https://drive.google.com/file/d/1yoYyuzR_hQYWU0mkTj659tMTnoCWCMv-", "cifar10_uvit_small.pth",
                  "baofff/U-ViT README, Pretrained Models (EMA state dict)"),
    ),
    "uvit-l/2": (
        Published("https://drive.google.com/file/d/1w7T1hiwKODgkYyMH9Nc9JNUThbxFZgs3", "imagenet256_uvit_large.pth",
                  "baofff/U-ViT README, Pretrained Models (EMA state dict)"),
    ),
    "uvit-h/2": (
        Published("https://drive.google.com/file/d/13StUdrjaaSXjfqqF7M47BzPyhMAArQ4u", "imagenet256_uvit_huge.pth",
                  "baofff/U-ViT README, Pretrained Models (EMA state dict)"),
    ),
    "pixart-alpha-xl/2": (
        Published("https://huggingface.co/PixArt-alpha/PixArt-alpha", "PixArt-XL-2-512x512.pth",
                  "original layout, state dict under 'state_dict'"),
        Published("https://huggingface.co/PixArt-alpha/PixArt-alpha", "PixArt-XL-2-256x256.pth",
                  "256 px model: also pass input_size=32"),
        Published("https://huggingface.co/PixArt-alpha/PixArt-XL-2-512x512",
                  "transformer/diffusion_pytorch_model.safetensors", "diffusers layout"),
    ),
    "pixart-alpha-xl/2-1024-ms": (
        Published("https://huggingface.co/PixArt-alpha/PixArt-alpha", "PixArt-XL-2-1024-MS.pth",
                  "original layout, state dict under 'state_dict'"),
        Published("https://huggingface.co/PixArt-alpha/PixArt-XL-2-1024-MS",
                  "transformer/diffusion_pytorch_model.safetensors", "diffusers layout"),
    ),
    "dim-teng-h/2": (
        Published("https://drive.google.com/drive/folders/1ETllUm8Dpd8-vDHefQEXEWF9whdbyhL5", "nnet_ema.pth",
                  "tyshiwo1/DiM-DiffusionMamba README, Checkpoints: 625K steps, FID 2.21; EMA state dict"),
        Published("https://drive.google.com/drive/folders/1TTEXKKhnJcEV9jeZbZYlXjiPyV87ZhE0", "nnet_ema.pth",
                  "same README: 425K steps, FID 2.40"),
    ),
    "dim-teng-h/2-512": (
        Published("https://drive.google.com/drive/folders/1lupf4_dj4tWCpycnraGrgqh4P-6yK5Xe", "nnet_ema.pth",
                  "tyshiwo1/DiM-DiffusionMamba README, Checkpoints: fine-tuned at 512 px, FID 3.94; EMA state dict"),
    ),
}  # fmt: skip


def published(name: str) -> tuple[Published, ...]:
    """The official weights of registry entry ``name`` (empty when none are published)."""
    return PUBLISHED.get(name.lower(), ())


@dataclass
class LoadReport:
    source: str
    layout: str  # "ours", "official", "diffusers"
    dropped: list[str] = field(default_factory=list)  # fixed tables checked against ours and dropped
    kept: list[str] = field(default_factory=list)  # model tensors the layout does not hold (kept as built)
    model: str = ""  # the model's name for messages (registry name and overrides)


# ---------------------------------------------------------------- reading


def read_state_dict(source: str | Path) -> StateDict:
    """The flat state dict in a checkpoint file; anything else is a one-line ValueError naming the file."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ValueError(f"{path}: reading .safetensors needs `pip install safetensors`") from None
        try:
            return dict(load_file(str(path)))
        except Exception as error:  # safetensors raises its own SafetensorError
            raise ValueError(f"{path}: not a safetensors checkpoint ({_first_line(error)})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises anything (UnpicklingError, RuntimeError, EOFError, ...)
        raise ValueError(f"{path}: not a checkpoint torch.load can read ({_first_line(error)})") from None
    state = unwrap(obj)
    if state is None:
        raise ValueError(f"{path}: not a checkpoint (no state dict of tensors in it, nor under {'/'.join(WRAPPERS)})")
    return state


def unwrap(obj: object) -> StateDict | None:
    """The state dict in ``obj``: itself when it maps names to tensors, else the first of ``WRAPPERS`` that
    does; a ``module.`` prefix (DataParallel / accelerate) is removed."""
    if not isinstance(obj, dict) or not obj:
        return None
    if all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        prefix = "module."
        if all(k.startswith(prefix) for k in obj):
            return {k[len(prefix) :]: v for k, v in obj.items()}
        return dict(obj)
    for key in WRAPPERS:
        if key in obj:
            found = unwrap(obj[key])
            if found is not None:
                return found
    return None


def _first_line(error: BaseException) -> str:
    return ((str(error).strip().splitlines() or [type(error).__name__])[0])[:160]


# ---------------------------------------------------------------- per-family filters


def _check_fixed_table(key: str, saved: Tensor, expected: Tensor, what: str, hint: str = "") -> None:
    """A saved fixed table equals ours within ``POS_TOLERANCE`` (on the meta device: its shape)."""
    if saved.numel() != expected.numel():
        raise ValueError(f"{key} {tuple(saved.shape)} is not {what} {tuple(expected.shape)}{hint}")
    saved = saved.detach().float().reshape(expected.shape)
    if saved.device.type == "meta":
        return
    diff = (saved - expected).abs().max().item()
    if diff > POS_TOLERANCE:
        raise ValueError(f"{key} differs from {what} by up to {diff:.2e} (tolerance {POS_TOLERANCE}){hint}")


def _square_grid(key: str, table: Tensor) -> int:
    tokens = table.shape[-2] if table.dim() >= 2 else 0
    grid = math.isqrt(tokens)
    if table.dim() != 3 or grid * grid != tokens:
        raise ValueError(f"{key} {tuple(table.shape)} is not a (1, grid*grid, dim) position table")
    return grid


def _dit_filter(state: StateDict, model: nn.Module, report: LoadReport) -> StateDict:
    if "pos_embed" in state:
        table = state.pop("pos_embed")
        grid = _square_grid("pos_embed", table)
        with torch.device("cpu"):  # also when the model is built on the meta device
            expected = sincos_2d(table.shape[-1], grid, grid)
        _check_fixed_table("pos_embed", table, expected[None], f"DiT's fixed sin-cos table of a {grid}x{grid} grid")
        report.dropped.append("pos_embed")
        report.layout = "official"
    return state


def _latte_filter(state: StateDict, model: nn.Module, report: LoadReport) -> StateDict:
    state = _dit_filter(state, model, report)
    if "temp_embed" in state:
        table = state.pop("temp_embed")
        if table.dim() != 3 or table.shape[0] != 1:
            raise ValueError(f"temp_embed {tuple(table.shape)} is not a (1, frames, dim) frame table")
        with torch.device("cpu"):
            expected = sincos_1d(table.shape[-1], torch.arange(table.shape[1]))
        what = f"Latte's fixed sin-cos table of {table.shape[1]} frames"
        _check_fixed_table("temp_embed", table, expected[None], what)
        report.dropped.append("temp_embed")
        report.layout = "official"
    return state


# diffusers PixArtTransformer2DModel names -> ours (PixArt-alpha's); q/k/v handled separately
_PIXART_DIFFUSERS = {
    "pos_embed.proj": "x_embedder.proj",
    "adaln_single.emb.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "adaln_single.emb.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "adaln_single.emb.resolution_embedder.linear_1": "csize_embedder.mlp.0",
    "adaln_single.emb.resolution_embedder.linear_2": "csize_embedder.mlp.2",
    "adaln_single.emb.aspect_ratio_embedder.linear_1": "ar_embedder.mlp.0",
    "adaln_single.emb.aspect_ratio_embedder.linear_2": "ar_embedder.mlp.2",
    "adaln_single.linear": "t_block.1",
    "caption_projection.linear_1": "y_embedder.y_proj.fc1",
    "caption_projection.linear_2": "y_embedder.y_proj.fc2",
    "proj_out": "final_layer.linear",
}
_PIXART_DIFFUSERS_BLOCK = {  # inside transformer_blocks.N. / blocks.N.
    "attn1.to_out.0": "attn.proj",
    "attn2.to_q": "cross_attn.q_linear",
    "attn2.to_out.0": "cross_attn.proj",
    "ff.net.0.proj": "mlp.fc1",
    "ff.net.2": "mlp.fc2",
}
_NULL_CAPTION = "y_embedder.y_embedding"


def is_diffusers_pixart(state: StateDict) -> bool:
    return any(k.startswith(("transformer_blocks.", "adaln_single.", "caption_projection.")) for k in state)


def pixart_from_diffusers(state: StateDict) -> StateDict:
    """diffusers ``PixArtTransformer2DModel`` names -> PixArt-alpha's (ours). Unknown keys pass unchanged (the
    strict check then names them)."""
    out: StateDict = {}
    pending: dict[str, dict[str, Tensor]] = {}  # our fused key -> parts
    for key, value in state.items():
        stem, _, leaf = key.rpartition(".")
        if key == "scale_shift_table":
            out["final_layer.scale_shift_table"] = value
        elif stem in _PIXART_DIFFUSERS:
            out[f"{_PIXART_DIFFUSERS[stem]}.{leaf}"] = value
        elif key.startswith("transformer_blocks."):
            _, index, rest = key.split(".", 2)
            block = f"blocks.{index}"
            inner, _, leaf = rest.rpartition(".")
            if rest == "scale_shift_table":
                out[f"{block}.scale_shift_table"] = value
            elif inner in _PIXART_DIFFUSERS_BLOCK:
                out[f"{block}.{_PIXART_DIFFUSERS_BLOCK[inner]}.{leaf}"] = value
            elif inner in ("attn1.to_q", "attn1.to_k", "attn1.to_v"):
                pending.setdefault(f"{block}.attn.qkv.{leaf}", {})[inner[-1]] = value
            elif inner in ("attn2.to_k", "attn2.to_v"):
                pending.setdefault(f"{block}.cross_attn.kv_linear.{leaf}", {})[inner[-1]] = value
            else:
                out[key] = value
        else:
            out[key] = value
    for fused, parts in pending.items():
        order = "qkv" if ".attn.qkv." in fused else "kv"
        if set(parts) != set(order):
            absent = ", ".join(fused.replace(".attn.qkv.", f".attn1.to_{p}.") for p in order if p not in parts)
            raise ValueError(f"diffusers PixArt checkpoint lacks {absent.replace('blocks.', 'transformer_blocks.')}")
        out[fused] = torch.cat([parts[p] for p in order], dim=0)
    return out


def pixart_to_diffusers(state: StateDict) -> StateDict:
    """PixArt-alpha's names (ours) -> diffusers ``PixArtTransformer2DModel``'s; the null caption and the
    fixed position buffer are not part of that layout."""
    inverse = {v: k for k, v in _PIXART_DIFFUSERS.items()}
    inverse_block = {v: k for k, v in _PIXART_DIFFUSERS_BLOCK.items()}
    out: StateDict = {}
    for key, value in state.items():
        stem, _, leaf = key.rpartition(".")
        if key in (_NULL_CAPTION, "pos_embed"):
            continue
        if key == "final_layer.scale_shift_table":
            out["scale_shift_table"] = value
        elif stem in inverse:
            out[f"{inverse[stem]}.{leaf}"] = value
        elif key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            block = f"transformer_blocks.{index}"
            inner, _, leaf = rest.rpartition(".")
            if rest == "scale_shift_table":
                out[f"{block}.scale_shift_table"] = value
            elif inner in inverse_block:
                out[f"{block}.{inverse_block[inner]}.{leaf}"] = value
            elif inner == "attn.qkv":
                for part, chunk in zip("qkv", value.chunk(3, dim=0), strict=True):
                    out[f"{block}.attn1.to_{part}.{leaf}"] = chunk
            elif inner == "cross_attn.kv_linear":
                for part, chunk in zip("kv", value.chunk(2, dim=0), strict=True):
                    out[f"{block}.attn2.to_{part}.{leaf}"] = chunk
            else:
                out[key] = value
        else:
            out[key] = value
    return out


def _pixart_table(model: nn.Module, grid: int, lewei_scale: float) -> Tensor:
    with torch.device("cpu"):  # also when the model is built on the meta device
        return sincos_2d_pixart(model.x_embedder.proj.out_channels, grid, grid, grid, lewei_scale)[None]


def _pixart_filter(state: StateDict, model: nn.Module, report: LoadReport) -> StateDict:
    if is_diffusers_pixart(state):
        state = pixart_from_diffusers(state)
        report.layout = "diffusers"
        target = model.state_dict()
        if _NULL_CAPTION in target and _NULL_CAPTION not in state:
            state[_NULL_CAPTION] = target[_NULL_CAPTION]
            report.kept.append(_NULL_CAPTION)
    if "pos_embed" in state:
        table = state.pop("pos_embed")
        grid = _square_grid("pos_embed", table)
        if grid != model.base_size:
            raise ValueError(
                f"pos_embed is PixArt's table of a {grid}x{grid} base grid, this model's base grid is "
                f"{model.base_size}x{model.base_size}: pass input_size={grid * model.patch_size}"
            )
        scale = float(model.lewei_scale)
        fits = [s for s in (0.5, 1.0, 2.0) if s != scale and _close(table, _pixart_table(model, grid, s))]
        hint = f": it is the table of lewei_scale={fits[0]:g}, pass that" if fits else ""
        what = f"PixArt's fixed sin-cos table (lewei_scale={scale:g}, {grid}x{grid})"
        _check_fixed_table("pos_embed", table, _pixart_table(model, grid, scale), what, hint)
        report.dropped.append("pos_embed")
        report.layout = "official" if report.layout == "ours" else report.layout
    return state


def _close(saved: Tensor, expected: Tensor) -> bool:
    if saved.device.type == "meta" or saved.numel() != expected.numel():
        return False
    return (saved.detach().float().reshape(expected.shape) - expected).abs().max().item() <= POS_TOLERANCE


# tyshiwo1/DiM-DiffusionMamba ``Mamba2DModel`` (a diffusers Transformer2DModel subclass) -> our DiMTeng. The
# parent constructor's own modules (PatchEmbed, BasicTransformerBlocks, LayerNorm norm_out, proj_out,
# scale_shift_table, AdaLayerNormSingle) are all replaced or set to None by the subclass under the pinned
# diffusers 0.25 (environment.yaml; and 0.42, checked), so none of them is in nnet_ema.pth: nothing is dropped.
_DIM_TENG_TENSORS = {  # whole tensors, official -> ours
    "additional_embed": "pos_embed",  # mamba_2d.py: learned (1, time [+ class] + grid, d), added before the adapter
    "a4m_adapter.pad_token_dec_split": "split_tokens",  # adapter_attn4mamba.py: (1, k, d), k = mamba_d_conv
    "a4m_adapter.pad_token": "padding.tokens",  # adapter_attn4mamba.py: (1, d, k), token i = pad_token[0, :, i]
}
_DIM_TENG_PREFIXES = (  # module prefixes, official -> ours (the leaf names .weight / .bias / A_log ... are kept)
    ("pos_embed.proj.", "x_embedder.proj."),  # mamba_2d.py UViTPatchEmbed.proj: the patchify Conv2d
    ("label_emb.", "label_token."),  # mamba_2d.py label_emb: the class token, num_embeds_ada_norm + 1 rows
    ("adaln_single.emb.timestep_embedder.linear_1.", "t_embedder.mlp.0."),  # normalization.py PixArtAlphaEmbeddings
    ("adaln_single.emb.timestep_embedder.linear_2.", "t_embedder.mlp.2."),  # (diffusers TimestepEmbedding)
    ("adaln_single.emb.class_embedder.embedding_table.", "label_adaln."),  # normalization.py LabelEmbedding
    ("adaln_single.linear.", "t_block.1."),  # normalization.py AdaRMSNormSingle.linear, applied after SiLU
    ("a4m_adapter.first_smoother.", "first_conv."),  # adapter_attn4mamba.py: depthwise 3x3 Conv2d, with bias
    ("a4m_adapter.last_smoother.", "last_conv."),
    ("norm_out.norm.", "norm_final."),  # mamba_2d.py FusedAddRMSNorm -> mamba_ssm RMSNorm (weight only)
    ("proj_out_1.", "final_modulation.1."),  # mamba_2d.py: (shift, scale) = proj_out_1(silu(time + class token))
    ("proj_out_2.", "linear_out."),  # mamba_2d.py: to patch pixels
    ("final_layer.", "final_conv."),  # mamba_2d.py use_final_conv (off in the DiM configs)
)
_DIM_TENG_BLOCK = (  # inside transformer_blocks.N. (official) / blocks.N. (ours), longest first
    ("norm1.norm.", "norm."),  # attention.py BasicMambaBlock.norm1: FusedAddRMSNorm (ada_norm_single, rms)
    ("attn1.", "mixer."),  # attention.py: attn1 = mamba_simple.Mamba (in_proj, conv1d, x_proj, dt_proj, A_log, D, ...)
    ("skip_linear.0.", "skip_proj_x."),  # attention.py: dim > 512, skip_linear[0](x) + skip_linear[1](skip)
    ("skip_linear.1.", "skip_proj_skip."),
    ("skip_linear.", "skip_proj."),  # attention.py: dim <= 512, skip_linear(cat([x, skip]))
    ("scale_shift_table", "scale_shift_table"),  # attention.py: (3, d) per-block (shift, scale, gate) table
)
_DIM_OFFICIAL = ("transformer_blocks.", "a4m_adapter.", "adaln_single.", "additional_embed", "proj_out_1.",
                 "proj_out_2.", "norm_out.", "label_emb.", "pos_embed.proj.")  # fmt: skip


def is_official_dim_teng(state: StateDict) -> bool:
    return any(k.startswith(_DIM_OFFICIAL) for k in state)


def _rename(key: str, tensors: dict[str, str], prefixes, block: tuple[str, str], block_pairs) -> str | None:
    """``key`` renamed by the first matching rule (None: no rule), in either direction."""
    if key in tensors:
        return tensors[key]
    for old, new in prefixes:
        if key.startswith(old):
            return new + key[len(old) :]
    if key.startswith(block[0]):
        index, _, rest = key[len(block[0]) :].partition(".")
        for old, new in block_pairs:
            if index.isdigit() and rest.startswith(old):
                return f"{block[1]}{index}.{new}{rest[len(old) :]}"
    return None


def _dim_teng_tensor(key: str, value: Tensor, to_ours: bool) -> Tensor:
    """The reshapes: pad_token (1, d, k) <-> tokens (k, d); pad_token_dec_split (1, k, d) <-> split_tokens (k, d)."""
    if key in ("a4m_adapter.pad_token", "padding.tokens"):
        return value[0].transpose(0, 1).contiguous() if to_ours else value.transpose(0, 1)[None].contiguous()
    if key in ("a4m_adapter.pad_token_dec_split", "split_tokens"):
        return value[0] if to_ours else value[None]
    return value


def dim_teng_to_official(state: StateDict) -> StateDict:
    """Our DiMTeng names -> the official ``Mamba2DModel``'s (what its ``nnet_ema.pth`` holds)."""
    tensors = {v: k for k, v in _DIM_TENG_TENSORS.items()}
    prefixes = [(new, old) for old, new in _DIM_TENG_PREFIXES]
    block = [(new, old) for old, new in _DIM_TENG_BLOCK]
    out: StateDict = {}
    for key, value in state.items():
        name = _rename(key, tensors, prefixes, ("blocks.", "transformer_blocks."), block)
        if name is None:
            raise ValueError(f"{key}: no counterpart in the official DiM layout")
        out[name] = _dim_teng_tensor(key, value, to_ours=False)
    return out


def dim_teng_from_official(state: StateDict) -> StateDict:
    """The official ``Mamba2DModel`` names -> ours; a key no rule covers passes unchanged."""
    out: StateDict = {}
    for key, value in state.items():
        name = _rename(key, _DIM_TENG_TENSORS, _DIM_TENG_PREFIXES, ("transformer_blocks.", "blocks."), _DIM_TENG_BLOCK)
        out[key if name is None else name] = _dim_teng_tensor(key, value, to_ours=True)
    return out


def _dim_teng_filter(state: StateDict, model: nn.Module, report: LoadReport) -> StateDict:
    """The official layout is checked in its own names (missing, unexpected, mis-shaped), then renamed. A
    position table of another grid (same width and prefix) passes on as ``pos_embed``: the size check then
    names the ``input_size`` that fits it, and ``--init-from`` resizes it (DiM's 256 -> 512 fine-tuning)."""
    if not is_official_dim_teng(state):
        return state
    report.layout = "official"
    expected = dim_teng_to_official(model.state_dict())
    ours = dict(zip(expected, model.state_dict(), strict=True))
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shaped = []
    for key, want in expected.items():
        have = state.get(key)
        if have is None or have.shape == want.shape:
            continue
        if key == "additional_embed" and have.dim() == 3 and have.shape[::2] == want.shape[::2]:
            continue  # another grid: left to the size check of pos_embed
        shaped.append(f"{key} {tuple(have.shape)} in the checkpoint vs {tuple(want.shape)} in the model ({ours[key]})")
    if missing or unexpected or shaped:
        what = "the official DiM layout (tyshiwo1/DiM-DiffusionMamba Mamba2DModel)"
        raise ValueError(f"{what} does not fit {report.model or type(model).__name__}: "
                         f"{_key_lists(missing, unexpected, shaped)}")  # fmt: skip
    return dim_teng_from_official(state)


FILTERS: dict[str, Callable[[StateDict, nn.Module, LoadReport], StateDict]] = {
    "dit": _dit_filter,
    "latte": _latte_filter,
    "pixart": _pixart_filter,
    "t2md": _pixart_filter,
    "dim-teng": _dim_teng_filter,
}


# ---------------------------------------------------------------- loading


def convert(
    state: StateDict, model: nn.Module, family: str, source: str = "state dict", name: str = ""
) -> tuple[StateDict, LoadReport]:
    """``state`` in ``family``'s official layout (or ours) -> our names for ``model``, fixed tables checked and
    dropped. Errors are ValueErrors naming ``source`` (and the model as ``name``)."""
    report = LoadReport(source=source, layout="ours", model=name)
    try:
        state = FILTERS.get(family, lambda s, m, r: s)(dict(state), model, report)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    return state, report


def mismatches(model: nn.Module, state: StateDict) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, mis-shaped) keys of ``state`` against ``model``'s state dict."""
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    shaped = [f"{k} {tuple(state[k].shape)} in the checkpoint vs {tuple(v.shape)} in the model"
              for k, v in target.items() if k in state and state[k].shape != v.shape]  # fmt: skip
    return missing, unexpected, shaped


def check_fit(model: nn.Module, state: StateDict, name: str, source: str) -> None:
    """A ValueError naming the model and the keys when ``state`` does not fit ``model`` exactly."""
    missing, unexpected, shaped = mismatches(model, state)
    if not (missing or unexpected or shaped):
        return
    hint = _hint(model, state, shaped)
    raise ValueError(f"{source} does not fit {name}: {_key_lists(missing, unexpected, shaped)}{hint}")


def _key_lists(missing: list[str], unexpected: list[str], shaped: list[str]) -> str:
    """Up to four keys of each kind: ``1 missing (a), 2 unexpected (b; c)``."""
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
        if keys:
            more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
            parts.append(f"{len(keys)} {what} ({'; '.join(keys[:4])}{more})")
    return ", ".join(parts)


def _hint(model: nn.Module, state: StateDict, shaped: list[str]) -> str:
    """For a learned position table of another grid (U-ViT, DiM): the size option that fits it."""
    if not any(s.startswith("pos_embed ") for s in shaped) or state["pos_embed"].dim() != 3:
        return ""
    if hasattr(model, "extras"):  # U-ViT: [label,] time tokens first
        extras, option = model.extras, "input_size"
    elif hasattr(model, "conditional"):  # DiM (Teng): time [, label] tokens first
        extras, option = 1 + int(model.conditional), "input_size"
    else:
        return ""
    tokens = state["pos_embed"].shape[1] - extras
    grid = math.isqrt(max(tokens, 0))
    if grid * grid != tokens:
        return ""
    return f"; its position table is for a {grid}x{grid} grid: pass {option}={grid * model.patch_size}"


def load_pretrained(model: nn.Module, source: str | Path | StateDict, family: str, name: str | None = None
                    ) -> LoadReport:  # fmt: skip
    """Load a checkpoint file (or a state dict) in ``family``'s official layout or ours into ``model``,
    strictly. On the meta device only names and shapes are checked (the tensors are assigned)."""
    label = "state dict" if isinstance(source, dict) else str(source)
    name = name or type(model).__name__
    state = source if isinstance(source, dict) else read_state_dict(source)
    state, report = convert(state, model, family, label, name)
    check_fit(model, state, name, label)
    meta = any(t.device.type == "meta" for t in model.state_dict().values())
    with torch.no_grad():
        model.load_state_dict(state, strict=True, assign=meta)
    if report.kept:
        import warnings

        warnings.warn(f"{label} ({report.layout} layout) holds no {', '.join(report.kept)}: {name} keeps its own "
                      "(diffusers' pipelines use the T5 encoding of the empty prompt as the unconditional caption)",
                      stacklevel=2)  # fmt: skip
    return report


# ---------------------------------------------------------------- exporting


def export_state_dict(model: nn.Module, family: str, layout: str = "official", frames: int = 16) -> StateDict:
    """``model``'s weights in an official layout: ``"official"`` (the original code's names, fixed tables
    included, as its checkpoints hold them; DiM-Teng: the official Mamba2DModel's; Latte: its frame table for
    ``frames``, 16 in its UCF-101 model) or ``"diffusers"`` (PixArt only)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dim = model.x_embedder.proj.out_channels if hasattr(model, "x_embedder") else None
    if layout == "official":
        if family in ("dit", "latte"):
            grid = model.input_size // model.patch_size
            state = {"pos_embed": sincos_2d(dim, grid, grid)[None], **state}
            if family == "latte":
                state = {"temp_embed": sincos_1d(dim, torch.arange(frames))[None].float(), **state}
        elif family == "pixart":
            state = {"pos_embed": _pixart_table(model, model.base_size, float(model.lewei_scale)), **state}
        elif family == "dim-teng":
            state = dim_teng_to_official(state)
        return state
    if layout == "diffusers" and family == "pixart":
        return pixart_to_diffusers(state)
    raise ValueError(f"no {layout!r} layout for family {family!r} (official; diffusers for pixart)")

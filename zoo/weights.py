"""Official checkpoints into registry models: ``zoo.create_model(name, pretrained=PATH)`` (timm's pattern).

A checkpoint file is read whatever its container (``read_state_dict``: a ``torch.save`` dict, the state dict
nested under ``ema`` / ``state_dict`` / ``model`` as DiT's and PixArt-alpha's training code save it, or a
``.safetensors`` file), then its family's filter maps it onto our parameter names:

- ``dit`` (facebookresearch/DiT ``models.py``): our names are DiT's. Its ``pos_embed`` is a saved, fixed
  sin-cos table (a frozen Parameter); it is checked against ours (``sincos_2d``) and dropped, since our DiT
  recomputes the table for whatever grid comes in. ``DiT-XL-2-512x512.pt`` saves a 32 x 32 table.
- ``uvit`` (baofff/U-ViT ``libs/uvit.py``, ``nnet_ema.pth``): our names are U-ViT's; ``pos_embed`` is learned
  and must match the model's grid (``img_size``).
- ``pixart`` / ``t2md`` (PixArt-alpha ``PixArt.py`` / ``PixArtMS.py``, the ``.pth`` files wrap the state dict
  under ``state_dict``): our names are PixArt's; the saved ``pos_embed`` buffer (fixed sin-cos with
  ``lewei_scale`` over the base grid) is checked and dropped. The diffusers layout
  (``PixArtTransformer2DModel``, ``diffusion_pytorch_model.safetensors`` / ``.bin``: ``pos_embed.proj``,
  ``adaln_single.*``, ``caption_projection.*``, ``transformer_blocks.N.attn1.to_q`` ...) is renamed, with q/k/v
  concatenated back into ``qkv`` and k/v into ``kv_linear``. diffusers keeps no null caption
  (``y_embedder.y_embedding``): the model keeps its own, and ``LoadReport.kept`` says so.
- ``dim-teng``: the official checkpoints (tyshiwo1/DiM-DiffusionMamba, ``nnet_ema.pth``) are a diffusers-style
  ``Mamba2DModel`` (``transformer_blocks.N.*``, ``a4m_adapter.*``, ``adaln_single.*``, ``additional_embed``)
  whose mapping onto ``DiMTeng`` is not verified yet: such a file is recognised and refused with that
  reason. Checkpoints in our own names load.
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

from zoo.layers.pos_embed import sincos_2d, sincos_2d_pixart

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
        Published("https://drive.google.com/drive/folders/1TTEXKKhnJcEV9jeZbZYlXjiPyV87ZhE0", "nnet_ema.pth",
                  "tyshiwo1/DiM-DiffusionMamba README; its layout is not mapped yet: loading it is refused"),
    ),
    "dim-teng-h/2-512": (
        Published("https://drive.google.com/drive/folders/1lupf4_dj4tWCpycnraGrgqh4P-6yK5Xe", "nnet_ema.pth",
                  "tyshiwo1/DiM-DiffusionMamba README; its layout is not mapped yet: loading it is refused"),
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


_DIM_OFFICIAL = ("transformer_blocks.", "a4m_adapter.", "adaln_single.", "additional_embed", "proj_out_1.")


def _dim_teng_filter(state: StateDict, model: nn.Module, report: LoadReport) -> StateDict:
    official = sorted({p for p in _DIM_OFFICIAL for k in state if k.startswith(p)})
    if official:
        raise ValueError(
            f"this is the official DiM layout (tyshiwo1/DiM-DiffusionMamba Mamba2DModel: {', '.join(official)}*), "
            "whose mapping onto our DiMTeng is not verified yet; only checkpoints in our own names load"
        )
    return state


FILTERS: dict[str, Callable[[StateDict, nn.Module, LoadReport], StateDict]] = {
    "dit": _dit_filter,
    "pixart": _pixart_filter,
    "t2md": _pixart_filter,
    "dim-teng": _dim_teng_filter,
}


# ---------------------------------------------------------------- loading


def convert(
    state: StateDict, model: nn.Module, family: str, source: str = "state dict"
) -> tuple[StateDict, LoadReport]:
    """``state`` in ``family``'s official layout (or ours) -> our names for ``model``, fixed tables checked and
    dropped. Errors are ValueErrors naming ``source``."""
    report = LoadReport(source=source, layout="ours")
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
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
        if keys:
            more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
            parts.append(f"{len(keys)} {what} ({'; '.join(keys[:4])}{more})")
    hint = _hint(model, state, shaped)
    raise ValueError(f"{source} does not fit {name}: {', '.join(parts)}{hint}")


def _hint(model: nn.Module, state: StateDict, shaped: list[str]) -> str:
    """For a learned position table of another grid (U-ViT, DiM): the size option that fits it."""
    if not any(s.startswith("pos_embed ") for s in shaped) or state["pos_embed"].dim() != 3:
        return ""
    if hasattr(model, "extras"):  # U-ViT: [label,] time tokens first
        extras, option = model.extras, "img_size"
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
    state, report = convert(state, model, family, label)
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


def export_state_dict(model: nn.Module, family: str, layout: str = "official") -> StateDict:
    """``model``'s weights in an official layout: ``"official"`` (the original code's names, fixed tables
    included, as its checkpoints hold them) or ``"diffusers"`` (PixArt only)."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dim = model.x_embedder.proj.out_channels if hasattr(model, "x_embedder") else None
    if layout == "official":
        if family == "dit":
            grid = model.input_size // model.patch_size
            state = {"pos_embed": sincos_2d(dim, grid, grid)[None], **state}
        elif family == "pixart":
            state = {"pos_embed": _pixart_table(model, model.base_size, float(model.lewei_scale)), **state}
        return state
    if layout == "diffusers" and family == "pixart":
        return pixart_to_diffusers(state)
    raise ValueError(f"no {layout!r} layout for family {family!r} (official; diffusers for pixart)")

"""Mamba-1 selective scan as a ``torch.library`` custom op with mamba_ssm's ``selective_scan_fn`` semantics.

``selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False)``

- ``u``, ``delta``: (batch, dim, L); ``A``: (dim, N), real; ``B``, ``C``: (batch, N, L) or grouped
  (batch, G, N, L) with ``dim`` divisible by ``G`` (channel ``d`` uses group ``d // (dim // G)``);
  ``D``, ``delta_bias``: (dim,); ``z``: (batch, dim, L).
- dt = softplus(delta + delta_bias) (softplus only if ``delta_softplus``; threshold 20 as in mamba_ssm),
  h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, y_t = C_t . h_t + D u_t, out = y * silu(z) when z is given.
  Computed in float32, returned in ``u``'s dtype (as mamba_ssm does).

Not supported (mamba_ssm supports them, no model here uses them): complex A, time-invariant 2-D B/C,
``return_last_state``. Each is rejected with an error rather than computed differently.

Backends: CUDA tensors use mamba_ssm's kernel when the ``[cuda]`` extra imports; CPU tensors use our
compiled C++ kernel (forward and backward, see ``csrc/selective_scan_cpu.cpp``), or a PyTorch loop with a
one-time warning when it cannot be built. When a gradient will be needed, our kernel's forward keeps the state
entering every 64 steps (a quarter of ``u``'s size, the op's residual), so its backward runs in its
cache-friendly block order without a pass that recomputes them (1.4x faster at L 1024, see
``docs/cpu-kernels.md``).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _cuda, kernel_choice
from ._extension import load_cpu_kernels
from .dispatch import Backend, define_op, no_residual


def selective_scan_loop(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """Step-by-step PyTorch implementation (grouped 4-D B/C); differentiable; the fallback backend."""
    dtype = u.dtype
    u, delta, A = u.float(), delta.float(), A.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape
    per_group = dim // B.shape[1]
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        Bt = B[..., t].float().repeat_interleave(per_group, dim=1)
        Ct = C[..., t].float().repeat_interleave(per_group, dim=1)
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * Bt
        ys.append((h * Ct).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


_warned_cuda_fallback = False


def _cuda_fallback_warning() -> None:
    global _warned_cuda_fallback
    if not _warned_cuda_fallback:
        warnings.warn(
            "mambabench: mamba_ssm is not importable; the selective scan on CUDA runs as a slow PyTorch "
            "loop. Install the [cuda] extra (see README) for the real kernel.",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned_cuda_fallback = True


def _cuda_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, fn=None):
    """The call into mamba_ssm (``fn``: its ``selective_scan_fn`` or a function with that signature)."""
    fn = fn or _cuda.selective_scan_fn()
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _f32(t: Tensor | None, like: Tensor) -> Tensor:
    return like.new_empty(0, dtype=torch.float32) if t is None else t.float().contiguous()


def _keeps_states(u: Tensor, A: Tensor, B: Tensor, save_states: bool) -> bool:
    """Whether our kernel's forward keeps its block states for these inputs: asked to, and its vector path with
    one group (d_state 16, d_inner a multiple of 16), not the reference kernels."""
    return (
        save_states
        and A.shape[1] == 16
        and B.shape[1] == 1
        and u.shape[1] % 16 == 0
        and not kernel_choice.using_reference_kernels()
    )


def _cpp_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_states=False) -> tuple[Tensor, Tensor]:
    """Our C++ kernel: (output, kept states or an empty tensor). u, delta and z keep their strides: it reads
    token-major views (a Mamba layer's activations) without a transposing copy and writes its output in u's
    layout."""
    ext = load_cpu_kernels()
    Bt, Ct = B.float().transpose(-1, -2).contiguous(), C.float().transpose(-1, -2).contiguous()
    if kernel_choice.using_reference_kernels():  # the reference path: channel-major copies, portable kernel
        out, states = ext.selective_scan_fwd(
            _f32(u, u),
            _f32(delta, u),
            _f32(A, u),
            Bt,
            Ct,
            _f32(D, u),
            _f32(z, u),
            _f32(delta_bias, u),
            delta_softplus,
            True,
            False,
        )
        return out.to(u.dtype), states
    out, states = ext.selective_scan_fwd(
        u.float(),
        delta.float(),
        _f32(A, u),
        Bt,
        Ct,
        _f32(D, u),
        u.new_empty(0, dtype=torch.float32) if z is None else z.float(),
        _f32(delta_bias, u),
        delta_softplus,
        False,
        _keeps_states(u, A, B, save_states),
    )
    return out.to(u.dtype), states


def _cpp_scan_backward(dout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, states) -> list[Tensor]:
    """[du, ddelta, dA, dB, dC, dD, dz, ddelta_bias] from our C++ kernel (CPU); absent inputs get empty tensors;
    ``states``: the forward's kept states, or empty.
    u, delta, z and dout keep their strides (token-major views are read without transposing copies) and
    du, ddelta, dz come back in u's layout, so autograd need not copy them into the leaves' layout either."""
    ext = load_cpu_kernels()
    du, ddelta, dA, dB, dC, dD, dz, dbias = ext.selective_scan_bwd(
        dout.float(),
        u.float(),
        delta.float(),
        _f32(A, u),
        B.float().transpose(-1, -2).contiguous(),
        C.float().transpose(-1, -2).contiguous(),
        _f32(D, u),
        u.new_empty(0, dtype=torch.float32) if z is None else z.float(),
        _f32(delta_bias, u),
        delta_softplus,
        u.new_empty(0, dtype=torch.float32),  # dz_out: a new tensor
        states,
    )
    return [
        du.to(u.dtype),
        ddelta.to(delta.dtype),
        dA.to(A.dtype),
        dB.transpose(-1, -2).to(B.dtype),
        dC.transpose(-1, -2).to(C.dtype),
        dD.to(D.dtype) if D is not None else u.new_empty(0),
        dz.to(z.dtype) if z is not None else u.new_empty(0),
        dbias.to(delta_bias.dtype) if delta_bias is not None else u.new_empty(0),
    ]


def _fake_scan_backward(dout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, states):
    def like(t: Tensor | None) -> Tensor:
        return u.new_empty(0) if t is None else torch.empty_like(t)

    return [like(u), like(delta), like(A), like(B), like(C), like(D), like(z), like(delta_bias)]


_SCAN_BACKWARD = define_op(
    "selective_scan_backward",
    "(Tensor dout, Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? delta_bias, "
    "bool delta_softplus, Tensor states) -> Tensor[]",
    [Backend("cpu-cpp", "cpu", _cpp_scan_backward)],
    _fake_scan_backward,
)


_SCAN_ARGS = 9  # the op's arguments up to delta_softplus; then save_states, absent when left at its default
_STATE_BLOCK = 64  # steps between kept states (csrc kLongBlock)


def _cpp_backward(dout: Tensor, args, needs, residual: Tensor) -> list[Tensor | None]:
    grads = _SCAN_BACKWARD(dout, *args[:_SCAN_ARGS], residual)
    return [*grads, None, None]  # absent inputs: their empty gradients are dropped by `needs`


def _scan_args(fn):
    """``fn`` of the scan's own arguments, called with the op's (``save_states`` dropped)."""
    return lambda *args: fn(*args[:_SCAN_ARGS])


@_scan_args
def _cuda_loop(*args) -> Tensor:
    _cuda_fallback_warning()
    return selective_scan_loop(*args)


_SCAN_SCHEMA = (
    "(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? delta_bias, "
    "bool delta_softplus, bool save_states=False) -> (Tensor, Tensor)"
)


def _fake_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_states=False) -> tuple[Tensor, Tensor]:
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_states)
    if _OP.select(args).keeps_residual and _keeps_states(u, A, B, save_states):
        batch, dim, length = u.shape
        states = u.new_empty(batch, dim, -(-length // _STATE_BLOCK), 16, dtype=torch.float32)
    else:
        states = no_residual(u)
    return torch.empty_like(u), states


_OP = define_op(
    "selective_scan",
    _SCAN_SCHEMA,
    [
        Backend(
            "mamba_ssm",
            "cuda",
            _scan_args(lambda *args: _cuda_selective_scan(*args).contiguous()),
            usable=lambda *a: _cuda.selective_scan_fn() is not None,
            differentiable=_scan_args(_cuda_selective_scan),
        ),
        Backend("torch-loop", "cuda", _cuda_loop, differentiable=_scan_args(selective_scan_loop)),
        Backend(
            "cpu-cpp",
            "cpu",
            _cpp_scan,
            usable=lambda *a: load_cpu_kernels() is not None,
            backward=_cpp_backward,
            keeps_residual=True,
        ),
        Backend("torch-loop", "cpu", _scan_args(selective_scan_loop)),
    ],
    _fake_scan,
    residual=True,
)


def _grouped(u: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """B and C as (batch, G, N, L), checked (the arguments mamba_ssm accepts and the models use)."""
    if A.is_complex():
        raise ValueError("selective_scan: complex A is not supported (the models here use real A)")
    if B.dim() == 2 or C.dim() == 2:
        raise ValueError("selective_scan: B and C must be time-varying, (batch, N, L) or (batch, G, N, L)")
    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    if B.shape[1] != C.shape[1] or u.shape[1] % B.shape[1]:
        raise ValueError(
            f"selective_scan: B and C need the same number of groups dividing dim={u.shape[1]}, "
            f"got {B.shape[1]} and {C.shape[1]}"
        )
    return B, C


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """Selective scan with mamba_ssm ``selective_scan_fn``'s arguments and semantics (see module doc)."""
    B, C = _grouped(u, A, B, C)
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    save = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    return _OP(*inputs, delta_softplus, save)


def scan_keeping_states(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
) -> tuple[Tensor, Tensor]:
    """``selective_scan`` and the states our CPU kernel keeps for ``selective_scan_bwd`` (empty from other
    backends): for callers that run that backward themselves (``mamba1_inner``)."""
    B, C = _grouped(u, A, B, C)
    return _OP.with_residual(u, delta, A, B, C, D, z, delta_bias, delta_softplus, True)

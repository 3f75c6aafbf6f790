"""Mamba-2 SSD scan as a ``torch.library`` custom op with mamba_ssm's ``mamba_chunk_scan_combined`` semantics.

``ssd_scan(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, dt_softplus=False)``

- ``x``: (batch, L, heads, headdim); ``dt``: (batch, L, heads); ``A``: (heads,), negative;
  ``B``, ``C``: (batch, L, groups, N) with heads divisible by groups (head ``h`` uses group
  ``h // (heads // groups)``); ``D``: (heads, headdim) or (heads,); ``z``: (batch, L, heads, headdim);
  ``dt_bias``: (heads,).
- dt = softplus?(dt + dt_bias); per head: h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t^T (state N x headdim);
  y_t = C_t^T h_t + D x_t; out = y * silu(z) when z is given. Returned in ``x``'s dtype.

``chunk_size`` is part of mamba_ssm's signature and goes to its kernel on CUDA (``Mamba2(chunk_size=)``); the
result does not depend on it, and the FLOP count uses it as the chunk length of the algorithm it counts
(``zoo/ops/flops.py``) whatever a backend does. On the CPU the forward
runs our C++ kernel (``csrc/ssd_cpu.cpp``: the state-space-duality algorithm with chunks of 64 tokens, its
state terms as GEMMs over all heads, reading token-major views without copies), and so does the backward
(``ssd_bwd``, op ``ssd_scan_backward``: every input's gradient in one pass over the chunks from the last,
the chunk-boundary states recomputed by a state-only forward pass). When the kernel cannot be built, and
under ``kernel_choice.reference_kernels()``, forward and backward use ``ssd_scan_chunked``, the same
algorithm in differentiable PyTorch, in blocks of ``_BLOCK_CHUNKS`` chunks so memory stays O(L) at any
resolution. ``dt_limit``,
``initial_states``, ``seq_idx`` and varlen inputs of mamba_ssm are not supported. ``reverse=True`` (ours)
scans the sequence from its end, output in token order (``flip(ssd(flip(inputs)))``): the C++ kernel reads
the chunks backwards instead of flipping copies; other backends flip.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _cuda, kernel_choice
from ._extension import load_cpu_kernels
from .dispatch import Backend, define_op

_CPU_CHUNK = 64
_BLOCK_CHUNKS = 8


def _block(x, dt, A, B, C, state):
    """SSD over one block of K chunks of T steps, all chunks at once; returns (y, state after the block).

    x: (b, K, T, G, Hg, P), dt: (b, K, T, G, Hg) (effective), A: (G, Hg), B, C: (b, K, T, G, N),
    state: (b, G, N, Hg*P) entering the block. Laid out so every contraction is one batched matmul.
    """
    b, K, T, G, Hg, P = x.shape
    acum = torch.cumsum(dt * A, dim=2).permute(0, 1, 3, 4, 2)  # (b, K, G, Hg, T) cumulative log-decay
    xdt = (x * dt.unsqueeze(-1)).permute(0, 1, 3, 4, 2, 5)  # (b, K, G, Hg, T, P)
    Bg = B.permute(0, 1, 3, 2, 4)  # (b, K, G, T, N)
    Cg = C.permute(0, 1, 3, 2, 4)
    # 1. within a chunk: y_t = sum_{s<=t} (C_t.B_s) exp(acum_t - acum_s) dt_s x_s
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    seg = (acum.unsqueeze(-1) - acum.unsqueeze(-2)).masked_fill_(~causal, float("-inf"))
    scores = (Cg @ Bg.transpose(-1, -2)).unsqueeze(3) * torch.exp(seg)  # (b, K, G, Hg, T, T)
    y = scores @ xdt  # (b, K, G, Hg, T, P)
    # 2-4. sequential pass over the K chunks: read out the state entering chunk k
    # (y_t += exp(acum_t) C_t . state), then carry it past the chunk, adding what the chunk contributes
    # as seen at its end: state <- exp(acum_end) state + B^T (exp(acum_end - acum_s) dt_s x_s)
    to_end = torch.exp(acum[..., -1:] - acum).unsqueeze(-1)  # (b, K, G, Hg, T, 1)
    weighted = (xdt * to_end).permute(0, 1, 2, 4, 3, 5).reshape(b * K, G, T, Hg * P)
    Bt = Bg.transpose(-1, -2).reshape(b * K, G, -1, T)  # (b*K, G, N, T)
    chunk_decay = torch.exp(acum[..., -1]).repeat_interleave(P, dim=-1).unsqueeze(-2)  # (b, K, G, 1, Hg*P)
    y_off = []
    for k in range(K):
        y_off.append(Cg[:, k] @ state)  # (b, G, T, Hg*P)
        rows = slice(k, b * K, K)  # chunk k of every batch element
        state = torch.baddbmm(
            (state * chunk_decay[:, k]).flatten(0, 1), Bt[rows].flatten(0, 1), weighted[rows].flatten(0, 1)
        ).view_as(state)
    y_off = torch.stack(y_off, dim=1).reshape(b, K, G, T, Hg, P).permute(0, 1, 2, 4, 3, 5)
    y = y + y_off * torch.exp(acum).unsqueeze(-1)
    return y.permute(0, 1, 4, 2, 3, 5), state  # (b, K, T, G, Hg, P)


def ssd_scan_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    dt_softplus: bool = False,
) -> Tensor:
    """Differentiable PyTorch SSD (chunked, blockwise); float32 inside; the CPU backend."""
    dtype = x.dtype
    batch, length, heads, headdim = x.shape
    groups, nstate = B.shape[2], B.shape[3]
    hg = heads // groups
    x32, dt32 = x.float(), dt.float()
    if dt_bias is not None:
        dt32 = dt32 + dt_bias.float()
    if dt_softplus:
        dt32 = F.softplus(dt32)
    T = _CPU_CHUNK
    pad = (-length) % T
    if pad:  # dt = 0 on padding: no decay and no input, so the real steps are unaffected
        x32 = F.pad(x32, (0, 0, 0, 0, 0, pad))
        dt32 = F.pad(dt32, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    nchunks = (length + pad) // T
    xs = x32.reshape(batch, nchunks, T, groups, hg, headdim)
    dts = dt32.reshape(batch, nchunks, T, groups, hg)
    Bs = B.float().reshape(batch, nchunks, T, groups, nstate)
    Cs = C.float().reshape(batch, nchunks, T, groups, nstate)
    Ag = A.float().reshape(groups, hg)
    state = x32.new_zeros(batch, groups, nstate, hg * headdim)
    ys = []
    for k0 in range(0, nchunks, _BLOCK_CHUNKS):
        k1 = min(nchunks, k0 + _BLOCK_CHUNKS)
        y, state = _block(xs[:, k0:k1], dts[:, k0:k1], Ag, Bs[:, k0:k1], Cs[:, k0:k1], state)
        ys.append(y)
    y = torch.cat(ys, dim=1).reshape(batch, nchunks * T, heads, headdim)[:, :length]
    if D is not None:
        Df = D.float()
        y = y + x.float() * (Df[:, None] if Df.dim() == 1 else Df)
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


def _cuda_ssd(x, dt, A, B, C, D, z, dt_bias, dt_softplus, chunk_size: int = 256, fn=None):
    """The call into mamba_ssm (``fn``: its ``mamba_chunk_scan_combined`` or a function with that signature)."""
    fn = fn or _cuda.mamba_chunk_scan_combined()
    return fn(x, dt, A, B, C, chunk_size=chunk_size, D=D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus)


def _inner_contiguous(t: Tensor, dims: int) -> Tensor:
    """``t`` as float32 with its last ``dims`` dims contiguous (other strides kept: no copy of a view)."""
    t = t.float()
    expected = 1
    for d in range(t.dim() - 1, t.dim() - 1 - dims, -1):
        if t.stride(d) != expected and t.shape[d] > 1:
            return t.contiguous()
        expected *= t.shape[d]
    return t


def _cpp_ssd(x, dt, A, B, C, D, z, dt_bias, dt_softplus, reverse=False):
    ext = load_cpu_kernels()
    heads, headdim = x.shape[2], x.shape[3]
    empty = x.new_empty(0, dtype=torch.float32)
    if D is None:
        Df = empty
    else:
        Df = D.float()
        Df = (Df[:, None] if Df.dim() == 1 else Df).expand(heads, headdim).contiguous()
    y = ext.ssd_fwd(
        _inner_contiguous(x, 2),
        _inner_contiguous(dt, 1),
        A.float().contiguous(),
        _inner_contiguous(B, 2),
        _inner_contiguous(C, 2),
        Df,
        empty if z is None else _inner_contiguous(z, 2),
        empty if dt_bias is None else dt_bias.float().contiguous(),
        dt_softplus,
        reverse,
    )
    return y.to(x.dtype)


def _cpp_ssd_backward(dout, x, dt, A, B, C, D, z, dt_bias, dt_softplus, reverse) -> list[Tensor]:
    """[dx, ddt, dA, dB, dC, dD, dz, ddt_bias] from our C++ backward (``ssd_bwd``); absent inputs get empty
    tensors. dt is the raw dt (the gradient goes through dt_bias and softplus as the forward applies them)."""
    ext = load_cpu_kernels()
    heads, headdim = x.shape[2], x.shape[3]
    empty = x.new_empty(0, dtype=torch.float32)
    Df = empty if D is None else (D.float()[:, None] if D.dim() == 1 else D.float()).expand(heads, headdim)
    dx, ddt, dA, dB, dC, dD, dz, dbias = ext.ssd_bwd(
        dout.float().contiguous(),
        _inner_contiguous(x, 2),
        _inner_contiguous(dt, 1),
        A.float().contiguous(),
        _inner_contiguous(B, 2),
        _inner_contiguous(C, 2),
        Df.contiguous(),
        empty if z is None else _inner_contiguous(z, 2),
        empty if dt_bias is None else dt_bias.float().contiguous(),
        dt_softplus,
        reverse,
    )
    if D is not None and D.dim() == 1:
        dD = dD.sum(-1)
    return [
        dx.to(x.dtype),
        ddt.to(dt.dtype),
        dA.to(A.dtype),
        dB.to(B.dtype),
        dC.to(C.dtype),
        dD.to(D.dtype) if D is not None else x.new_empty(0),  # a fresh empty each: returns may not alias
        dz.to(z.dtype) if z is not None else x.new_empty(0),
        dbias.to(dt_bias.dtype) if dt_bias is not None else x.new_empty(0),
    ]


def _fake_ssd_backward(dout, x, dt, A, B, C, D, z, dt_bias, dt_softplus, reverse) -> list[Tensor]:
    def like(t: Tensor | None) -> Tensor:
        return x.new_empty(0) if t is None else torch.empty_like(t)

    return [like(x), like(dt), like(A), like(B), like(C), like(D), like(z), like(dt_bias)]


_SSD_BACKWARD = define_op(
    "ssd_scan_backward",
    "(Tensor dout, Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? dt_bias, "
    "bool dt_softplus, bool reverse) -> Tensor[]",
    [Backend("cpu-cpp", "cpu", _cpp_ssd_backward)],
    _fake_ssd_backward,
)


def _cpp_backward(dout: Tensor, args, needs) -> list[Tensor | None]:
    """The "cpu-cpp" row's backward: the op's arguments are (x, dt, A, B, C, D, z, dt_bias, dt_softplus, reverse,
    chunk_size); the kernel computes every gradient at once (the unneeded ones are dropped by ``needs``)."""
    grads = _SSD_BACKWARD(dout, *args[:-1])
    return [*grads, None, None, None]


def _flipped(fn):
    """``fn`` over the sequence from its end, by flipping the token dimension (backends without a reverse mode)."""

    def run(x, dt, A, B, C, D, z, dt_bias, dt_softplus, reverse=False):
        if not reverse:
            return fn(x, dt, A, B, C, D, z, dt_bias, dt_softplus)
        flip = [None if t is None else t.flip(1) for t in (x, dt, B, C, z)]
        return fn(flip[0], flip[1], A, flip[2], flip[3], D, flip[4], dt_bias, dt_softplus).flip(1)

    return run


def _cuda_flipped(*args) -> Tensor:
    """mamba_ssm's kernel with the op's chunk size (only it takes one: ours choose their own, and the result
    does not depend on it), reversed by flipping."""
    *inputs, chunk_size = args
    return _flipped(functools.partial(_cuda_ssd, chunk_size=chunk_size))(*inputs)


def _without_chunk(fn):
    """``fn`` called with the op's arguments but the last (the chunk size)."""
    return lambda *args: fn(*args[:-1])


def _contiguous(fn):
    return lambda *args: fn(*args).contiguous()


_TORCH_SSD = _without_chunk(_flipped(ssd_scan_chunked))
_OP = define_op(
    "ssd_scan",
    "(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? dt_bias, bool dt_softplus, "
    "bool reverse, int chunk_size) -> Tensor",
    [
        Backend(
            "mamba_ssm",
            "cuda",
            _contiguous(_cuda_flipped),
            usable=lambda *a: _cuda.mamba_chunk_scan_combined() is not None,
            differentiable=_cuda_flipped,
        ),
        Backend("torch-ssd", "cuda", _contiguous(_TORCH_SSD), differentiable=_TORCH_SSD),
        Backend(
            "cpu-cpp",
            "cpu",
            _contiguous(_without_chunk(_cpp_ssd)),
            usable=lambda *a: not kernel_choice.using_reference_kernels() and load_cpu_kernels() is not None,
            backward=_cpp_backward,  # the C++ backward (ssd_bwd)
        ),
        Backend("torch-ssd", "cpu", _contiguous(_TORCH_SSD), differentiable=_TORCH_SSD),
    ],
    lambda x, *rest: torch.empty(x.shape, dtype=x.dtype, device=x.device),
)


def ssd_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int = 256,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    dt_softplus: bool = False,
    reverse: bool = False,
) -> Tensor:
    """SSD scan with ``mamba_chunk_scan_combined``'s arguments and semantics (see module doc)."""
    if x.shape[2] % B.shape[2] or B.shape != C.shape:
        raise ValueError(
            f"ssd_scan: B and C must have equal shapes with a group count dividing heads={x.shape[2]}; "
            f"got B {tuple(B.shape)}, C {tuple(C.shape)}"
        )
    return _OP(x, dt, A, B, C, D, z, dt_bias, dt_softplus, reverse, int(chunk_size))

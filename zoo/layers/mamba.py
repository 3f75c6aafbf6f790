"""Mamba token mixers with mamba_ssm's parameter names and shapes, so a state dict moves between our
CPU kernels and the CUDA ones (the ops in ``zoo.ops`` pick the backend by device).

- ``Mamba``: Mamba-1 (``mamba_ssm.modules.mamba_simple.Mamba``): in_proj, conv1d, x_proj, dt_proj,
  A_log, D, out_proj. ``bimamba=True`` is Vim's "v2" bidirectional form (hustvl/Vim): shared in_proj and
  out_proj; a second conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b scan the flipped sequence; the two
  directions are summed, or averaged with ``divide_out=True`` (as the published Vim models do).
  On CUDA, with the ``[cuda]`` extra, the mixer runs as the papers' code runs it: mamba_ssm's fused
  ``mamba_inner_fn`` (unidirectional: DiM of Teng et al., WD-Mamba) or, for the bidirectional form, Vim's
  ``mamba_inner_fn_no_out_proj`` once per direction when that fork is installed (upstream mamba_ssm lacks it:
  the separate CUDA ops run instead). Counting on the meta device never takes this path. Training on the
  CPU takes our equivalent, ``ops.mamba1_inner`` (one autograd node per direction, without the backward's
  concatenation and gradient sum); without gradients the separate ops run, as tracers count them.
  ``share_dt_proj=True`` keeps one x_proj and dt_proj for both directions (the backward direction still has
  its own conv1d_b, A_b_log and D_b): the smallest bidirectional form, used where a paper's parameter
  counts rule out Vim's separate projections (DiM of Mo & Tian).
- ``Mamba2``: ``mamba_ssm.modules.mamba2.Mamba2`` without its MLP split: in_proj, conv1d, dt_bias, A_log,
  D, norm (gated RMSNorm, gate applied before normalising), out_proj.

Both take and return (batch, L, d_model).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo import ops
from zoo.errors import BadOption
from zoo.ops import _cuda, kernel_choice, mamba1_inner
from zoo.ops.dispatch import device_type


def _inverse_softplus_dt(size: int, dt_min: float, dt_max: float, floor: float) -> Tensor:
    """Bias whose softplus is log-uniform in [dt_min, dt_max] (the Mamba dt initialisation)."""
    dt = torch.exp(torch.rand(size) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


def _direction_params(
    d_inner: int,
    d_state: int,
    d_conv: int,
    dt_rank: int,
    conv_bias: bool,
    dt_min: float,
    dt_max: float,
    dt_scale: float,
    dt_init_floor: float,
):
    """conv1d, x_proj, dt_proj, A_log, D of one scan direction, initialised as mamba_ssm does (S4D-real A,
    log-uniform dt through the dt_proj bias, D = 1)."""
    conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=conv_bias)
    x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
    dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
    std = dt_rank**-0.5 * dt_scale
    nn.init.uniform_(dt_proj.weight, -std, std)
    with torch.no_grad():
        dt_proj.bias.copy_(_inverse_softplus_dt(d_inner, dt_min, dt_max, dt_init_floor))
    A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
    D = nn.Parameter(torch.ones(d_inner))
    return conv1d, x_proj, dt_proj, A_log, D


class _DtProjection(torch.autograd.Function):
    """``dt @ weight.t()`` from the ``dt_rank`` features (a handful: 6 at width 96) to d_inner, with every GEMM
    of the backward in the orientation that is fast on the CPU for so thin an input: the weight
    gradient as ``(dt.t() @ grad).t()`` instead of autograd's ``grad.t() @ dt`` (7x faster at 4032 tokens x
    rank 6 x 192 channels, one thread), the input gradient as ``(weight.t() @ grad.t()).t()`` (4x). Same MACs."""

    @staticmethod
    def forward(ctx, dt: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(dt, weight)
        return dt @ weight.t()  # token-major, as the scan reads it best

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
        dt, weight = ctx.saved_tensors
        flat, g = dt.reshape(-1, dt.shape[-1]), grad.reshape(-1, grad.shape[-1])
        ddt = (weight.t() @ g.t()).t().reshape(dt.shape)
        return ddt, (flat.t() @ g).t()


def dt_projection(dt: Tensor, weight: Tensor) -> Tensor:
    """Mamba's low-rank dt projection (no bias: it is added inside the scan), CPU-friendly (``_DtProjection``)
    where a backward will run; a plain matmul otherwise, which tracers such as fvcore's see and count."""
    if dt.device.type == "cpu" and torch.is_grad_enabled() and not torch.jit.is_tracing():
        return _DtProjection.apply(dt, weight)
    return dt @ weight.t()


class Mamba(nn.Module):
    """Mamba-1 mixer (optionally Vim-v2 bidirectional); the module-level doc lists the layout."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        bimamba: bool = False,
        divide_out: bool = False,
        share_dt_proj: bool = False,
    ):
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.bimamba = bimamba
        self.divide_out = divide_out
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        args = (self.d_inner, d_state, d_conv, self.dt_rank, conv_bias, dt_min, dt_max, dt_scale, dt_init_floor)
        self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D = _direction_params(*args)
        if bimamba:
            conv1d_b, x_proj_b, dt_proj_b, self.A_b_log, self.D_b = _direction_params(*args)
            self.conv1d_b = conv1d_b
            if not share_dt_proj:
                self.x_proj_b, self.dt_proj_b = x_proj_b, dt_proj_b
        self.share_dt_proj = share_dt_proj
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def _scan(
        self, x: Tensor, z: Tensor, conv1d: nn.Conv1d, x_proj: nn.Linear, dt_proj: nn.Linear, A_log: Tensor, D: Tensor
    ) -> Tensor:
        """One direction: x, z (batch, L, d_inner), token-major -> (batch, L, d_inner).

        Activations stay token-major throughout: the conv and the scan read transposed views (the layout
        mamba_ssm's kernels call channel-last), so no (batch, d_inner, L) copy is made."""
        x = ops.causal_conv1d(x.transpose(1, 2), conv1d.weight.squeeze(1), conv1d.bias, activation="silu")
        dt, B, C = torch.split(x_proj(x.transpose(1, 2)), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = dt_projection(dt, dt_proj.weight)  # (b, L, d_inner); the bias is added (before softplus) in the scan
        A = -torch.exp(A_log.float())
        y = ops.selective_scan(
            x,
            dt.transpose(1, 2),
            A,
            B.transpose(1, 2),
            C.transpose(1, 2),
            D.float(),
            z.transpose(1, 2),
            dt_proj.bias.float(),
            True,
        )
        return y.transpose(1, 2)

    def _fused_cpu(self, xz: Tensor) -> Tensor:
        """The directions through ``ops.mamba1_inner`` (CPU training: one autograd node per direction, no
        concatenation or gradient sum in its backward); the same values as ``_scan``."""
        y = mamba1_inner.mamba_inner(
            xz,
            self.conv1d.weight,
            self.conv1d.bias,
            self.x_proj.weight,
            self.dt_proj.weight,
            self.dt_proj.bias,
            -torch.exp(self.A_log.float()),
            self.D.float(),
        )
        if not self.bimamba:
            return y
        x_proj, dt_proj = (self.x_proj, self.dt_proj) if self.share_dt_proj else (self.x_proj_b, self.dt_proj_b)
        yb = mamba1_inner.mamba_inner(
            xz.flip(1),
            self.conv1d_b.weight,
            self.conv1d_b.bias,
            x_proj.weight,
            dt_proj.weight,
            dt_proj.bias,
            -torch.exp(self.A_b_log.float()),
            self.D_b.float(),
        ).flip(1)
        return (y + yb) / 2 if self.divide_out else y + yb

    def fused_kernel(self):
        """mamba_ssm's fused mixer function for this layer, or None (not on CUDA, or not installed). It needs
        causal-conv1d too: mamba_inner_fn calls its kernel for the convolution and, without it, fails at the
        first call (seen on an H200 with mamba-ssm alone); the separate ops run then."""
        if kernel_choice.using_reference_kernels() or _cuda.causal_conv1d_fn() is None:
            return None
        return _cuda.mamba_inner_fn_no_out_proj() if self.bimamba else _cuda.mamba_inner_fn()

    def fused_forward(self, hidden: Tensor, fn) -> Tensor:
        """The mixer through ``fn`` (``mamba_inner_fn``, or ``mamba_inner_fn_no_out_proj`` when bidirectional),
        called as mamba_ssm's ``Mamba.forward`` and Vim's v2 layer call it: xz (batch, 2 d_inner, L) with L
        contiguous, A = -exp(A_log) in float32, D and the dt bias in float32, softplus on dt."""
        batch, length, _ = hidden.shape
        xz = (self.in_proj.weight @ hidden.reshape(-1, hidden.shape[-1]).t()).view(-1, batch, length).transpose(0, 1)
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias.to(xz.dtype)[None, :, None]
        A = -torch.exp(self.A_log.float())
        if not self.bimamba:
            return fn(
                xz,
                self.conv1d.weight,
                self.conv1d.bias,
                self.x_proj.weight,
                self.dt_proj.weight,
                self.out_proj.weight,
                self.out_proj.bias,
                A,
                None,
                None,
                self.D.float(),
                delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True,
            )
        x_proj_b, dt_proj_b = (self.x_proj, self.dt_proj) if self.share_dt_proj else (self.x_proj_b, self.dt_proj_b)
        y = fn(
            xz,
            self.conv1d.weight,
            self.conv1d.bias,
            self.x_proj.weight,
            self.dt_proj.weight,
            A,
            None,
            None,
            self.D.float(),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )
        yb = fn(
            xz.flip(-1),
            self.conv1d_b.weight,
            self.conv1d_b.bias,
            x_proj_b.weight,
            dt_proj_b.weight,
            -torch.exp(self.A_b_log.float()),
            None,
            None,
            self.D_b.float(),
            delta_bias=dt_proj_b.bias.float(),
            delta_softplus=True,
        )
        y = y + yb.flip(-1)
        y = y / 2 if self.divide_out else y
        return F.linear(y.transpose(1, 2), self.out_proj.weight, self.out_proj.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        if device_type(hidden) == "cuda" and (fused := self.fused_kernel()) is not None:
            kernel_choice.record("mamba1_mixer", "mamba_ssm-fused")
            return self.fused_forward(hidden, fused)
        xz = self.in_proj(hidden)
        if torch.is_grad_enabled() and mamba1_inner.usable(xz, self.conv1d.weight, self.A_log, *self.parameters()):
            return self.out_proj(self._fused_cpu(xz))
        kernel_choice.record("mamba1_mixer", "composed")
        x, z = xz.chunk(2, dim=-1)  # (b, L, d_inner) views, token-major
        y = self._scan(x, z, self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        if self.bimamba:  # Vim v2: the shared in_proj output scanned backwards (the projection runs once)
            x_proj, dt_proj = (self.x_proj, self.dt_proj) if self.share_dt_proj else (self.x_proj_b, self.dt_proj_b)
            yb = self._scan(x.flip(1), z.flip(1), self.conv1d_b, x_proj, dt_proj, self.A_b_log, self.D_b)
            y = (y + yb.flip(1)) / 2 if self.divide_out else y + yb.flip(1)
        return self.out_proj(y)


class RMSNormGated(nn.Module):
    """mamba_ssm's gated RMSNorm with ``norm_before_gate=False``: rmsnorm(x * silu(z)) * weight, the norm
    taken over groups of ``group_size`` channels."""

    def __init__(self, dim: int, eps: float = 1e-5, group_size: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps
        self.group_size = group_size or dim

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return ops.gated_rmsnorm(x, z, self.weight, self.eps, self.group_size)


class Mamba2(nn.Module):
    """Mamba-2 mixer (SSD); the module-level doc lists the layout."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        chunk_size: int = 256,
    ):
        super().__init__()
        self.d_inner = expand * d_model
        if self.d_inner % headdim:
            raise BadOption(f"d_inner {self.d_inner} is not divisible by headdim {headdim}")
        self.d_state, self.headdim, self.ngroups, self.chunk_size = d_state, headdim, ngroups, chunk_size
        self.nheads = self.d_inner // headdim
        conv_dim = self.d_inner + 2 * ngroups * d_state
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * ngroups * d_state + self.nheads, bias=bias)
        self.conv1d = nn.Conv1d(conv_dim, conv_dim, d_conv, groups=conv_dim, padding=d_conv - 1, bias=conv_bias)
        self.dt_bias = nn.Parameter(_inverse_softplus_dt(self.nheads, dt_min, dt_max, dt_init_floor))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.nheads).uniform_(*A_init_range)))
        self.D = nn.Parameter(torch.ones(self.nheads))
        self.norm = RMSNormGated(self.d_inner, eps=1e-5, group_size=self.d_inner // ngroups)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, u: Tensor) -> Tensor:
        return self.out_proj(self.mix(self.in_proj(u)))

    def mix(self, zxbcdt: Tensor, reverse: bool = False) -> Tensor:
        """Everything between in_proj and out_proj: (batch, L, in_proj width) -> (batch, L, d_inner): conv +
        SiLU, SSD scan, gated RMSNorm, as one op (``ops.conv_scan_norm``: fused on the CPU, mamba_ssm's
        ``mamba_split_conv1d_scan_combined`` layout).

        Split out so a bidirectional wrapper can project once for both scan directions; ``reverse`` scans
        the sequence from its end (= flip, mix, flip) without flipped copies."""
        return ops.conv_scan_norm(
            zxbcdt,
            self.conv1d.weight.squeeze(1),
            self.conv1d.bias,
            self.dt_bias,
            -torch.exp(self.A_log.float()),
            self.D,
            self.headdim,
            self.ngroups,
            self.norm.weight,
            self.norm.eps,
            self.norm.group_size,
            reverse,
            self.chunk_size,
        )

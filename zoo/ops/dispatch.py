"""One way to define an op here: a ``torch.library`` custom op whose implementation is picked, per call, from a
backend table keyed by device type.

``define_op(name, schema, backends, fake)`` registers ``torch.ops.zoo.<name>`` with

- a forward that runs the first backend of the table whose ``device`` is the inputs' device type and whose
  ``usable(*args)`` holds (a CUDA package that imports, a dtype a kernel takes), with autograd off, and
  records its name (``kernel_choice.last_used()``);
- a fake (meta) implementation, so shapes, FLOP counts (formulas in ``flops.py``, registered against the
  op) and ``torch.compile`` never run a kernel;
- a backward that asks the same backend: its own ``backward`` when it has one (our C++ kernels), else
  autograd of a recomputation through its ``differentiable`` function (default: its forward), which for a
  CUDA package's function is that package's own autograd.

An op defined with ``residual=True`` returns ``(output, residual)`` from the custom op: the residual is a
tensor a backend's forward keeps for its own backward (the Mamba-1 scan's states at block boundaries, which
spare the backward a recomputation pass), passed to that backward as ``residual=``, empty for backends that keep
none. The op's Python call returns the output alone.

A backend with ``native_autograd`` (mamba_ssm's fused Mamba-2 kernel) is called *outside* the custom op,
so its autograd function is used as it is, without the extra forward a recomputation costs; such a
backend never runs on the meta device, where counting happens. Tests select the CUDA rows on CPU tensors
with ``simulate_device("cuda")`` and the upstream-signature oracles in place of the CUDA packages, which
runs exactly the glue a GPU would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from . import kernel_choice
from ._recompute import grads_by_recompute


def _always(*args: object) -> bool:
    return True


@dataclass(frozen=True)
class Backend:
    """One implementation of an op. ``run`` and ``usable`` take the op's arguments in schema order."""

    name: str  # what ``kernel_choice.last_used()`` reports, e.g. "cpu-cpp", "mamba_ssm"
    device: str  # "cpu" or "cuda"
    run: Callable[..., Tensor]
    usable: Callable[..., bool] = _always
    # (grad, args, needs) -> one gradient per argument (None where not needed); None: by recomputation
    backward: Callable[[Tensor, Sequence[object], Sequence[bool]], Sequence[Tensor | None]] | None = None
    differentiable: Callable[..., Tensor] | None = None  # what the recomputation differentiates (default: run)
    native_autograd: bool = False  # called outside the custom op, differentiated by its own autograd
    keeps_residual: bool = False  # run returns (output, residual); backward takes residual= (ops with residual=True)


_SIMULATED: list[str | None] = [None]


@contextmanager
def simulate_device(device: str) -> Iterator[None]:
    """Inside, CPU tensors select the backends of ``device`` (tests run the CUDA glue through oracles)."""
    _SIMULATED.append(device)
    try:
        yield
    finally:
        _SIMULATED.pop()


def device_type(tensor: Tensor) -> str:
    """The device type whose backends run ``tensor`` ("cuda" for CPU tensors inside ``simulate_device``)."""
    device = tensor.device.type
    return _SIMULATED[-1] if device == "cpu" and _SIMULATED[-1] else device


def _device_of(args: Sequence[object]) -> str:
    return device_type(next(a for a in args if isinstance(a, Tensor)))


class Op:
    """A custom op with its backend table; call it with the schema's arguments."""

    def __init__(
        self,
        name: str,
        schema: str,
        table: Sequence[Backend],
        fake: Callable[..., Tensor | list[Tensor] | tuple[Tensor, Tensor]],
        residual: bool = False,
    ):
        self.name, self.table, self.residual = name, tuple(table), residual
        self.has_native = any(b.native_autograd for b in self.table)
        if residual and (self.has_native or not schema.endswith("-> (Tensor, Tensor)")):
            raise ValueError(f"zoo.ops.{name}: an op with a residual returns (Tensor, Tensor) and has no native rows")
        self.custom_op = torch.library.custom_op(f"zoo::{name}", self._forward, mutates_args=(), schema=schema)
        self.custom_op.register_fake(fake)
        self.custom_op.register_autograd(self._backward, setup_context=self._setup_context)

    def select(self, args: Sequence[object]) -> Backend:
        """The backend that runs ``args``: the first usable row for their device. Devices without rows (meta
        in a memory estimate's backward, mps, ...) take the last CPU row, the PyTorch code that runs anywhere."""
        device = _device_of(args)
        rows = [b for b in self.table if b.device == device] or [b for b in self.table if b.device == "cpu"][-1:]
        for backend in rows:
            if backend.usable(*args):
                return backend
        raise RuntimeError(f"zoo.ops.{self.name}: no usable backend for {device} tensors")

    def backends_for(self, device: str) -> list[str]:
        """Names of the rows for ``device``, in the order they are tried (for reports and docs)."""
        return [b.name for b in self.table if b.device == device]

    def __call__(self, *args: object) -> Tensor:
        if self.residual:
            return self.with_residual(*args)[0]
        if self.has_native and not any(isinstance(a, Tensor) and a.device.type == "meta" for a in args):
            backend = self.select(args)
            if backend.native_autograd:
                kernel_choice.record(self.name, backend.name)
                return backend.run(*args)
        return self.custom_op(*args)

    def with_residual(self, *args: object) -> tuple[Tensor, Tensor]:
        """(output, residual) of an op defined with ``residual=True`` (see module doc)."""
        return self.custom_op(*args)

    def _forward(self, *args: object) -> Tensor | list[Tensor] | tuple[Tensor, Tensor]:
        backend = self.select(args)
        kernel_choice.record(self.name, backend.name)
        with torch.no_grad():
            out = backend.run(*args)  # each backend returns its layout (a token-major view where it pays)
        if self.residual and not backend.keeps_residual:
            return out, no_residual(out)
        return out

    def _setup_context(self, ctx, inputs, output) -> None:
        ctx.backend = self.select(inputs)  # the backward belongs to the backend that ran the forward
        ctx.tensor_positions = [i for i, a in enumerate(inputs) if isinstance(a, Tensor)]
        kept = [inputs[i] for i in ctx.tensor_positions]
        if self.residual:
            ctx.mark_non_differentiable(output[1])
            kept.append(output[1])
        ctx.save_for_backward(*kept)
        ctx.others = [None if isinstance(a, Tensor) else a for a in inputs]

    def _backward(self, ctx, grad: Tensor, *residual_grad: Tensor) -> tuple[Tensor | None, ...]:
        args, saved = list(ctx.others), ctx.saved_tensors
        for i, tensor in zip(ctx.tensor_positions, saved[: len(ctx.tensor_positions)], strict=True):
            args[i] = tensor  # the inputs; a residual, when the op has one, is saved after them
        # arguments left at their schema default have no needs_input_grad flag (the dispatcher drops them)
        flags = [*ctx.needs_input_grad, *[False] * (len(args) - len(ctx.needs_input_grad))]
        needs = [isinstance(a, Tensor) and need for a, need in zip(args, flags, strict=True)]
        backend = ctx.backend
        if backend.keeps_residual:
            grads = backend.backward(grad, args, needs, residual=saved[-1])
        elif backend.backward is not None:
            grads = backend.backward(grad, args, needs)
        else:
            grads = grads_by_recompute(backend.differentiable or backend.run, args, needs, grad)
        return tuple(g if need else None for g, need in zip(grads, needs, strict=True))


def no_residual(like: Tensor) -> Tensor:
    """The residual of a backend that keeps none (what the fake kernels return for it too)."""
    return like.new_empty(0, dtype=torch.float32)


_OPS: dict[str, Op] = {}


def define_op(
    name: str,
    schema: str,
    table: Sequence[Backend],
    fake: Callable[..., Tensor | list[Tensor] | tuple[Tensor, Tensor]],
    residual: bool = False,
) -> Op:
    """Register ``torch.ops.zoo.<name>`` (see module doc); ``schema`` in torch's syntax without the name, e.g.
    ``"(Tensor x, Tensor? bias, bool silu) -> Tensor"``; ``residual``: it returns ``(output, residual)``."""
    op = Op(name, schema, table, fake, residual)
    _OPS[name] = op
    return op


def backend_table() -> dict[str, dict[str, list[str]]]:
    """Op -> device -> backend names in the order they are tried: what can run where."""
    return {name: {dev: op.backends_for(dev) for dev in ("cuda", "cpu")} for name, op in _OPS.items()}

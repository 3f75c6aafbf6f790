"""An independent cross-check of ``bench.flops``: fvcore's jit-trace counter, given handles for our custom
ops (without them fvcore skips the scans and attention with a warning, see the research notes).

fvcore counts one multiply-add as one "flop", so its totals are MACs. Its handles here call the same
formulas as ``zoo/ops/flops.py`` (halved); what the cross-check tests independently is everything else:
every linear, matmul and convolution, traced by another mechanism.

fvcore traces a real forward on the CPU: ``torch.jit.trace`` cannot run on the meta device (the meta kernels'
shape checks receive traced tensors and fail, torch 2.14), so sizes whose forward costs more than
``MAX_TMACS`` are refused with an error naming the meta counter, instead of running for minutes.
"""

from __future__ import annotations

import warnings

import torch

from bench.inputs import Resolution, example_inputs
from mambabench.errors import UserError
from zoo.ops.flops import attention_flops, causal_conv1d_flops, selective_scan_flops, ssd_scan_flops
from zoo.registry import get_entry


def _shape(value):
    from fvcore.nn.jit_handles import get_shape

    return get_shape(value)


def _handles() -> dict:
    def attention(inputs, outputs):
        return attention_flops(_shape(inputs[0]), _shape(inputs[1]), _shape(inputs[2])) // 2

    def selective_scan(inputs, outputs):
        return (
            selective_scan_flops(
                _shape(inputs[0]), _shape(inputs[2]), _shape(inputs[5]) is not None, _shape(inputs[6]) is not None
            )
            // 2
        )

    def ssd_scan(inputs, outputs):
        return (
            ssd_scan_flops(
                _shape(inputs[0]), _shape(inputs[3]), _shape(inputs[5]) is not None, _shape(inputs[6]) is not None
            )
            // 2
        )

    def causal_conv1d(inputs, outputs):
        return causal_conv1d_flops(_shape(inputs[0]), _shape(inputs[1])) // 2

    return {
        "zoo::attention": attention,
        "zoo::selective_scan": selective_scan,
        "zoo::ssd_scan": ssd_scan,
        "zoo::causal_conv1d": causal_conv1d,
    }


MAX_TMACS = 1.0  # about a minute of fp32 CPU forward on one core


def fvcore_macs(
    name: str, res: Resolution, batch: int = 1, counted_macs: float | None = None
) -> tuple[float, dict[str, int]]:
    """(total MACs, MACs by traced operator) of one forward pass, counted by fvcore on the CPU.
    ``counted_macs`` (ours, on meta) guards the size: over ``MAX_TMACS`` is a ValueError."""
    if counted_macs is not None and counted_macs > MAX_TMACS * 1e12:
        raise UserError(
            f"--counter fvcore traces a real CPU forward (it cannot trace on the meta device): {name} at {res} is "
            f"{counted_macs / 1e12:.1f} TMAC, over its {MAX_TMACS:g} TMAC limit; use the meta counter (the default) "
            "or a smaller --res"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore's import scripts a module with torch.jit.script
        try:
            from fvcore.nn import FlopCountAnalysis
        except ImportError as exc:
            raise UserError("--counter fvcore needs fvcore: pip install fvcore") from exc
    entry = get_entry(name)
    model = entry.build().eval()
    x, t, y = example_inputs(entry, res, model.patch_size, batch, device="cpu")
    x = torch.randn_like(x)
    if y is not None and y.is_floating_point():
        y = torch.randn_like(y)
    inputs = (x, t) if y is None else (x, t, y)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace is deprecated; fvcore uses it
        warnings.simplefilter("ignore", FutureWarning)
        analysis = FlopCountAnalysis(model, inputs).set_op_handle(**_handles())
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return float(analysis.total()), dict(analysis.by_operator())

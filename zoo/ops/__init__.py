"""Custom ops with one semantics on every device: selective scan (Mamba-1), SSD scan (Mamba-2), causal
depthwise conv1d, gated RMSNorm, the fused Mamba-2 core (conv + scan + norm), softmax attention, ReLU linear
attention (SANA's) and gated linear attention (DiG's).

Each is a ``torch.library`` custom op (``torch.ops.zoo.*``), defined in one way (``dispatch.define_op``):
one node in a trace, a fake implementation for the meta device, a FLOP formula for
``torch.utils.flop_counter.FlopCounterMode`` (``flops.py``), opaque to ``torch.compile``, and a backend
table per device type: the ``[cuda]`` extra's kernels on a GPU when they import, our C++ kernels on the CPU,
PyTorch code where neither applies. ``kernel_choice.last_used()`` says which ran, ``dispatch.backend_table()``
what can run where.
"""

from . import dispatch, flops  # noqa: F401  (flops registers the FLOP formulas)
from .conv import causal_conv1d
from .gated_linear_attention import gated_linear_attention
from .linear_attention import linear_attention
from .mamba1_scan import selective_scan
from .mamba2_fused import conv_scan_norm
from .norm import gated_rmsnorm
from .softmax_attention import attention
from .ssd import ssd_scan

__all__ = [
    "attention",
    "causal_conv1d",
    "conv_scan_norm",
    "gated_linear_attention",
    "gated_rmsnorm",
    "linear_attention",
    "selective_scan",
    "ssd_scan",
]

"""T2MD's distillation stages (Yao et al. 2025, Sec. 3.4) as functions of (teacher, student, batch).

Teacher and student are ``PixArtSkeleton`` models from the registry (``pixart-alpha-xl/2`` and ``t2md``, or
their tiny entries; the teacher may be built from PixArt-alpha's official checkpoint,
``zoo.create_model("pixart-alpha-xl/2", pretrained=PATH)``, as ``ablations train`` does for a teacher file); a
block's token mixer is ``block.token_mixer`` (self-attention or Mamba-2) and its input is the adaLN-modulated,
normalised hidden state.

- ``transfer_weights``: copy every parameter whose name and shape the teacher shares (all non-mixer
  weights and the self-attention mixers the student keeps); report what was and was not copied. With the
  Mamba mixers left at their init this is also Table 1's "non-Mamba weight initialisation" baseline.
- ``teacher_forcing_loss`` (Eq. 5-7): run the teacher once, take the input h_n of each teacher token
  mixer, and compare each student Mamba mixer on the same input with the teacher's self-attention output.
- ``distillation_losses`` (Eq. 8-11): L_mse (noise target) + lambda1 L_pseudo (teacher's noise prediction)
  + lambda2 L_mixer (every block's token-mixer output against the teacher's), lambda1 = 0.5, lambda2 = 0.2.
- ``set_trainable``: teacher forcing trains the Mamba mixers only; distillation trains every token mixer.

Our choices where the paper is silent: each squared norm is a mean over elements (so losses do not scale
with resolution or width) and Eq. 6 sums these over the Mamba layers; with learned sigma, only the noise
channels enter L_mse and L_pseudo (the paper's equations are on the noise).

- ``init_mamba_from_attention``: Table 1's "causal-to-causal" initialisation, in the manner of "The Mamba in
  the Llama" (Wang et al. 2024), who map attention's V, K, Q, O projections onto Mamba-2's x, B, C and
  output projections (attention read as a linear recurrence: C ~ query, B ~ key, x ~ value). T2MD's Mamba-2
  is wider than the attention it replaces (x: 2304 channels vs 1152; B, C: d_state 256 vs 1152), so our
  mapping is: x rows [0, d) <- W_V and the other d_inner - d rows <- 0; B <- the first d_state rows of
  W_K; C <- the first d_state rows of W_Q; out_proj columns [0, d) <- W_O and the rest <- 0; the causal
  conv starts as the identity (last tap 1) so x, B, C reach the scan unchanged; attention's biases are
  dropped (Mamba-2's projections have none); the gate z, dt and A keep their Mamba init; the fusion of
  the two scan directions starts as their mean (0.5 I).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambabench.errors import UserError


@dataclass
class TransferReport:
    copied: list[str]
    not_copied: list[str]  # student parameters left as initialised
    unused: list[str]  # teacher parameters with no counterpart in the student


def transfer_weights(teacher: nn.Module, student: nn.Module) -> TransferReport:
    """Copy, by name, every teacher parameter and buffer whose shape matches the student's."""
    source = teacher.state_dict()
    target = student.state_dict()
    copied = [k for k, v in target.items() if k in source and source[k].shape == v.shape]
    with torch.no_grad():
        for key in copied:
            target[key].copy_(source[key])
    return TransferReport(
        copied=copied,
        not_copied=[k for k in target if k not in copied],
        unused=[k for k in source if k not in target or source[k].shape != target[k].shape],
    )


def set_trainable(student: nn.Module, stage: str) -> list[nn.Parameter]:
    """Freeze everything but the stage's mixers: ``"teacher_forcing"`` (Mamba only) or ``"distill"`` (all
    token mixers). Returns the trainable parameters (for the optimiser)."""
    if stage not in ("teacher_forcing", "distill"):
        raise ValueError(f"stage must be 'teacher_forcing' or 'distill', got {stage!r}")
    student.requires_grad_(False)
    trainable = []
    for block in student.blocks:
        if stage == "distill" or block.mixer_kind != "SA":
            block.token_mixer.requires_grad_(True)
            trainable += list(block.token_mixer.parameters())
    return trainable


@contextmanager
def _record_mixers(model: nn.Module):
    """Collect (input, output) of every block's token mixer during a forward pass."""
    inputs: list[Tensor] = []
    outputs: list[Tensor] = []

    def hook(module: nn.Module, args: tuple, output: Tensor) -> None:  # must return None: keeps the output
        inputs.append(args[0])
        outputs.append(output)

    handles = [block.token_mixer.register_forward_hook(hook) for block in model.blocks]
    try:
        yield inputs, outputs
    finally:
        for handle in handles:
            handle.remove()


def teacher_mixer_io(teacher: nn.Module, x_t: Tensor, t: Tensor, y: Tensor, mask: Tensor | None = None):
    """One teacher pass: (mixer inputs, mixer outputs, prediction), no gradients."""
    with torch.no_grad(), _record_mixers(teacher) as (inputs, outputs):
        prediction = teacher(x_t, t, y, mask)
    return inputs, outputs, prediction


def teacher_forcing_loss(
    teacher: nn.Module, student: nn.Module, x_t: Tensor, t: Tensor, y: Tensor, mask: Tensor | None = None
) -> Tensor:
    """Eq. 6: sum over student Mamba blocks n of || MA_n(h_n) - SA_n(h_n) ||^2, h_n the teacher's input."""
    inputs, outputs, _ = teacher_mixer_io(teacher, x_t, t, y, mask)
    h, w = x_t.shape[-2] // student.patch_size, x_t.shape[-1] // student.patch_size
    losses = [
        F.mse_loss(block.mamba(inputs[n], h, w), outputs[n])
        for n, block in enumerate(student.blocks)
        if block.mixer_kind != "SA"
    ]
    if not losses:
        raise UserError("the student has no Mamba blocks to force")
    return torch.stack(losses).sum()


def distillation_losses(
    teacher: nn.Module,
    student: nn.Module,
    x_t: Tensor,
    t: Tensor,
    y: Tensor,
    noise: Tensor,
    mask: Tensor | None = None,
    lambda_pseudo: float = 0.5,
    lambda_mixer: float = 0.2,
) -> dict[str, Tensor]:
    """Eq. 8-11: {"mse", "pseudo", "mixer", "total"} for one batch of noised latents x_t."""
    _, teacher_outputs, teacher_prediction = teacher_mixer_io(teacher, x_t, t, y, mask)
    with _record_mixers(student) as (_, student_outputs):
        prediction = student(x_t, t, y, mask)
    channels = noise.shape[1]
    eps, teacher_eps = prediction[:, :channels], teacher_prediction[:, :channels]
    mse = F.mse_loss(eps, noise)
    pseudo = F.mse_loss(eps, teacher_eps)
    mixer = torch.stack([F.mse_loss(s, t_) for s, t_ in zip(student_outputs, teacher_outputs, strict=True)]).mean()
    return {"mse": mse, "pseudo": pseudo, "mixer": mixer, "total": mse + lambda_pseudo * pseudo + lambda_mixer * mixer}


def init_mamba_from_attention(teacher: nn.Module, student: nn.Module) -> list[int]:
    """Initialise every student Mamba mixer from the teacher's self-attention at the same depth (module
    doc); returns the block indices initialised."""
    done = []
    with torch.no_grad():
        for n, block in enumerate(student.blocks):
            if block.mixer_kind == "SA":
                continue
            attn, mixer = teacher.blocks[n].attn, block.mamba
            mamba = mixer.mamba
            d = attn.proj.out_features
            d_inner, gn = mamba.d_inner, mamba.ngroups * mamba.d_state
            q, k, v = attn.qkv.weight.split(d, dim=0)
            x_rows = mamba.in_proj.weight[d_inner : 2 * d_inner]
            x_rows.zero_()
            x_rows[:d].copy_(v)
            b_rows = mamba.in_proj.weight[2 * d_inner : 2 * d_inner + gn]
            c_rows = mamba.in_proj.weight[2 * d_inner + gn : 2 * d_inner + 2 * gn]
            for rows, source in ((b_rows, k), (c_rows, q)):
                rows.zero_()
                rows[: min(gn, d)].copy_(source[: min(gn, d)])
            mamba.out_proj.weight.zero_()
            mamba.out_proj.weight[:, :d].copy_(attn.proj.weight)
            mamba.conv1d.weight.zero_()
            mamba.conv1d.weight[:, 0, -1] = 1.0
            mamba.conv1d.bias.zero_()
            if mixer.fuse is not None:
                mixer.fuse.weight.copy_(0.5 * torch.eye(d))
                mixer.fuse.bias.zero_()
            done.append(n)
    return done

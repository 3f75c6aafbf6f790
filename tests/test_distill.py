"""T2MD's distillation stages on tiny teacher/student pairs."""

from __future__ import annotations

import torch

import zoo
from ablations.distill import (
    distillation_losses,
    init_mamba_from_attention,
    set_trainable,
    teacher_forcing_loss,
    teacher_mixer_io,
    transfer_weights,
)
from zoo.layers.embeddings import modulate


def _teacher() -> torch.nn.Module:
    teacher = zoo.create_model("pixart-tiny").eval()
    with torch.no_grad():  # a "trained" teacher: no zero-initialised layers
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return teacher


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([100, 700])
    y = torch.randn(2, 6, 32, generator=g)
    return x, t, y, torch.randn(2, 4, 8, 8, generator=g)


def _student(teacher):
    student = zoo.create_model("t2md-tiny", pos_embed="pixart").train()
    return student, transfer_weights(teacher, student)


def test_transfer_copies_everything_but_the_mamba_mixers():
    teacher = _teacher()
    student, report = _student(teacher)
    assert "blocks.0.attn.qkv.weight" in report.copied and "y_embedder.y_embedding" in report.copied
    assert "blocks.1.cross_attn.q_linear.weight" in report.copied
    assert all(".mamba." in k for k in report.not_copied) and report.not_copied
    assert set(report.unused) == {k for k in teacher.state_dict() if k.startswith(("blocks.1.attn", "blocks.2.attn"))}
    for key in report.copied:
        assert torch.equal(student.state_dict()[key], teacher.state_dict()[key])


def test_kd_losses_vanish_for_a_copy_of_the_teacher():
    teacher = _teacher()
    copy = zoo.create_model("pixart-tiny").eval()
    transfer_weights(teacher, copy)
    x, t, y, noise = _batch()
    losses = distillation_losses(teacher, copy, x, t, y, noise)
    assert losses["pseudo"].item() == 0.0 and losses["mixer"].item() == 0.0
    assert torch.allclose(losses["mse"], ((teacher(x, t, y)[:, :4] - noise) ** 2).mean())


def test_captured_mixer_inputs_equal_a_hand_run_of_the_teacher():
    teacher = _teacher()
    x, t, y, _ = _batch()
    inputs, outputs, prediction = teacher_mixer_io(teacher, x, t, y)
    h = teacher.x_embedder(x) + teacher.positions(4, 4)
    t_emb = teacher.t_embedder(t)
    t6 = teacher.t_block(t_emb)
    caption = teacher.y_embedder(y)
    with torch.no_grad():
        for n, block in enumerate(teacher.blocks):
            shift, scale = (block.scale_shift_table[None] + t6.view(2, 6, -1))[:, :2].unbind(1)
            assert torch.allclose(inputs[n], modulate(block.norm1(h), shift, scale), atol=1e-6)
            assert torch.allclose(outputs[n], block.attn(inputs[n]), atol=1e-6)
            h = block(h, t6, caption, None, 4, 4)
    assert len(inputs) == 3 and prediction.shape == (2, 8, 8, 8)


def _train(loss_fn, params, steps=6):
    optimiser = torch.optim.Adam(params, lr=3e-3)
    values = []
    for _ in range(steps):
        loss = loss_fn()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        values.append(loss.item())
    return values


def test_teacher_forcing_trains_only_mamba_and_decreases():
    teacher = _teacher()
    student, _ = _student(teacher)
    params = set_trainable(student, "teacher_forcing")
    assert all(p.requires_grad for p in params) and len(params) == len(list(student.blocks[1].mamba.parameters())) * 2
    frozen = {k: v.clone() for k, v in student.named_parameters() if not v.requires_grad}
    x, t, y, _ = _batch()
    values = _train(lambda: teacher_forcing_loss(teacher, student, x, t, y), params)
    assert values[-1] < values[0]
    for key, value in student.named_parameters():
        if key in frozen:
            assert torch.equal(value, frozen[key]), key


def test_distillation_trains_only_token_mixers_and_each_loss_decreases():
    teacher = _teacher()
    x, t, y, noise = _batch()
    for key in ("mse", "pseudo", "mixer", "total"):
        student, _ = _student(teacher)
        params = set_trainable(student, "distill")
        frozen = {k: v.clone() for k, v in student.named_parameters() if not v.requires_grad}
        assert "blocks.0.attn.qkv.weight" not in frozen and "blocks.0.mlp.fc1.weight" in frozen
        values = _train(
            lambda student=student, key=key: distillation_losses(teacher, student, x, t, y, noise)[key], params
        )
        assert values[-1] < values[0], (key, values)
        for name, value in student.named_parameters():
            if name in frozen:
                assert torch.equal(value, frozen[name]), name


def test_causal_to_causal_init_maps_attention_projections():
    teacher = _teacher()
    student, _ = _student(teacher)
    assert init_mamba_from_attention(teacher, student) == [1, 2]
    attn, mamba = teacher.blocks[1].attn, student.blocks[1].mamba.mamba
    d, d_inner, n = 64, mamba.d_inner, mamba.d_state
    q, k, v = attn.qkv.weight.split(d)
    w = mamba.in_proj.weight
    assert torch.equal(w[d_inner : d_inner + d], v) and w[d_inner + d : 2 * d_inner].abs().sum() == 0
    assert torch.equal(w[2 * d_inner : 2 * d_inner + n], k[:n]) and torch.equal(
        w[2 * d_inner + n : 2 * d_inner + 2 * n], q[:n]
    )
    assert torch.equal(mamba.out_proj.weight[:, :d], attn.proj.weight)
    seq = torch.randn(1, 5, mamba.conv1d.in_channels)
    conv = mamba.conv1d(seq.transpose(1, 2))[..., :5].transpose(1, 2)
    assert torch.equal(conv, seq)  # identity causal conv

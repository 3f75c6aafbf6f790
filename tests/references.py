"""Slow, obviously-correct references the fast ops are tested against: one time step at a time,
float64, written from the equations and nothing else."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """u, delta (b, d, L); A (d, n); B, C (b, G, n, L); per channel, per step, per state element."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    b, d, L = u.shape
    n = A.shape[1]
    per_group = d // B.shape[1]
    out = []
    for bi in range(b):
        rows = []
        for di in range(d):
            g = di // per_group
            h = torch.zeros(n, dtype=u.dtype)
            ys = []
            for t in range(L):
                h = torch.exp(delta[bi, di, t] * A[di]) * h + delta[bi, di, t] * B[bi, g, :, t] * u[bi, di, t]
                y = (h * C[bi, g, :, t]).sum()
                if D is not None:
                    y = y + D[di] * u[bi, di, t]
                if z is not None:
                    y = y * F.silu(z[bi, di, t])
                ys.append(y)
            rows.append(torch.stack(ys))
        out.append(torch.stack(rows))
    return torch.stack(out)


def ssd_reference(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """x (b, L, H, P); dt (b, L, H); A (H,); B, C (b, L, G, N); the Mamba-2 recurrence, one step at a time."""
    if dt_bias is not None:
        dt = dt + dt_bias
    if dt_softplus:
        dt = F.softplus(dt)
    b, L, H, P = x.shape
    per_group = H // B.shape[2]
    ys = []
    h = torch.zeros(b, H, P, B.shape[3], dtype=x.dtype)
    for t in range(L):
        step = []
        for head in range(H):
            g = head // per_group
            decay = torch.exp(dt[:, t, head] * A[head])[:, None, None]
            inp = (dt[:, t, head, None] * x[:, t, head])[:, :, None] * B[:, t, g, None, :]
            h_new = decay * h[:, head] + inp
            step.append(h_new)
        h = torch.stack(step, dim=1)
        y = torch.einsum("bhpn,bhn->bhp", h, C[:, t].repeat_interleave(per_group, dim=1))
        ys.append(y)
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + x * (D[:, None] if D.dim() == 1 else D)
    if z is not None:
        y = y * F.silu(z)
    return y


def causal_conv1d_reference(x, weight, bias=None, silu=False):
    """out[:, c, t] = sum_k weight[c, k] * x[:, c, t - (W-1) + k]."""
    b, d, L = x.shape
    W = weight.shape[1]
    out = torch.zeros_like(x)
    for t in range(L):
        for k in range(W):
            s = t - (W - 1) + k
            if s >= 0:
                out[:, :, t] += weight[:, k] * x[:, :, s]
    if bias is not None:
        out = out + bias[:, None]
    return F.silu(out) if silu else out


def attention_reference(q, k, v, key_mask=None):
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return scores.softmax(-1) @ v

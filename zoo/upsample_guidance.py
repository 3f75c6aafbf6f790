"""Upsample guidance (Hwang et al. 2024) for training-free higher-resolution sampling, DiM's Eq. 4:

    eps(x_t, t) + w_t * U[ eps(D[x_t] / sqrt(P_t), tau) / m - D[eps(x_t, t)] ]

with D average pooling by m, U nearest upsampling by m, tau the timestep whose SNR is closest to m^2 times
SNR(t) (and not after t), P_t = abar_t + (1 - abar_t) / m^2 the power of the pooled noisy input, and
w_t = theta while t >= (1 - eta) T, else 0: guidance only for the first ``eta`` of sampling (the DiM code:
theta 1, eta 0.3). ``model_fn`` is any noise predictor ``f(x, t, **kw)``, e.g. a CFG function, so the two
compose. It must return noise only (drop learned-sigma channels first).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def signal_to_noise(alphas_cumprod: Tensor) -> Tensor:
    return alphas_cumprod / (1 - alphas_cumprod)


def select_tau(alphas_cumprod: Tensor, t: Tensor, m: int) -> Tensor:
    """Per element of t: the timestep whose SNR is nearest (linearly) to m^2 SNR(t), clamped to <= t."""
    snr = signal_to_noise(alphas_cumprod.double())
    target = m**2 * snr[t.long()]
    tau = (snr[None, :] - target[:, None]).abs().argmin(dim=1)
    return torch.minimum(tau, t.long())


def power_calibration(alphas_cumprod: Tensor, t: Tensor, m: int) -> Tensor:
    """P_t = abar_t + (1 - abar_t) / m^2: the variance of an m x m average of x_t (unit-variance signal)."""
    abar = alphas_cumprod[t.long()]
    return abar + (1 - abar) / m**2


def guidance_weight(t: Tensor, num_timesteps: int, theta: float = 1.0, eta: float = 0.3) -> Tensor:
    """w_t = theta for t >= (1 - eta) * T (the early, noisy part of sampling), else 0."""
    return theta * (t.float() >= (1 - eta) * num_timesteps).float()


class UpsampleGuidance:
    """Wraps a noise predictor trained at low resolution for sampling at ``m`` times that resolution."""

    def __init__(
        self,
        model_fn: Callable[..., Tensor],
        alphas_cumprod: Tensor,
        m: int = 2,
        theta: float = 1.0,
        eta: float = 0.3,
    ):
        self.model_fn, self.alphas_cumprod, self.m, self.theta, self.eta = model_fn, alphas_cumprod, m, theta, eta

    def __call__(self, x: Tensor, t: Tensor, **kwargs) -> Tensor:
        eps = self.model_fn(x, t, **kwargs)
        weight = guidance_weight(t, len(self.alphas_cumprod), self.theta, self.eta).to(x.device)
        active = weight > 0
        if not active.any():
            return eps
        ac = self.alphas_cumprod.to(x.device)
        tau = select_tau(ac, t, self.m)
        power = power_calibration(ac, t, self.m).to(x.dtype)
        x_low = F.avg_pool2d(x, self.m) / power.sqrt().view(-1, 1, 1, 1)
        eps_low = self.model_fn(x_low, tau.to(t.dtype), **kwargs)
        correction = eps_low / self.m - F.avg_pool2d(eps, self.m)
        correction = F.interpolate(correction, scale_factor=self.m, mode="nearest")
        return eps + weight.to(x.dtype).view(-1, 1, 1, 1) * correction

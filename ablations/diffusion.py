"""Gaussian diffusion for training: noise schedules, forward noising, and the training losses.

Every model predicts the noise (eps-prediction, as all five papers do). A model whose output has twice the
input's channels also predicts its variance ("learned sigma", DiT/ADM's learned-range parameterisation) and
trains with the hybrid loss: the simple MSE on eps plus the variational bound term with the mean frozen
(eps detached), as Nichol & Dhariwal and DiT do. Schedules and coefficients are kept in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mambabench.errors import UserError

SCHEDULES = ("linear", "scaled_linear", "quadratic")


def make_betas(name: str, num_timesteps: int = 1000) -> Tensor:
    """Betas of a named schedule, float64.

    - ``linear``: DDPM's 1e-4 .. 0.02 (DiT, DiM of Mo & Tian, U-ViT, WD-Mamba).
    - ``scaled_linear``: Stable Diffusion's sqrt-spaced 0.00085 .. 0.012 (DiM of Teng et al., official code).
    - ``quadratic``: T2MD Sec. 4.1 names a "quadratic" schedule without endpoints; we take the DDPM/DDIM
      codebases' "quad" schedule, sqrt-spaced between DDPM's 1e-4 and 0.02 (our choice).
    """
    scale = 1000 / num_timesteps  # keeps the endpoints' meaning when T != 1000 (improved-DDPM convention)
    if name == "linear":
        return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)
    if name == "scaled_linear":
        return torch.linspace(0.00085**0.5, 0.012**0.5, num_timesteps, dtype=torch.float64) ** 2
    if name == "quadratic":
        return torch.linspace((scale * 1e-4) ** 0.5, (scale * 0.02) ** 0.5, num_timesteps, dtype=torch.float64) ** 2
    raise UserError(f"unknown noise schedule {name!r}; choose one of {', '.join(SCHEDULES)}")


def _gather(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
    """values[t] broadcast to ``like``'s shape, in ``like``'s dtype."""
    return values.to(like.device)[t.long()].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


class GaussianDiffusion:
    """The forward process q(x_t | x_0) of a beta schedule and the eps-prediction training loss."""

    def __init__(self, betas: Tensor):
        self.betas = betas.double()
        self.num_timesteps = len(betas)
        alphas = 1 - self.betas
        self.alphas_cumprod = torch.cumprod(alphas, 0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        ac, ac_prev = self.alphas_cumprod, self.alphas_cumprod_prev
        self.posterior_variance = self.betas * (1 - ac_prev) / (1 - ac)
        # log of the posterior variance, with the t=0 entry (0) replaced by the t=1 one, as ADM does
        self.posterior_log_variance = torch.log(torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]]))
        self.posterior_mean_coef_x0 = self.betas * ac_prev.sqrt() / (1 - ac)
        self.posterior_mean_coef_xt = (1 - ac_prev) * alphas.sqrt() / (1 - ac)

    @classmethod
    def from_name(cls, name: str, num_timesteps: int = 1000) -> GaussianDiffusion:
        return cls(make_betas(name, num_timesteps))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (the reparameterised forward process)."""
        ac = self.alphas_cumprod
        return _gather(ac.sqrt(), t, x0) * x0 + _gather((1 - ac).sqrt(), t, x0) * noise

    def predict_x0(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        ac = self.alphas_cumprod
        return _gather((1 / ac).sqrt(), t, x_t) * x_t - _gather((1 / ac - 1).sqrt(), t, x_t) * eps

    def posterior(self, x0: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = _gather(self.posterior_mean_coef_x0, t, x_t) * x0 + _gather(self.posterior_mean_coef_xt, t, x_t) * x_t
        return mean, _gather(self.posterior_log_variance, t, x_t)

    def learned_log_variance(self, v: Tensor, t: Tensor) -> Tensor:
        """ADM's learned range: v in [-1, 1] interpolates log beta_t and the log posterior variance."""
        frac = (v + 1) / 2
        return frac * _gather(torch.log(self.betas), t, v) + (1 - frac) * _gather(self.posterior_log_variance, t, v)

    def training_loss(self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor, noise: Tensor) -> dict[str, Tensor]:
        """Per-batch losses: {"mse", "vb" (learned sigma only), "loss"}.

        ``output`` has C channels (eps) or 2C (eps, v). The VB term uses the eps prediction detached, so it
        only trains the variance (Nichol & Dhariwal Sec. 3.1; DiT Sec. 3.1 "train with L_hybrid")."""
        channels = x0.shape[1]
        eps = output[:, :channels]
        mse = (eps.float() - noise.float()).square().mean()
        if output.shape[1] == channels:
            return {"mse": mse, "loss": mse}
        if output.shape[1] != 2 * channels:
            raise ValueError(f"model output has {output.shape[1]} channels; expected {channels} or {2 * channels}")
        v = output[:, channels:].float()
        x_t, x0, eps_frozen = x_t.float(), x0.float(), eps.detach().float()
        true_mean, true_logvar = self.posterior(x0, x_t, t)
        model_mean, _ = self.posterior(self.predict_x0(x_t, t, eps_frozen), x_t, t)
        model_logvar = self.learned_log_variance(v, t)
        kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar).flatten(1).mean(1) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar).flatten(1).mean(1)
        vb = torch.where(t == 0, nll / math.log(2.0), kl)
        vb = vb.mean() * self.num_timesteps / 1000  # ADM rescales the bound for respaced schedules
        return {"mse": mse, "vb": vb, "loss": mse + vb}


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _standard_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(x) of data in [-1, 1] quantised to 256 bins under N(mean, e^(2 log_scale)), elementwise (nats).
    The edge bins extend to +-infinity (the DDPM decoder)."""
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _standard_normal_cdf(inv_std * (centered + 1 / 255))
    cdf_minus = _standard_normal_cdf(inv_std * (centered - 1 / 255))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1 - cdf_minus).clamp(min=1e-12))
    log_probs = torch.where(
        x < -0.999,
        log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_minus, torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))),
    )
    return log_probs


def sample_timesteps(batch: int, num_timesteps: int, generator: torch.Generator) -> Tensor:
    """Uniform training timesteps (every paper samples t uniformly)."""
    return torch.randint(0, num_timesteps, (batch,), generator=generator)

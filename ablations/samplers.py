"""Samplers: DDPM ancestral, DDIM and DPM-Solver++(2M), plus classifier-free and upsample guidance.

A sampler drives a ``model_fn(x, t) -> output`` (t: the original training timesteps, long) whose first C
channels predict the noise; DDPM also uses C further variance channels when the model learned sigma.
All three visit K of the T training timesteps, evenly spaced and rounded (ADM's ``space_timesteps``), from
T-1 down to 0, and end on a clean sample. Hand-written (~80 lines) rather than diffusers' schedulers:
no import cost, float64 coefficients, and one timestep convention for the three; each is checked against
the closed-form optimal denoiser of Gaussian data in the tests.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ablations.diffusion import GaussianDiffusion
from mambabench.errors import UserError
from zoo.upsample_guidance import UpsampleGuidance

SAMPLERS = ("ddpm", "ddim", "dpm-solver")
ModelFn = Callable[[Tensor, Tensor], Tensor]


def spaced_timesteps(num_timesteps: int, steps: int) -> Tensor:
    """K timesteps evenly spaced over [0, T-1], rounded, descending."""
    if not 1 <= steps <= num_timesteps:
        raise UserError(f"--steps must be between 1 and {num_timesteps}, got {steps}")
    return torch.linspace(0, num_timesteps - 1, steps, dtype=torch.float64).round().long().flip(0)


def _as_batch(value: Tensor | float, x: Tensor) -> Tensor:
    value = torch.as_tensor(value, dtype=torch.float64)
    return value.to(x.dtype).to(x.device)


def _clip(x0: Tensor, clip: float | None) -> Tensor:
    return x0 if clip is None else x0.clamp(-clip, clip)


@torch.no_grad()
def sample(
    model_fn: ModelFn,
    noise: Tensor,
    diffusion: GaussianDiffusion,
    sampler: str = "ddim",
    steps: int = 50,
    generator: torch.Generator | None = None,
    clip: float | None = None,
    eta: float = 0.0,
) -> Tensor:
    """Run ``sampler`` for ``steps`` model evaluations from ``noise`` (x_T); returns x_0.

    ``clip`` clamps the predicted x_0 to [-clip, clip] (1.0 for pixel images; None for latents).
    ``eta`` is DDIM's stochasticity (0: deterministic). ``generator`` drives the fresh noise of DDPM/DDIM."""
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    ts = spaced_timesteps(diffusion.num_timesteps, steps)
    if sampler == "dpm-solver":  # K+1 points with t=0 dropped: the last step goes to sigma=0 (diffusers' linspace)
        ts = spaced_timesteps(diffusion.num_timesteps, steps + 1)[:-1]
    run = {"ddpm": _ddpm, "ddim": _ddim, "dpm-solver": _dpm_solver_2m}[sampler]
    kwargs = {"eta": eta} if sampler == "ddim" else {}
    return run(model_fn, noise, diffusion, ts, generator, clip, **kwargs)


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)


def _ddpm(model_fn, x, diffusion, ts, generator, clip):
    """Ancestral sampling on the respaced chain: betas recomputed from the abar ratios of the kept steps."""
    ac = diffusion.alphas_cumprod[ts.flip(0)]
    respaced = GaussianDiffusion(1 - ac / torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]]))
    channels = x.shape[1]
    for i, t in zip(range(len(ts) - 1, -1, -1), ts.tolist(), strict=True):
        index = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
        out = model_fn(x, torch.full_like(index, t))
        eps = out[:, :channels]
        x0 = _clip(respaced.predict_x0(x, index, eps), clip)
        mean, logvar = respaced.posterior(x0, x, index)
        if out.shape[1] == 2 * channels:
            logvar = respaced.learned_log_variance(out[:, channels:], index)
        x = mean + (torch.exp(0.5 * logvar) * _randn_like(x, generator) if i > 0 else 0)
    return x


def _ddim(model_fn, x, diffusion, ts, generator, clip, eta=0.0):
    ac = diffusion.alphas_cumprod
    channels = x.shape[1]
    for i, t in enumerate(ts.tolist()):
        a, a_prev = ac[t], (ac[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64))
        eps = model_fn(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))[:, :channels]
        x0 = _clip((x - _as_batch((1 - a).sqrt(), x) * eps) / _as_batch(a.sqrt(), x), clip)
        eps = (x - _as_batch(a.sqrt(), x) * x0) / _as_batch((1 - a).sqrt(), x)  # consistent with a clipped x0
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
        x = _as_batch(a_prev.sqrt(), x) * x0 + _as_batch((1 - a_prev - sigma**2).clamp(min=0).sqrt(), x) * eps
        if eta > 0 and i + 1 < len(ts):
            x = x + _as_batch(sigma, x) * _randn_like(x, generator)
    return x


def _dpm_solver_2m(model_fn, x, diffusion, ts, generator, clip):
    """DPM-Solver++(2M) in data prediction, multistep (Lu et al. 2022b, Alg. 2); first order on the first step
    and on the last, from the smallest kept t to sigma = 0 (a second-order step there extrapolates wildly:
    its h is ~10x the previous one's)."""
    ac = diffusion.alphas_cumprod
    alpha, sigma = ac.sqrt(), (1 - ac).sqrt()
    lam = torch.log(alpha) - torch.log(sigma)
    channels = x.shape[1]
    x0_prev, h_prev = None, None
    for i, s in enumerate(ts.tolist()):
        eps = model_fn(x, torch.full((x.shape[0],), s, dtype=torch.long, device=x.device))[:, :channels]
        x0 = _clip((x - _as_batch(sigma[s], x) * eps) / _as_batch(alpha[s], x), clip)
        if i + 1 == len(ts):
            return x0
        t = ts[i + 1].item()
        h = lam[t] - lam[s]
        d = x0
        if x0_prev is not None:
            r = h_prev / h
            d = _as_batch(1 + 1 / (2 * r), x) * x0 - _as_batch(1 / (2 * r), x) * x0_prev
        x = _as_batch(sigma[t] / sigma[s], x) * x - _as_batch(alpha[t] * torch.expm1(-h), x) * d
        x0_prev, h_prev = x0, h
    return x


def guided(model: Callable, y, null_y, cfg: float, channels: int, mask: Tensor | None = None) -> ModelFn:
    """``model(x, t, y)`` as a ``model_fn``, with classifier-free guidance when ``cfg != 1``.

    ``cfg`` is the standard w: eps_u + w (eps_c - eps_u) (U-ViT's and DiM-Teng's code call w - 1 "scale").
    The variance channels of a learned-sigma model are taken from the conditional half. ``mask``: a text
    model's caption mask, passed as ``model(..., mask=)``; the null-caption half gets the same mask, as
    PixArt-alpha's code repeats it over the CFG batch."""
    extra = {} if mask is None else {"mask": mask}
    if cfg == 1.0 or y is None:
        return lambda x, t: model(x, t, y, **extra)
    if mask is not None:
        extra = {"mask": torch.cat([mask, mask])}

    def fn(x: Tensor, t: Tensor) -> Tensor:
        out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null_y]), **extra)
        cond, uncond = out.chunk(2)
        eps = uncond[:, :channels] + cfg * (cond[:, :channels] - uncond[:, :channels])
        return torch.cat([eps, cond[:, channels:]], dim=1)

    return fn


def with_upsample_guidance(model_fn: ModelFn, diffusion: GaussianDiffusion, channels: int, m: int) -> ModelFn:
    """Upsample guidance (DiM-Teng Sec. 3.4, Eq. 4) around ``model_fn`` for sampling at m x the training size.
    Returns noise only, so a learned-sigma model samples with the fixed posterior variance."""
    return UpsampleGuidance(lambda x, t: model_fn(x, t)[:, :channels], diffusion.alphas_cumprod.float(), m=m)

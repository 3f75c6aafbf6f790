"""Upsample guidance (DiM Eq. 4): tau selection, power calibration, weight schedule, the formula itself."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.upsample_guidance import UpsampleGuidance, guidance_weight, power_calibration, select_tau, signal_to_noise

BETAS = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2  # SD "scaled linear"
ALPHAS_CUMPROD = torch.cumprod(1 - BETAS, dim=0)


def test_tau_has_the_closest_snr_to_m_squared_times_snr_t_and_is_not_later():
    snr = signal_to_noise(ALPHAS_CUMPROD)
    t = torch.tensor([999, 800, 500, 10])
    tau = select_tau(ALPHAS_CUMPROD, t, m=2)
    for ti, taui in zip(t.tolist(), tau.tolist(), strict=True):
        target = 4 * snr[ti]
        assert taui <= ti
        best = (snr - target).abs().argmin().item()
        assert taui == min(best, ti)
        assert snr[taui] > snr[ti]  # less noisy: a lower-resolution view carries more signal


def test_power_calibration_and_weight_schedule():
    t = torch.tensor([999, 100])
    p = power_calibration(ALPHAS_CUMPROD, t, 2)
    assert torch.allclose(p, ALPHAS_CUMPROD[t] + (1 - ALPHAS_CUMPROD[t]) / 4)
    w = guidance_weight(torch.tensor([999, 700, 699, 0]), 1000, theta=1.0, eta=0.3)
    assert w.tolist() == [1.0, 1.0, 0.0, 0.0]


def test_zero_weight_returns_the_plain_prediction():
    def model(x, t):
        return torch.tanh(x) * 2

    guided = UpsampleGuidance(model, ALPHAS_CUMPROD, m=2)
    x = torch.randn(2, 4, 16, 16)
    late = torch.tensor([100, 100])
    assert torch.equal(guided(x, late), model(x, late))
    assert torch.equal(UpsampleGuidance(model, ALPHAS_CUMPROD, theta=0.0)(x, torch.tensor([999, 999])), model(x, late))


def test_formula_with_an_identity_model_and_kwargs_pass_through():
    calls = []

    def model(x, t, scale=1.0):  # e.g. a CFG function with its own keyword
        calls.append(x.shape[-1])
        return x * scale

    m = 2
    guided = UpsampleGuidance(model, ALPHAS_CUMPROD, m=m)
    x = torch.randn(1, 4, 8, 12, dtype=torch.float64)
    t = torch.tensor([900])
    out = guided(x, t, scale=3.0)
    p = power_calibration(ALPHAS_CUMPROD, t, m)
    low = F.avg_pool2d(x, m) / p.sqrt()
    expected = 3 * x + F.interpolate(3 * low / m - F.avg_pool2d(3 * x, m), scale_factor=m, mode="nearest")
    assert out.shape == x.shape and torch.allclose(out, expected)
    assert calls == [12, 6]  # the high-resolution pass, then the low-resolution one

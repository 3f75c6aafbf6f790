"""Noise schedules, the training loss, and the samplers against the closed-form optimal denoiser of
Gaussian data (x0 ~ N(mu, s^2)): a correct sampler returns samples with mean mu and std s."""

from __future__ import annotations

import math

import pytest
import torch

from ablations.diffusion import GaussianDiffusion, discretized_gaussian_log_likelihood, make_betas, normal_kl
from ablations.samplers import guided, sample, spaced_timesteps, with_upsample_guidance
from mambabench.errors import UserError

MU, S = 0.3, 0.5


def _oracle(diffusion):
    ac = diffusion.alphas_cumprod

    def eps(x, t):
        a = ac[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * S * S + 1 - a)

    return eps


def test_schedules_endpoints_and_order():
    linear = make_betas("linear")
    assert linear[0].item() == pytest.approx(1e-4) and linear[-1].item() == pytest.approx(0.02)
    scaled = make_betas("scaled_linear")
    assert scaled[0].item() == pytest.approx(0.00085) and scaled[-1].item() == pytest.approx(0.012)
    quad = make_betas("quadratic")
    assert quad[0].item() == pytest.approx(1e-4) and quad[-1].item() == pytest.approx(0.02)
    assert quad[500] < linear[500]  # sqrt-spaced: slower start than linear
    for betas in (linear, scaled, quad):
        assert torch.all(betas[1:] > betas[:-1]) and betas.dtype == torch.float64
    with pytest.raises(UserError, match="linear, scaled_linear, quadratic"):
        make_betas("cosine-ish")


def test_q_sample_matches_forward_process_statistics():
    d = GaussianDiffusion.from_name("linear")
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1), 2.0)
    t = torch.full((20000,), 300)
    xt = d.q_sample(x0, t, torch.randn(x0.shape, generator=g))
    a = d.alphas_cumprod[300].item()
    assert xt.mean().item() == pytest.approx(2 * math.sqrt(a), abs=0.02)
    assert xt.std().item() == pytest.approx(math.sqrt(1 - a), abs=0.02)


def test_hybrid_loss_trains_variance_only_through_vb():
    d = GaussianDiffusion.from_name("linear")
    x0 = torch.rand(4, 3, 4, 4) * 2 - 1
    noise, t = torch.randn_like(x0), torch.tensor([0, 10, 500, 999])
    xt = d.q_sample(x0, t, noise)
    out = torch.cat([noise + 0.1 * torch.randn_like(noise), torch.zeros_like(noise)], 1).requires_grad_(True)
    terms = d.training_loss(out, x0, xt, t, noise)
    assert set(terms) == {"mse", "vb", "loss"} and terms["vb"].item() > 0
    terms["vb"].backward()
    assert out.grad[:, :3].abs().max() == 0 and out.grad[:, 3:].abs().max() > 0  # eps frozen in the VB term
    plain = d.training_loss(noise.clone(), x0, xt, t, noise)
    assert set(plain) == {"mse", "loss"} and plain["loss"].item() == 0


def test_kl_and_decoder_likelihood_basics():
    m, lv = torch.randn(10), torch.randn(10)
    assert torch.allclose(normal_kl(m, lv, m, lv), torch.zeros(10), atol=1e-7)
    assert (normal_kl(m, lv, m + 1, lv) > 0).all()
    # the 256 bins of the decoder partition the real line: their probabilities sum to 1
    values = torch.linspace(-1, 1, 256)
    logp = discretized_gaussian_log_likelihood(values, torch.full((256,), 0.1), torch.full((256,), math.log(0.3)))
    assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    "sampler, steps, std_tol",
    [
        ("ddpm", 1000, 0.02),
        ("ddpm", 100, 0.05),
        ("ddim", 250, 0.02),
        ("dpm-solver", 20, 0.03),
        ("dpm-solver", 50, 0.01),
    ],
)
def test_sampler_recovers_gaussian_data(sampler, steps, std_tol):
    d = GaussianDiffusion.from_name("linear")
    noise = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
    x = sample(_oracle(d), noise, d, sampler, steps, generator=torch.Generator().manual_seed(1))
    assert x.mean().item() == pytest.approx(MU, abs=0.02)
    assert x.std().item() == pytest.approx(S, abs=std_tol)


def test_more_ddim_steps_get_closer():
    d = GaussianDiffusion.from_name("linear")
    noise = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
    errors = [abs(sample(_oracle(d), noise, d, "ddim", k).std().item() - S) for k in (10, 50, 250)]
    assert errors[0] > errors[1] > errors[2]


def test_dpm_solver_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")  # a dev dependency: skipped only outside `.[dev]`
    d = GaussianDiffusion.from_name("linear")
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        algorithm_type="dpmsolver++",
        solver_order=2,
        final_sigmas_type="zero",
    )
    scheduler.set_timesteps(20)
    x = torch.randn(500, 1, generator=torch.Generator().manual_seed(0))
    ours = sample(_oracle(d), x.clone(), d, "dpm-solver", 20)
    oracle = _oracle(d)
    for t in scheduler.timesteps:
        x = scheduler.step(oracle(x, torch.full((len(x),), int(t))), t, x).prev_sample
    assert torch.allclose(ours, x, atol=1e-4)


def test_spaced_timesteps():
    assert spaced_timesteps(1000, 4).tolist() == [999, 666, 333, 0]
    with pytest.raises(UserError, match="between 1 and 1000"):
        spaced_timesteps(1000, 0)
    with pytest.raises(UserError, match="ddpm, ddim, dpm-solver"):
        sample(lambda x, t: x, torch.zeros(1, 1), GaussianDiffusion.from_name("linear"), "euler", 5)


def test_cfg_combination_and_null_batch():
    seen = {}

    def model(x, t, y):
        seen["y"] = y
        return torch.cat([y.float().view(-1, 1).expand(-1, 2), torch.full((len(x), 1), 7.0)], 1)

    fn = guided(model, torch.tensor([3, 3]), torch.tensor([10, 10]), cfg=1.5, channels=2)
    out = fn(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    assert seen["y"].tolist() == [3, 3, 10, 10]
    assert torch.allclose(out[:, :2], torch.full((2, 2), 10 + 1.5 * (3 - 10)))  # eps_u + w (eps_c - eps_u)
    assert torch.all(out[:, 2] == 7)  # variance channel from the conditional half
    unguided = guided(model, torch.tensor([3]), torch.tensor([10]), cfg=1.0, channels=2)
    assert unguided(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))[0, 0] == 3


@pytest.mark.parametrize("name", ["dit-tiny", "dim-mo-tiny", "dim-teng-tiny", "uvit-tiny", "pixart-tiny", "t2md-tiny"])
def test_cfg_on_every_family(name):
    """CFG lives in one place (the sampler): for every family's conditioning (class labels with a null class,
    captions with a null caption) it is eps_u + w (eps_c - eps_u) on the noise channels, the conditional
    variance channels, and the plain conditional prediction at w = 1. (WD-Mamba is unconditional.)"""
    from ablations.experiment import RunConfig, model_setup

    torch.manual_seed(0)
    setup = model_setup(RunConfig(model=name, space="pixel"))  # latent models on pixels: no VAE needed
    model = setup.build().eval()
    with torch.no_grad():  # zero-initialised output layers would make every prediction 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, setup.channels, setup.input_size, setup.input_size)
    t = torch.tensor([300, 700])
    y = setup.condition(model, torch.tensor([1, 2]))
    null = setup.null_condition(model, 2, torch.device("cpu"))
    with torch.no_grad():
        cond, uncond = model(x, t, y), model(x, t, null)
        out = guided(model, y, null, 3.0, setup.channels)(x, t)
        plain = guided(model, y, null, 1.0, setup.channels)(x, t)
    c = setup.channels
    assert torch.allclose(out[:, :c], uncond[:, :c] + 3.0 * (cond[:, :c] - uncond[:, :c]), atol=1e-4)
    assert torch.allclose(out[:, c:], cond[:, c:], atol=1e-5) and torch.allclose(plain, cond, atol=1e-6)
    assert not torch.allclose(cond[:, :c], uncond[:, :c], atol=1e-4)  # the condition reaches the output


def test_upsample_guidance_wrapper_is_identity_late_in_sampling():
    d = GaussianDiffusion.from_name("linear")
    fn = with_upsample_guidance(lambda x, t: torch.cat([x, x], 1), d, channels=1, m=2)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(fn(x, torch.tensor([10, 10])), x)  # w_t = 0 after the first 30% of sampling
    early = fn(x, torch.tensor([990, 990]))
    assert early.shape == x.shape and not torch.equal(early, x)

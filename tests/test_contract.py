"""Every registry model follows the one contract of zoo.models.base: constructor options, attributes,
``forward(x, t, cond=None, mask=None)`` and ``null_condition``."""

from __future__ import annotations

import inspect

import pytest
import torch

import zoo
from zoo.models.base import Backbone

TINY = [n for n in zoo.list_models() if "tiny" in zoo.get_entry(n).tags]
NOISE_ONLY = ("uvit", "dim-teng", "wd-mamba")


def _inputs(name: str, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    spec = zoo.get_entry(name).inputs
    size = spec.image_size // spec.spatial_factor
    frames = (spec.frames,) if spec.frames else ()
    x = torch.randn(batch, spec.in_channels, *frames, size, size, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([3, 700][:batch])
    if spec.conditioning == "class":
        return x, t, torch.tensor([1, 0][:batch])
    if spec.conditioning == "text":
        return x, t, torch.randn(batch, spec.caption_tokens, spec.caption_channels)
    return x, t, None


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_entry_has_the_contracts_attributes(name):
    entry = zoo.get_entry(name)
    with torch.device("meta"):
        model = zoo.create_model(name)
    assert isinstance(model, Backbone)
    spec = entry.inputs
    assert model.input_size * spec.spatial_factor == spec.image_size
    assert model.in_channels == spec.in_channels and model.patch_size >= 1
    assert model.out_channels in (model.in_channels, 2 * model.in_channels)
    if spec.conditioning == "class":
        assert model.conditioning == "class" and model.num_classes == spec.num_classes
    if spec.conditioning == "text":
        assert model.conditioning == "text" and model.num_classes == 0
    params = list(inspect.signature(model.forward).parameters)
    assert params[:4] == ["x", "t", "cond", "mask"], params
    joint = type(model).image_joint  # video-image joint training, as declared
    assert ("use_image_num" in params) == joint and ("image_cond" in params) == joint
    # the contract's options are accepted by every family, under the same names
    options = dict(
        input_size=model.input_size,
        in_channels=model.in_channels,
        num_classes=model.num_classes,
        learn_sigma=model.out_channels == 2 * model.in_channels,
    )
    with torch.device("meta"):
        again = zoo.create_model(name, **options)
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", TINY)
def test_tiny_models_run_the_contract(name):
    torch.manual_seed(0)
    model = zoo.create_model(name).eval()
    with torch.no_grad():
        for p in model.parameters():  # zero-initialised heads would hide what the condition does
            p.add_(0.05 * torch.randn_like(p))
    x, t, cond = _inputs(name)
    with torch.no_grad():
        out = model(x, t, cond)
        assert out.shape == (x.shape[0], model.out_channels, *x.shape[2:])
        null = model.null_condition(x.shape[0])
        if model.conditioning == "none":
            assert null is None
            return
        # no condition means the null one, and the null condition is a real, different input
        assert torch.equal(model(x, t), model(x, t, null))
        assert not torch.allclose(model(x, t, cond), model(x, t, null))


def test_uvit_counts_real_classes_and_takes_the_null_label():
    """Before the contract, uvit-tiny built with num_classes=10 crashed on the null label (IndexError)."""
    model = zoo.create_model("uvit-tiny", num_classes=10)
    assert model.label_emb.num_embeddings == 11 and model.null_condition(1).tolist() == [10]
    x = torch.randn(1, 3, 8, 8)
    assert model(x, torch.tensor([5]), torch.tensor([10])).shape == x.shape


@pytest.mark.parametrize("name", TINY)
def test_learn_sigma_doubles_the_output_or_is_refused(name):
    family = zoo.get_entry(name).family
    if family in NOISE_ONLY:
        with pytest.raises(ValueError, match="noise only"):
            zoo.create_model(name, learn_sigma=True)
        return
    model = zoo.create_model(name, learn_sigma=True)
    x, t, cond = _inputs(name, batch=1)
    assert model(x, t, cond).shape[1] == 2 * x.shape[1]


def test_text_models_take_no_class_table():
    with pytest.raises(ValueError, match="captions, not labels"):
        zoo.create_model("t2md-tiny", num_classes=10)

"""The registry: names, overrides, errors, and parameter parity with the papers (on the meta device)."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.summary import count_parameters


def test_every_entry_builds_on_meta_and_matches_reported_parameters():
    for name in zoo.list_models():
        entry = zoo.get_entry(name)
        count = count_parameters(name)
        assert count > 0
        if entry.paper and entry.paper.params_m:
            delta = abs(count / 1e6 - entry.paper.params_m) / entry.paper.params_m
            assert delta < entry.paper.params_tolerance, f"{name}: {count / 1e6:.2f}M vs paper {entry.paper.params_m}M"
            assert entry.paper.params_tolerance <= 0.05  # wider than 2% only with a documented reason


def test_paper_configurations_are_registered():
    names = set(zoo.list_models())
    assert {f"dit-{s}/{p}" for s in ("s", "b", "l", "xl") for p in (2, 4, 8)} <= names
    assert {"uvit-s/2-cifar10", "uvit-l/2", "uvit-h/2"} <= names
    for family in {zoo.get_entry(n).family for n in names}:
        assert f"{family}-tiny" in names, f"family {family} has no tiny entry"


def test_unknown_name_lists_close_names():
    with pytest.raises(KeyError, match="Did you mean: dit-xl/2"):
        zoo.create_model("dit_xl/2")


def test_overrides_are_applied_and_checked():
    with torch.device("meta"):
        model = zoo.create_model("dit-tiny", depth=3)
    assert len(model.blocks) == 3
    with pytest.raises(TypeError, match="unknown option"):
        zoo.create_model("dit-tiny", dept=3)


def test_user_mistakes_are_user_errors():
    """Each is one red line on the command line (``mambabench.errors``), and still the builtin error it refines."""
    from mambabench.errors import UserError
    from zoo.errors import BadOption, UnknownModel, UnknownOption, UnsupportedInput

    for mistake, error, builtin in (
        (lambda: zoo.get_entry("dit_xl/2"), UnknownModel, KeyError),
        (lambda: zoo.create_model("dit-tiny", dept=3), UnknownOption, TypeError),
        (lambda: zoo.create_model("dim-teng-tiny", depth=4), BadOption, ValueError),
        (lambda: zoo.create_model("dit-tiny")(torch.zeros(1, 4, 7, 8), torch.zeros(1)), UnsupportedInput, ValueError),
    ):
        with pytest.raises(error) as info:
            mistake()
        assert isinstance(info.value, UserError) and isinstance(info.value, builtin)


def test_zoo_cli_lists_and_shows(capsys):
    from typer.testing import CliRunner

    from zoo.cli import app

    result = CliRunner().invoke(app, ["list", "--family", "uvit", "--json"])
    assert result.exit_code == 0
    assert '"name": "uvit-h/2"' in result.output and '"params_reported_m": 501' in result.output
    result = CliRunner().invoke(app, ["show", "dit-xl/9"])
    assert result.exit_code == 2 and "Did you mean" in result.output

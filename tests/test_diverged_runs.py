"""A table run that diverges (issue 28): the (variant, seed) whose training loss turns NaN is recorded as a result
with its seed, its step and NaN scores, the report lists it and leaves it out of the mean, the other runs go on,
the command says so (one line per run, exit code 3), a rerun keeps it without training, ``--retry-diverged``
trains it again (once per command), and the FID baseline script leaves it out.

The divergence is real as far as the trainer goes: the loss of one run (variant "1", seed 1 of Teng's Table 6 at a
micro preset) is made NaN from step 3 on, and the trainer's own finiteness check raises ``NonFiniteLoss``."""

from __future__ import annotations

import csv
import json
import math
import runpy
import sys
import time
from pathlib import Path

import pytest
from test_tables import PixelFeatures, _micro
from typer.testing import CliRunner

from ablations.cli import app
from ablations.experiment import config_hash
from ablations.tables import TABLES
from ablations.tables.layout import index_file, variant_config
from ablations.tables.runner import DIVERGED
from ablations.train import Trainer
from results.store import ResultsStore

SCRIPT = Path(__file__).parents[1] / "scripts" / "make_fid_baseline.py"
NAN_FROM = 3  # the first step whose loss is NaN


@pytest.fixture
def diverging(monkeypatch):
    """Variant "1", seed 1 of teng-table6 at the micro preset: its loss is NaN from step 3 while ``on["nan"]``;
    every training session is counted by run (config hash)."""
    table = TABLES["teng-table6"]
    preset = _micro(monkeypatch, "teng-table6")
    target = config_hash(variant_config(table, table.variant("1"), table.presets[preset], seed=1))
    state = {"nan": True, "sessions": []}
    loss, run = Trainer._loss, Trainer.run

    def nan_loss(self, step, *args):
        terms = loss(self, step, *args)
        if state["nan"] and step >= NAN_FROM and config_hash(self.config) == target:
            terms = {**terms, "loss": terms["loss"] * math.nan}
        return terms

    def counted_run(self, *args, **kwargs):
        state["sessions"].append(config_hash(self.config))
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_loss", nan_loss)
    monkeypatch.setattr(Trainer, "run", counted_run)
    monkeypatch.setattr("ablations.evaluate.InceptionFeatures", PixelFeatures)
    return table, preset, target, state


def _index(runs: Path, table, preset: str) -> dict[tuple[str, int], dict]:
    results = json.loads(index_file(runs, table, table.presets[preset]).read_text())
    assert len(results) == len({(r["variant"], r["checkpoint"], r["seed"]) for r in results})  # no duplicates
    return {(r["variant"], r["seed"]): r for r in results}


def _fids(store: Path) -> list[dict]:
    return [m for m in ResultsStore(store).measurements() if m["metric"] == "fid"]


def test_a_diverged_run_is_a_result_reported_kept_and_retried(tmp_path, diverging, capsys):
    table, preset, target, state = diverging
    runs, store = tmp_path / "runs", tmp_path / "store.sqlite"
    args = ["run", "teng-table6", "--preset", preset, "--variant", "1234", "--variant", "1", "--seeds", "2"]
    args += ["--runs", str(runs), "--store", str(store), "--threads", "1"]
    runner = CliRunner()

    # 1. the run diverges; the three others are trained and scored; the command says which and exits 3
    first = runner.invoke(app, args)
    assert first.exit_code == 3, first.output
    assert "1 run(s) diverged" in first.output
    (line,) = [s for s in first.output.splitlines() if s.strip().startswith(f"{table.variant('1').label} (1) seed")]
    assert f"seed 1: step {NAN_FROM}, loss nan" in line
    found = _index(runs, table, preset)
    assert set(found) == {("1234", 0), ("1234", 1), ("1", 0), ("1", 1)}
    bad = found[("1", 1)]
    assert f"at step {NAN_FROM}" in bad["diverged"] and bad["diverged_step"] == NAN_FROM and bad["seed"] == 1
    assert math.isnan(bad["fid"]) and math.isnan(bad["kid"]) and bad["config_hash"] == target
    assert all(math.isfinite(r["fid"]) and "diverged" not in r for key, r in found.items() if key != ("1", 1))
    assert json.loads((Path(bad["run"]) / DIVERGED).read_text())["step"] == NAN_FROM
    assert not (Path(bad["run"]) / "scores").exists()  # nothing scored for it: no score file claims samples
    fids = _fids(store)
    assert len(fids) == 4 and sum(m["status"] == "diverged" for m in fids) == 1
    (lost,) = [m for m in fids if m["status"] == "diverged"]
    assert lost["value"] is None and "seed=1" in lost["variant"] and f"at step {NAN_FROM}" in lost["detail"]
    assert "verdict" in first.output and "pairs" in first.output  # the console table's new columns

    # 2. the report lists the seed and leaves it out of the mean and the pairs
    report = runner.invoke(app, ["report", "teng-table6", "--preset", preset, "--runs", str(runs), "--json"])
    rows = {r["variant"]: r for r in map(json.loads, report.output.strip().splitlines())}
    row = rows["1"]
    assert row["status"] == "diverged (seed 1)" and row["diverged_seeds"] == "1" and row["seeds"] == 2
    assert row["ours_fid"] == pytest.approx(found[("1", 0)]["fid"]) and row["ours_fid_seeds"].endswith(" nan")
    assert row["n_pairs"] == 1 and row["verdict"].startswith("one seed (no interval)")
    assert rows["1234"]["status"] == "ok" and rows["1234"]["seeds"] == 2

    # 3. the baseline script leaves it out, says so, and takes the tolerance from the finished seeds
    out = tmp_path / "baseline.csv"
    argv = ["make_fid_baseline.py", "--table", "teng-table6", "--preset", preset, "--runs", str(runs)]
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [*argv, "--out", str(out)])
        runpy.run_path(str(SCRIPT), run_name="__main__")
    err = capsys.readouterr().err
    assert "skipped teng-table6/1@final seed=1" in err and f"at step {NAN_FROM}" in err
    with open(out) as f:
        baseline = list(csv.DictReader(f))
    assert len(baseline) == 3 and all(math.isfinite(float(r["value"])) for r in baseline)
    assert not any("seed=1" in r["variant"] and r["variant"].startswith("teng-table6/1@") for r in baseline)
    assert all(math.isfinite(float(r["tolerance"])) and float(r["tolerance"]) >= 0.5 for r in baseline)

    # 4. a cluster run would submit nothing for it either (diverged counts as done), unless retried
    from ablations.tables.cluster_jobs import variant_jobs

    jobs, _ = variant_jobs(table, preset, ["1234", "1"], [0, 1], runs)
    assert all(scored for _, _, scored in jobs.values())
    jobs, _ = variant_jobs(table, preset, ["1234", "1"], [0, 1], runs, retry_before=time.time())
    assert [(v.key, s) for v, s, scored in jobs.values() if not scored] == [("1", 1)]

    # 5. a rerun trains nothing: the divergence is a result; nothing is recorded twice
    state["sessions"].clear()
    again = runner.invoke(app, args)
    assert again.exit_code == 3 and "1 run(s) diverged" in again.output, again.output
    assert state["sessions"] == [] and ": training " not in again.output
    assert "kept as its result" in again.output
    assert _index(runs, table, preset) == found and len(_fids(store)) == 4

    # 6. --retry-diverged trains it again, once per command: diverging again, it is recorded again (a new time)
    marker = Path(bad["run"]) / DIVERGED
    before = json.loads(marker.read_text())["recorded_at"]
    again = runner.invoke(app, [*args, "--retry-diverged"])
    assert again.exit_code == 3 and "1 run(s) diverged" in again.output, again.output
    assert state["sessions"] == [target]  # resumed from its last good checkpoint, once; the others untouched
    assert json.loads(marker.read_text())["recorded_at"] > before
    assert [m["status"] for m in _fids(store)].count("diverged") == 2  # a new attempt, a new row of it

    # 7. ... and when the cause is gone it finishes and replaces its diverged result
    state["nan"] = False
    state["sessions"].clear()
    retried = runner.invoke(app, [*args, "--retry-diverged"])
    assert retried.exit_code == 0, retried.output
    assert state["sessions"] == [target] and "run(s) diverged" not in retried.output
    now = _index(runs, table, preset)
    assert set(now) == set(found) and all(math.isfinite(r["fid"]) and "diverged" not in r for r in now.values())
    assert {k: r["fid"] for k, r in now.items() if k != ("1", 1)} == {
        k: r["fid"] for k, r in found.items() if k != ("1", 1)
    }  # nothing measured before is lost or changed
    assert not (Path(bad["run"]) / DIVERGED).exists()
    fids = _fids(store)
    assert len(fids) == 6 and sum(m["status"] == "ok" for m in fids) == 4  # one new row: the retried run's
    report = runner.invoke(app, ["report", "teng-table6", "--preset", preset, "--runs", str(runs), "--json"])
    rows = {r["variant"]: r for r in map(json.loads, report.output.strip().splitlines())}
    assert rows["1"]["status"] == "ok" and rows["1"]["n_pairs"] == 2 and rows["1"]["diverged_seeds"] == ""


def test_torchrun_training_records_a_real_divergence_instead_of_failing(tmp_path: Path):
    """The training a torchrun job runs (``ablations.tables.distributed.train``): a learning rate of 1e30 makes
    the loss inf/NaN for real; the divergence lands in RUN/diverged.json with its step and seed, no exception."""
    from ablations.experiment import RunConfig
    from ablations.tables.distributed import train
    from ablations.tables.runner import divergence

    config = RunConfig(
        model="dit-tiny", data="builtin", res=16, batch=4, steps=6, ckpt_every=1, log_every=1, space="pixel",
        lr=1e30, seed=2,
    )  # fmt: skip
    train(config, tmp_path / "run", (6,))
    found = divergence(tmp_path / "run")
    assert found is not None and found["seed"] == 2 and 1 <= found["step"] <= 6, found
    assert not math.isfinite(float(found["loss"])) and not (tmp_path / "run" / "done.json").is_file()

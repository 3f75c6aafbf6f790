"""The papers' tables as data: every variant builds at every preset; `ablations run` end to end in the smoke
preset for Teng's Table 6 and T2MD's Table 1 (CI's two tables), reuse of finished runs, and the report."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import zoo
from ablations.cli import app
from ablations.experiment import model_setup
from ablations.tables import TABLES, get_table
from ablations.tables.layout import index_file, variant_config
from ablations.tables.report import build_rows
from ablations.tables.runner import run_table

FID_BASELINE = Path(__file__).parents[1] / "results" / "baselines" / "teng-table6-smoke-fid.csv"
EXPECTED = {
    "t2md-table1",
    "teng-table4",
    "teng-table6",
    "mo-table2",
    "mo-table3",
    "mo-table5",
    "mo-table6",
    "mo-table7",
    "wd-table1",
    "wd-ablation",
}


def test_every_table_of_the_issue_is_registered_with_three_presets():
    assert set(TABLES) == EXPECTED and get_table("table1").id == "t2md-table1"
    for table in TABLES.values():
        assert set(table.presets) >= {"smoke", "cpu", "paper"}, table.id
        assert all(spec.name == name for name, spec in table.presets.items()), table.id  # names its index folder
        assert sum(v.reference for v in table.variants) == 1, table.id
        for variant in table.variants:
            zoo.get_entry(variant.model)
            for checkpoint, numbers in variant.paper.items():
                assert checkpoint in table.presets["paper"].checkpoints, (table.id, variant.key)
                assert set(numbers) <= set(table.paper_metrics), (table.id, variant.key)
    with pytest.raises(KeyError, match="teng-table6"):
        get_table("teng-tabel6")


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_every_variant_builds_at_every_preset(preset):
    """Overrides are valid constructor options and the smaller presets really are smaller; at smoke scale
    every variant also runs one forward pass (so every table can run in the smoke preset)."""
    for table in TABLES.values():
        spec = table.presets[preset]
        teacher = "teacher-run" if table.teacher else None
        for variant in table.variants:
            config = variant_config(table, variant, spec, vae="vae-dir" if spec.needs_vae else None, teacher=teacher)
            setup = model_setup(config)
            with torch.device("meta"):
                model = setup.build()
            params = sum(p.numel() for p in model.parameters())
            if preset == "paper":
                paper = zoo.get_entry(variant.model).paper
                if paper is not None and paper.params_m and not variant.overrides and not spec.model_overrides:
                    assert params / 1e6 == pytest.approx(paper.params_m, rel=0.1), (table.id, variant.key)
            if preset == "smoke":
                assert params < 2e6, (table.id, variant.key, params)
                model = setup.build()
                x = torch.randn(2, *setup.sample_shape())  # (C, h, w), or (C, T, h, w) for the video table
                labels = torch.tensor([0, 1])
                out = model(x, torch.tensor([10, 500]), setup.condition(model, labels))
                assert out.shape[0] == 2 and out.shape[-1] == setup.input_size


class PixelFeatures:
    """A stand-in for the Inception network with its interface: 2x2-pooled pixels as "features", so FID, KID and
    precision/recall run their real code on 12 dimensions in milliseconds."""

    weights = Path("pixel-features-2x2")

    def __init__(self, *args, **kwargs):
        self.last_spatial = None

    def __call__(self, batches):
        features = torch.cat([torch.nn.functional.adaptive_avg_pool2d(b.float() / 255, 2).flatten(1) for b in batches])
        self.last_spatial = features[:, :6].double()
        return features.double(), None


def _run(runner, args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _micro(monkeypatch, table_id: str, base: str = "smoke") -> str:
    """A "micro" preset of a table for the mechanics: its smoke preset (or ``base``) cut to 6 training steps of
    batch 4 (a teacher 8) and 8 samples of 2 sampler steps, so a table of nine runs trains in seconds."""
    table = TABLES[table_id]
    smoke = table.presets[base]
    micro = replace(
        smoke,
        name="micro",
        steps=6,
        batch=4,
        n_samples=8,
        ref_n=8,
        sample_steps=2,
        teacher_steps=8 if smoke.teacher_steps else None,
    )
    monkeypatch.setitem(table.presets, "micro", micro)
    for variant in table.variants:  # a variant's values for the smoke model (T2MD's layouts) hold at micro
        if base in variant.preset_overrides:
            monkeypatch.setitem(variant.preset_overrides, "micro", variant.preset_overrides[base])
    return "micro"


def test_tables_run_end_to_end_resume_and_report(tmp_path, monkeypatch):
    """`ablations run` and `ablations report` for Teng's Table 6 and T2MD's Table 1 (a teacher and eight students)
    at the micro preset, scored through the real FID, KID and precision/recall code on cheap pixel features
    (real Inception: the smoke FID gate below and tests/test_fid.py); a rerun trains and scores nothing."""
    monkeypatch.setattr("ablations.evaluate.InceptionFeatures", PixelFeatures)
    runner, runs = CliRunner(), tmp_path / "runs"
    store = ["--store", str(tmp_path / "store.sqlite")]
    teng = [
        "run",
        "teng-table6",
        "--preset",
        _micro(monkeypatch, "teng-table6"),
        "--runs",
        str(runs),
        "--threads",
        "1",
        *store,
    ]
    out = _run(runner, teng)
    assert "8 generated vs 8 reference" in out and "17.6" in out  # ours beside the paper's
    table = TABLES["teng-table6"]
    rows = json.loads(index_file(runs, table, table.presets["micro"]).read_text())
    assert {r["variant"] for r in rows} == {"1234", "12", "1"} and all(r["fid"] > 0 for r in rows)
    assert len({r["fid"] for r in rows}) == 3  # three models, three scores

    again = _run(runner, teng)
    assert again.count("scored already") == 3 and ": training " not in again  # nothing is retrained

    # Teng's Table 4 full model is Table 6's 1234 row: the same configuration, the same run
    t4, t6 = TABLES["teng-table4"], TABLES["teng-table6"]
    same = [variant_config(t, t.reference, t.presets["smoke"]) for t in (t4, t6)]
    assert same[0] == same[1]

    out = _run(
        runner,
        [
            "run",
            "table1",
            "--preset",
            _micro(monkeypatch, "t2md-table1"),
            "--runs",
            str(runs),
            "--threads",
            "1",
            *store,
        ],
    )
    assert "GenEval" in out and "0.485" in out
    table = TABLES["t2md-table1"]
    report = _run(runner, ["report", "table1", "--preset", "micro", "--runs", str(runs), "--json"])
    rows = [json.loads(line) for line in report.strip().splitlines()]
    assert [r["variant"] for r in rows] == [v.key for v in table.variants]
    assert all(r["status"] == "ok" and r["ours_fid"] > 0 for r in rows)
    folder = index_file(runs, table, table.presets["micro"]).parent
    assert {p.name for p in folder.iterdir()} >= {"report.csv", "report.md", "report.png", "results.json"}
    students = [json.loads(p.read_text()) for p in (runs / "runs").glob("t2md-*/config.json")]
    assert len(students) == 8 and all(s["distill"] is None or s["distill"]["teacher"] for s in students)
    teacher = next(
        json.loads(p.read_text())
        for p in (runs / "runs").glob("*/config.json")
        if json.loads(p.read_text())["model"] == "pixart-alpha-xl/2"
    )
    assert teacher["steps"] == 8  # the teacher's own step count

    from results.store import ResultsStore

    fids = [m for m in ResultsStore(tmp_path / "store.sqlite").measurements() if m["metric"] == "fid"]
    assert len(fids) == 3 + 9 and all(m["source"] == "ablations" for m in fids)


def test_smoke_fid_of_every_teng_table6_variant_equals_the_committed_baseline(tmp_path, monkeypatch):
    """The CI gate on FID, like the GMAC one, and the table run with the real Inception network: every variant's
    smoke FID equals the committed baseline within its measured tolerance (scripts/make_fid_baseline.py), so a
    change to what a variant computes fails here."""
    from results.compare import PASSING, compare, load
    from results.store import ResultsStore

    monkeypatch.setenv("MAMBABENCH_CACHE", str(tmp_path / "cache"))  # reference features computed afresh
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # the Inception of fid-helper, converted here
    store = ResultsStore(tmp_path / "store.sqlite")
    run_table(TABLES["teng-table6"], "smoke", root=tmp_path / "runs", store=store, log=lambda line: None)
    gate = compare(load(str(FID_BASELINE)), store.measurements())
    fid_rows = [c for c in gate if c.key[3] == "fid"]
    assert len(fid_rows) == 3 and all(c.verdict in PASSING for c in gate), [vars(c) for c in fid_rows]
    table = TABLES["teng-table6"]
    rows = json.loads(index_file(tmp_path / "runs", table, table.presets["smoke"]).read_text())
    assert {r["inception"].split("/")[-1] for r in rows} == {"fid-helper-0.1.3-fidelity.pth"}  # the real network


def test_report_directions(tmp_path):
    table = TABLES["teng-table4"]
    preset = table.presets["smoke"]
    path = index_file(tmp_path, table, preset)
    path.parent.mkdir(parents=True)
    results = [
        {"variant": k, "checkpoint": "final", "fid": f, "n_generated": 16, "n_reference": 16, "params_m": 1.0}
        for k, f in {"full": 50.0, "no-lfe": 60.0, "no-ms": 40.0}.items()
    ]
    path.write_text(json.dumps(results))
    rows = {r["variant"]: r for r in build_rows(table, "smoke", tmp_path)}
    assert rows["full"]["agrees"] == "reference"
    assert rows["no-lfe"]["ours_effect"] == "worse" and rows["no-lfe"]["paper_effect"] == "worse"
    assert rows["no-lfe"]["agrees"] == "yes" and rows["no-lfe"]["verdict"] == "one seed (no interval): worse"
    assert rows["no-ms"]["ours_effect"] == "better" and rows["no-ms"]["agrees"] == "no"
    assert rows["no-pt"]["status"] == "not run" and rows["no-pt"]["agrees"] == "-"
    assert rows["no-pt"]["paper_effect"] == "same"  # 2.94 vs 2.92: within 1%, the paper claims nothing
    wd = TABLES["wd-ablation"]
    assert build_rows(wd, "smoke", tmp_path)[0]["paper_effect"] == "worse"  # "did not converge"


def test_report_over_seeds(tmp_path):
    """Mean and spread over seeds; an effect counts only when the 95% interval of the paired (same-seed)
    differences excludes 0 (tests/test_paired_report.py: the statistics themselves)."""
    table = TABLES["teng-table6"]
    path = index_file(tmp_path, table, table.presets["smoke"])
    path.parent.mkdir(parents=True)
    fids = {"1234": [50.0, 52.0, 51.0], "12": [51.5, 49.0, 53.0], "1": [60.0, 61.0, 59.5]}
    path.write_text(
        json.dumps(
            [
                {"variant": k, "checkpoint": "final", "seed": seed, "fid": f, "n_generated": 16, "n_reference": 16}
                for k, values in fids.items()
                for seed, f in enumerate(values)
            ]
        )
    )
    rows = {r["variant"]: r for r in build_rows(table, "smoke", tmp_path)}
    assert rows["1234"]["seeds"] == 3 and rows["1234"]["ours_fid"] == pytest.approx(51.0)
    assert rows["1234"]["ours_fid_std"] == pytest.approx(1.0) and rows["1234"]["ours_fid_seeds"] == "50 52 51"
    assert rows["12"]["ours_effect"] == "within spread" and rows["12"]["paper_effect"] == "same"
    assert rows["12"]["agrees"] == "yes" and rows["12"]["verdict"] == "reproduced (no effect)"
    assert rows["1"]["ours_effect"] == "worse" and rows["1"]["agrees"] == "yes"
    assert rows["1"]["verdict"] == "reproduced" and rows["1"]["n_pairs"] == 3  # differences 10, 9, 8.5
    assert rows["1234"]["verdict"] == "reference" and rows["1"]["diff_seeds"] == "0:+10 1:+9 2:+8.5"
    fids["1"] = [60.0, 45.0, 48.0]  # mean 51: no longer beyond the spread
    path.write_text(
        json.dumps(
            [
                {"variant": k, "checkpoint": "final", "seed": seed, "fid": f}
                for k, values in fids.items()
                for seed, f in enumerate(values)
            ]
        )
    )
    row = {r["variant"]: r for r in build_rows(table, "smoke", tmp_path)}["1"]
    assert row["agrees"] == "no" and row["verdict"] == "within spread"  # differences 10, -7, -3


def test_claim_excludes_a_second_holder(tmp_path):
    """The run-folder lock that keeps two `ablations run` processes off one run (flock is per open file)."""
    from mambabench.files import claim

    with claim(tmp_path / ".claim") as first:
        with claim(tmp_path / ".claim", wait=False) as second:
            assert first and not second
    with claim(tmp_path / ".claim", wait=False) as again:
        assert again


def test_run_names_missing_data_and_vae(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["run", "teng-table6", "--preset", "cpu", "--data-root", str(tmp_path), "--runs", str(tmp_path / "runs")]
    )
    assert result.exit_code == 2 and "ablations data download cifar10" in result.output
    result = runner.invoke(app, ["run", "mo-table5", "--preset", "paper", "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "--vae DIR" in result.output
    listing = runner.invoke(app, ["list", "--json", "--data-root", str(tmp_path)])
    rows = [json.loads(line) for line in listing.output.strip().splitlines()]
    assert len(rows) == sum(len(t.presets) for t in TABLES.values())  # one row per (table, preset)
    assert all(r["data_present"] == (r["data"] in ("builtin", "videoshapes", "captioned-shapes")) for r in rows)


def test_killed_table_run_resumes_and_records_each_score_once(tmp_path, monkeypatch):
    """kill -9 of `ablations run` mid-training, then the same command: it resumes from the last checkpoint and
    the store and the table's index hold each score exactly once (the rerun here in process, scored on pixel
    features)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from ablations.run_folder import checkpoint_step
    from results.store import ResultsStore

    runs, store = tmp_path / "runs", tmp_path / "store.sqlite"
    args = ["run", "teng-table6", "--preset", "smoke", "--variant", "1", "--runs", str(runs), "--store", str(store)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    first = subprocess.Popen(
        [sys.executable, "-m", "ablations.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.time() + 120
    while time.time() < deadline and not any(checkpoint_step(f) for f in (runs / "runs").glob("*")):
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    (folder,) = (runs / "runs").glob("*")
    resumed_from = checkpoint_step(folder)
    assert 0 < resumed_from < 30 and not (folder / "scores").exists()
    monkeypatch.setattr("ablations.evaluate.InceptionFeatures", PixelFeatures)
    second = _run(CliRunner(), [*args, "--threads", "1"])
    assert "training dim-teng-s/2-cifar10 to step 30" in second and checkpoint_step(folder) == 30
    table = TABLES["teng-table6"]
    assert len(json.loads(index_file(runs, table, table.presets["smoke"]).read_text())) == 1
    fids = [m for m in ResultsStore(store).measurements() if m["metric"] == "fid"]
    assert len(fids) == 1 and len(ResultsStore(store).runs()) == 1  # the killed command left no empty run

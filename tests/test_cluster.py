"""Sweeps and tables as submitit jobs (the local executor stands in for Slurm here): the rows equal those of
the in-process run, students wait for their teacher, a rerun submits nothing, results merge idempotently,
and a multi-process training job runs under torchrun with gloo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.sweep import SweepSettings, run_sweep, run_sweep_on_cluster
from mambabench.cluster import ClusterOptions, JobBook, cluster_options, run_jobs
from results.compare import compare, load
from results.store import Measurement, ResultsStore
from results.sweep_csv import read_rows

LOCAL = ClusterOptions(executor="local", parallel=2)


def test_options_from_toml_and_command_line(tmp_path: Path):
    config = tmp_path / "cluster.toml"
    config.write_text('executor = "slurm"\npartition = "gpu"\ngpus_per_node = 8\ntime = 600\n')
    options = cluster_options(config, time=60, account="lab")
    assert (options.executor, options.partition, options.gpus_per_node, options.time, options.account) == (
        "slurm",
        "gpu",
        8,
        60,
        "lab",
    )
    assert options.processes == 8
    config.write_text('executor = "slurm"\nqueue = "x"\n')
    with pytest.raises(ValueError, match="unknown keys"):
        cluster_options(config)
    with pytest.raises(ValueError, match="--executor"):
        cluster_options(None, executor="kubernetes")


def _write_marker(name: str, folder: Path) -> None:
    (folder / "ran.txt").write_text(name)


def _fail(folder: Path) -> None:
    raise RuntimeError("boom")


def test_dependencies_failures_and_reruns(tmp_path: Path, monkeypatch):
    tests = str(Path(__file__).parent)  # the jobs unpickle this module's functions
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    cases = {"teacher": (_write_marker, ("t",)), "student": (_write_marker, ("s",)), "broken": (_fail, ())}
    states = run_jobs(cases, tmp_path, LOCAL, "test", after={"student": "teacher"}, log=lambda line: None)
    assert states == {"teacher": "done", "student": "done", "broken": "failed"}
    teacher_done = (tmp_path / "teacher" / "done.json").stat().st_mtime
    assert (tmp_path / "student" / "done.json").stat().st_mtime >= teacher_done
    assert "RuntimeError: boom" in (tmp_path / "broken" / "error.txt").read_text()
    logged = []
    again = run_jobs(cases, tmp_path, LOCAL, "test", after={"student": "teacher"}, log=logged.append)
    assert again["teacher"] == "done" and [line.split(":")[0] for line in logged] == ["submitted broken"]
    assert JobBook(tmp_path).state("missing") == "not submitted"


def test_sweep_rows_through_the_executor_equal_the_in_process_ones(tmp_path: Path):
    settings = SweepSettings()
    local = run_sweep(["dit-tiny"], ["32", "64"], ["flops"], tmp_path / "here.csv", settings)
    jobs = tmp_path / "jobs"
    new, states = run_sweep_on_cluster(
        ["dit-tiny"], ["32", "64"], ["flops"], tmp_path / "there.csv", settings, LOCAL, jobs, log=lambda line: None
    )
    assert set(states.values()) == {"done"} and len(new) == 2
    strip = lambda rows: sorted((r["resolution"], r["gmacs"], r["params_m"], r["status"]) for r in rows)  # noqa: E731
    assert strip(read_rows(tmp_path / "there.csv")) == strip([{k: str(v) for k, v in r.items()} for r in local])
    again, _ = run_sweep_on_cluster(
        ["dit-tiny"], ["32", "64"], ["flops"], tmp_path / "there.csv", settings, LOCAL, jobs, log=lambda line: None
    )
    assert again == [] and len(read_rows(tmp_path / "there.csv")) == 2  # nothing twice
    from mambabench.cluster import merge_stores

    store = ResultsStore(tmp_path / "s.sqlite")
    assert merge_stores(jobs, store) == (2, 6) and merge_stores(jobs, store) == (0, 0)  # idempotent


def test_import_is_idempotent(tmp_path: Path):
    job = ResultsStore(tmp_path / "job.sqlite")
    job.recorder().add([Measurement("m", "gmacs", 1.0, "GMAC", variant="v")])
    home = ResultsStore(tmp_path / "home.sqlite")
    assert home.import_from(tmp_path / "job.sqlite") == (1, 1)
    assert home.import_from(tmp_path / "job.sqlite") == (0, 0)
    (row,) = home.measurements()
    assert row["variant"] == "v" and row["value"] == 1.0


def test_table_variant_through_the_executor_equals_the_committed_smoke_fid(tmp_path: Path):
    """A smoke variant trained and scored as a job gives the FID of the in-process run (the committed
    baseline, made in process at one thread), and its rows reach the user's store."""
    from ablations.tables import get_table
    from ablations.tables.cluster_jobs import run_table_on_cluster

    store = ResultsStore(tmp_path / "s.sqlite")
    states = run_table_on_cluster(
        get_table("teng-table6"),
        "smoke",
        ["1"],
        [0],
        LOCAL,
        tmp_path / "jobs",
        root=tmp_path / "runs",
        store=store,
        log=lambda line: None,
    )
    assert states == {"teng-table6-smoke-1-seed0": "done"}
    baseline = [
        r
        for r in load(str(Path(__file__).parents[1] / "results/baselines/teng-table6-smoke-fid.csv"))
        if "/1@" in r["variant"]
    ]
    (fid,) = [c for c in compare(baseline, store.measurements()) if c.key[3] == "fid"]
    assert fid.verdict == "ok" and fid.candidate == pytest.approx(fid.baseline, abs=1e-3)


def test_training_job_under_torchrun_with_two_gloo_processes(tmp_path: Path):
    from ablations.experiment import RunConfig
    from ablations.tables.cluster_jobs import _train_under_torchrun

    config = RunConfig(
        model="dit-tiny", data="builtin", res=16, batch=4, steps=2, ckpt_every=1, log_every=1, space="pixel"
    )
    _train_under_torchrun(config, tmp_path / "run", {"final": 2}, 2, 1, 0, "127.0.0.1", tmp_path)
    done = json.loads((tmp_path / "run" / "done.json").read_text())
    assert done["world"] == 2 and done["steps"] == 2

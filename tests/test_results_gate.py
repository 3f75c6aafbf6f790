"""The regression gate: the committed baselines, and a gate that cannot be fooled (row identity, every
CSV the harness writes, a direction per metric, NaN, missing runs and files fail loudly)."""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablations.tables.layout import measurements
from bench.baseline import BASELINE, baseline_rows
from results.cli import app
from results.compare import CompareError, compare, load, rule_for
from results.export import write_csv
from results.store import Measurement, ResultsStore, StoreError
from results.sweep_csv import COLUMNS as SWEEP_COLUMNS
from zoo import list_models


def test_the_baseline_covers_every_entry():
    assert {row["model"] for row in load(str(BASELINE))} == set(list_models())


@pytest.mark.parametrize("model", list_models())
def test_counts_match_the_committed_baseline(model):
    """Every entry's GMACs and parameters at 256, 1024 and 3840x2160 as committed (one test per entry: a failure
    names it, and the parallel test workers share the ~1 min of counting)."""
    committed = [row for row in load(str(BASELINE)) if row["model"] == model]
    failures = [c for c in compare(committed, baseline_rows([model])) if c.verdict != "ok"]
    assert committed and not failures, [f"{c.verdict}: {c.key} {c.baseline} -> {c.candidate}" for c in failures]


def _results(cli_args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """The `results` command as a user runs it (its console entry point, so errors are one line)."""
    return subprocess.run(
        [sys.executable, "-m", "results.cli", *cli_args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


REPO = Path(__file__).parents[1]
CPU_LEARN_BASELINES = sorted((REPO / "results" / "baselines").glob("*-cpu-learn-fid.csv"))


@pytest.mark.parametrize("baseline", CPU_LEARN_BASELINES, ids=lambda p: p.name)
def test_cpu_learn_baselines_are_the_runs_of_their_reports(baseline: Path):
    """A committed CPU-scale FID baseline (too long to rerun in CI: it gates wherever its rows are measured
    again) holds exactly the seeds its committed report averaged, with tolerances from their spread, and passes
    the gate against itself: a baseline regenerated from other runs than the report's fails here."""
    table = baseline.name.removesuffix("-cpu-learn-fid.csv")
    with open(REPO / "results" / "reports" / f"{table}-cpu-learn.csv") as f:
        report = {row["variant"]: row for row in csv.DictReader(f) if row["status"] == "ok"}
    rows = load(str(baseline))
    by_variant: dict[str, list[float]] = {}
    for row in rows:
        variant = row["variant"].split("@")[0].split("/", 1)[1]  # "<table>/<variant>@<ckpt> seed=..."
        by_variant.setdefault(variant, []).append(float(row["value"]))
    assert set(by_variant) == set(report)
    for variant, fids in by_variant.items():
        assert len(fids) == int(report[variant]["seeds"]), variant
        assert statistics.mean(fids) == pytest.approx(float(report[variant]["ours_fid"]), abs=1e-9), variant
        spread = statistics.stdev(fids)
        tolerances = {float(r["tolerance"]) for r in rows if f"/{variant}@" in r["variant"]}
        assert [t == pytest.approx(max(2 * spread, 0.5), rel=1e-3) for t in tolerances] == [True], variant
    assert all(c.verdict == "ok" for c in compare(rows, rows))


def _ablation_rows(fids: dict[str, float]) -> list[dict]:
    """Store rows of a table's variants as `ablations run` writes them: one model, one resolution."""
    out = []
    for variant, fid in fids.items():
        result = dict(
            table="teng-table6",
            variant=variant,
            checkpoint="final",
            seed=0,
            preset="smoke",
            sampler="dpm-solver",
            sample_steps=10,
            cfg=1.0,
            n_generated=16,
            n_reference=16,
            step=30,
            config_hash=f"hash-{variant}",
            model="dim-teng-s/2-cifar10",
            res=16,
            device="cpu",
            params_m=1.0,
            run="r",
            fid=fid,
            precision=0.5,
            recall=0.5,
        )
        out += [vars(m) for m in measurements(result)]
    return out


def test_each_ablation_variant_is_its_own_row(tmp_path: Path):
    """The variants of one table share model and resolution: a +25 FID regression of one is caught, also
    through the store and a CSV export."""
    base = _ablation_rows({"1234": 300.0, "12": 301.0, "1": 302.0})
    cand = _ablation_rows({"1234": 300.0, "12": 326.0, "1": 302.0})
    verdicts = {c.key[1].split()[0]: c.verdict for c in compare(base, cand) if c.key[3] == "fid"}
    assert verdicts == {
        "teng-table6/1234@final": "ok",
        "teng-table6/12@final": "regression",
        "teng-table6/1@final": "ok",
    }
    store = ResultsStore(tmp_path / "s.sqlite")
    for rows in (base, cand):
        store.add(store.start_run(), [Measurement(**row) for row in rows])
    write_csv(store.measurements(1), tmp_path / "base.csv")
    assert {"variant", "config"} <= set(next(csv.reader((tmp_path / "base.csv").open())))
    failed = [
        c for c in compare(load(str(tmp_path / "base.csv")), load("2", tmp_path / "s.sqlite")) if c.verdict != "ok"
    ]
    assert [(c.key[1].split()[0], c.verdict) for c in failed] == [("teng-table6/12@final", "regression")]


def _sweep_csv(path: Path, gmacs: float, latency_ms: float, extra: list[dict] = ()) -> Path:
    rows = [
        dict(
            model="dit-s/2",
            resolution="256x256",
            metric="flops",
            batch=1,
            device="cpu",
            dtype="float32",
            threads=1,
            status="ok",
            gmacs=gmacs,
            gflops=2 * gmacs,
            params_m=33.0,
        ),
        dict(
            model="dit-s/2",
            resolution="256x256",
            metric="latency",
            batch=1,
            device="cpu",
            dtype="float32",
            threads=1,
            status="ok",
            median_ms=latency_ms,
            iqr_ms=1.0,
            samples_per_s=1000 / latency_ms,
        ),
        *extra,
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SWEEP_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_sweep_csvs_compare_and_a_retried_case_counts_once(tmp_path: Path):
    base = _sweep_csv(tmp_path / "base.csv", 6.0, 20.0)
    worse = _sweep_csv(tmp_path / "worse.csv", 12.0, 60.0)
    verdicts = {c.key[3]: c.verdict for c in compare(load(str(base)), load(str(worse)))}
    assert verdicts["gmacs"] == verdicts["latency_median"] == verdicts["throughput"] == "regression"
    assert verdicts["latency_iqr"] == "ok"  # a spread is never gated
    result = _results(["compare", str(base), str(worse)])
    assert result.returncode == 1 and "regression" in result.stdout
    failed_then_fixed = [
        dict(
            model="dit-s/2",
            resolution="512x512",
            metric="latency",
            batch=1,
            device="cpu",
            dtype="float32",
            threads=1,
            status=s,
            median_ms=m,
            iqr_ms=1.0,
            samples_per_s=1,
        )
        for s, m in (("timeout", ""), ("ok", 30.0))
    ]
    retried = load(str(_sweep_csv(tmp_path / "retried.csv", 6.0, 20.0, failed_then_fixed)))
    medians = [r for r in retried if r["metric"] == "latency_median" and r["resolution"] == "512x512"]
    assert [r["value"] for r in medians] == [30.0]


def test_directions_nan_and_tolerance_column():
    row = dict(model="m", variant="", resolution="16", batch=1, dtype="float32", device="cpu")
    base = [dict(row, metric=m, value=v) for m, v in (("precision", 0.5), ("recall", 0.5), ("fid", 10.0))]
    gain = [dict(row, metric=m, value=v) for m, v in (("precision", 0.6), ("recall", 0.3), ("fid", float("nan")))]
    assert [c.verdict for c in compare(base, gain)] == ["better", "regression", "not a number"]
    loose = [dict(r, tolerance="5") if r["metric"] == "fid" else r for r in base]
    assert compare(loose, [dict(r, value=14.0) if r["metric"] == "fid" else r for r in base])[2].verdict == "ok"
    assert compare(base, [dict(r, value=14.0) if r["metric"] == "fid" else r for r in base])[2].verdict == "regression"
    for metric in (
        "fid",
        "sfid",
        "kid",
        "is",
        "precision",
        "recall",
        "gmacs",
        "latency_median",
        "memory_train_peak",
        "profile_scan_s",
        "train_loss_final",
    ):
        rule_for(metric)
    with pytest.raises(CompareError, match="no direction"):
        rule_for("made_up_metric")
    with pytest.raises(CompareError, match="two rows"):
        compare(base + base[:1], base)


def _results_in_process(monkeypatch, capsys, args) -> tuple[int, str, str]:
    """`results ARGS` through its console entry function in this process: (exit code, stderr, stdout)."""
    from results.cli import run

    monkeypatch.setattr(sys, "argv", ["results", *args])
    with pytest.raises(SystemExit) as exit_info:
        run()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err, captured.out


def test_bad_sources_are_one_line_errors(tmp_path: Path, monkeypatch, capsys):
    store = tmp_path / "s.sqlite"
    db = ResultsStore(store)
    db.recorder().add([Measurement("m", "gmacs", 1.0, "GMAC")])
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    cases = {
        ("compare", "999", "1", "--store", str(store)): "run 999 is not in the store",
        ("compare", str(tmp_path / "nope.csv"), "1", "--store", str(store)): "no such file",
        ("compare", str(tmp_path / "other.csv"), "1", "--store", str(store)): "neither a `results export` CSV",
        ("list", "--store", str(tmp_path / "absent.sqlite")): "no results store at",
        ("show", "7", "--store", str(store)): "run 7 is not in the store",
    }
    for i, (args, expected) in enumerate(cases.items()):
        if i == 0:  # the installed console entry, as a user runs it
            result = _results(list(args))
            code, err, out = result.returncode, result.stderr, result.stdout
        else:  # the same entry function in this process (a new interpreter per case costs ~4 s)
            code, err, out = _results_in_process(monkeypatch, capsys, args)
        assert code == 2, (args, err)
        assert expected in err and "Traceback" not in err + out
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "absent.sqlite").exists()  # a reading command creates nothing


def test_damaged_and_read_only_stores(tmp_path: Path, monkeypatch, capsys):
    good = tmp_path / "good.sqlite"
    ResultsStore(good).recorder().add([Measurement("m", "gmacs", 1.0, "GMAC")])
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(good.read_bytes()[:100])
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all" * 100)
    for path in (truncated, junk):
        with pytest.raises(StoreError, match="move it aside"):
            ResultsStore(path).runs()
        code, err, out = _results_in_process(monkeypatch, capsys, ["list", "--store", str(path)])
        assert code == 2 and "Traceback" not in err + out and str(path) in "".join(err.split())  # however rich wraps it
    if os.geteuid() != 0:  # root writes through file permissions
        readonly = tmp_path / "ro"
        readonly.mkdir()
        ResultsStore(readonly / "r.sqlite")
        readonly.chmod(0o500)
        (readonly / "r.sqlite").chmod(0o400)
        with pytest.raises(StoreError, match="writable"):
            ResultsStore(readonly / "r.sqlite").recorder().add([Measurement("m", "gmacs", 1.0, "GMAC")])


def test_store_location_rule_and_no_empty_runs(tmp_path: Path):
    result = _results(["list"], env={"MAMBABENCH_RESULTS": str(tmp_path / "env.sqlite")})
    assert result.returncode == 2 and "$MAMBABENCH_RESULTS" in result.stderr
    store = ResultsStore(tmp_path / "env.sqlite")
    recorder = store.recorder()
    recorder.add([])
    assert store.runs() == []  # nothing measured: no run
    recorder.add([Measurement("m", "gmacs", 1.0, "GMAC")])
    recorder.add([Measurement("m", "gflops", 2.0, "GFLOP")])
    assert [r["rows"] for r in store.runs()] == [2]
    listed = CliRunner().invoke(app, ["list"], env={"MAMBABENCH_RESULTS": str(tmp_path / "env.sqlite")})
    assert listed.exit_code == 0 and "$MAMBABENCH_RESULTS" in listed.output
    env = {k: v for k, v in os.environ.items() if k != "MAMBABENCH_RESULTS"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    default = subprocess.run(
        [sys.executable, "-m", "results.cli", "list"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert str(tmp_path / "xdg" / "mambabench" / "results.sqlite") in default.stderr


@pytest.mark.parametrize(
    "sqlite_message, fix",
    [("database or disk is full", "free disk space"), ("attempt to write a readonly database", "writable")],
)
def test_full_disk_and_read_only_store_are_clear_errors(tmp_path: Path, monkeypatch, sqlite_message, fix):
    """What SQLite raises on a full disk or a read-only file (simulated: root writes through permissions and a
    full disk cannot be made here) becomes one StoreError naming the file and the fix."""
    import sqlite3

    store = ResultsStore(tmp_path / "s.sqlite")

    class Failing:
        def __init__(self, db):
            self.db = db

        def __getattr__(self, name):
            return getattr(self.db, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.db.__exit__(*exc)

        def execute(self, *args):
            raise sqlite3.OperationalError(sqlite_message)

        executemany = execute

    real = store._connect
    monkeypatch.setattr(store, "_connect", lambda: Failing(real()))
    with pytest.raises(StoreError, match=fix) as error:
        store.recorder().add([Measurement("m", "gmacs", 1.0, "GMAC")])
    assert str(tmp_path / "s.sqlite") in str(error.value)

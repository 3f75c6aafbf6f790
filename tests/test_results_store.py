"""The results store: round trip, run context, concurrent writers, a writer killed mid-run, compare."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from multiprocessing import Pool
from pathlib import Path

from typer.testing import CliRunner

from results.cli import app
from results.compare import compare
from results.export import write_csv
from results.store import Measurement, ResultsStore, run_context


def _write(args):
    path, worker = args
    store = ResultsStore(path)
    run = store.start_run({"command": f"worker {worker}"})
    for i in range(20):
        store.add(run, [Measurement(model=f"m{worker}", metric="gmacs", value=float(i), unit="GMAC")])
    return run


def test_round_trip_and_context(tmp_path: Path):
    store = ResultsStore(tmp_path / "r.sqlite")
    run = store.start_run()
    store.add(
        run,
        [
            Measurement(
                model="dit-xl/2", metric="gmacs", value=118.6, unit="GMAC", resolution="256x256", config={"depth": 28}
            )
        ],
    )
    (row,) = store.measurements(run)
    assert row["model"] == "dit-xl/2" and row["value"] == 118.6 and row["config"] == '{"depth": 28}'
    (info,) = store.runs()
    assert info["rows"] == 1 and info["torch"] and info["python"]
    assert set(run_context()) >= {"git_commit", "git_dirty", "host", "cpu", "gpu", "torch", "command"}


def test_concurrent_writers_lose_nothing(tmp_path: Path):
    path = tmp_path / "r.sqlite"
    ResultsStore(path)
    with Pool(8) as pool:
        runs = pool.map(_write, [(path, w) for w in range(8)])
    store = ResultsStore(path)
    assert len(store.measurements()) == 8 * 20 and sorted(runs) == list(range(1, 9))


def test_killed_writer_leaves_every_committed_row(tmp_path: Path):
    path = tmp_path / "r.sqlite"
    script = textwrap.dedent(f"""
        import sys
        from results.store import Measurement, ResultsStore
        store = ResultsStore({str(path)!r})
        run = store.start_run({{"command": "doomed"}})
        i = 0
        while True:
            store.add(run, [Measurement(model="m", metric="gmacs", value=float(i), unit="GMAC")] * 50)
            i += 1
            print(i * 50, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    committed = 0
    while committed < 500:
        committed = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    rows = ResultsStore(path).measurements()
    assert len(rows) >= committed and len(rows) % 50 == 0  # whole transactions only


def test_compare_tolerances_and_cli_gate(tmp_path: Path):
    base = [
        dict(model="a", resolution="256x256", metric="gmacs", value="100", batch=1, dtype="float32", device="meta"),
        dict(
            model="a", resolution="256x256", metric="latency_median", value="10", batch=1, dtype="float32", device="cpu"
        ),
    ]
    same = [dict(r) for r in base]
    slower = [dict(base[0]), dict(base[1], value="12")]
    counted_change = [dict(base[0], value="100.2"), dict(base[1], value="9")]
    assert {c.verdict for c in compare(base, same)} == {"ok"}
    assert [c.verdict for c in compare(base, slower)] == ["ok", "regression"]
    assert [c.verdict for c in compare(base, counted_change)] == ["regression", "ok"]  # faster is fine
    assert compare(base, same[:1])[1].verdict == "missing"
    write_csv(base, tmp_path / "base.csv")
    write_csv(slower, tmp_path / "cand.csv")
    write_csv(same, tmp_path / "same.csv")
    runner = CliRunner()
    assert runner.invoke(app, ["compare", str(tmp_path / "base.csv"), str(tmp_path / "cand.csv")]).exit_code == 1
    assert runner.invoke(app, ["compare", str(tmp_path / "base.csv"), str(tmp_path / "same.csv")]).exit_code == 0

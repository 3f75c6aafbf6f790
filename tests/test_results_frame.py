"""``results.frame``: the store as a typed DataFrame with filters, and ``results export`` through it (CSV that
``results compare`` reads, Parquet); the CSV writer and reader on pandas write and read what the csv module
did."""

from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mambabench.errors import UserError
from results.cli import app
from results.compare import compare, load
from results.export import COLUMNS, write_csv
from results.frame import COLUMNS as FRAME_COLUMNS
from results.frame import frame, parse_resolution
from results.store import Measurement, ResultsStore, StoreError

DAY = 86_400.0
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def _store(path: Path) -> ResultsStore:
    """Two runs: counts on meta and a latency on cpu (clean commit), a failed case and a clip (dirty)."""
    store = ResultsStore(path)
    run = store.start_run({"git_commit": "a" * 40, "git_dirty": 0, "cpu": "x86_64", "started": T0})
    store.add(
        run,
        [
            Measurement(model="dit-xl/2", metric="gmacs", value=118.6, unit="GMAC", resolution="256", device="meta"),
            Measurement(model="dim-mo-xl/2", metric="gmacs", value=120.0, unit="GMAC", resolution="3840x2160"),
            Measurement(model="dit-xl/2", metric="latency_median", value=50.0, unit="ms", variant="threads=1"),
        ],
    )
    run = store.start_run({"git_commit": "b" * 40, "git_dirty": 1, "started": T0 + DAY})
    store.add(
        run,
        [
            Measurement(model="dit-xl/2", metric="latency", value=None, unit="", status="error", detail="boom"),
            Measurement(model="latte-xl/2", metric="gmacs", value=1e3, unit="GMAC", resolution="16x256x256"),
        ],
    )
    return store


def test_columns_types_and_run_context(tmp_path: Path):
    store = _store(tmp_path / "s.sqlite")
    df = frame(store, families={"dit-xl/2": "dit", "latte-xl/2": "latte"})
    assert list(df.columns) == list(FRAME_COLUMNS) and len(df) == 5
    assert df["value"].dtype == "float64" and str(df["batch"].dtype) == "Int64"
    assert str(df["dirty"].dtype) == "boolean" and str(df["timestamp"].dtype).startswith("datetime64")
    assert all(pd.api.types.is_string_dtype(df[c]) for c in ("model", "metric", "commit", "family"))
    first = df.iloc[0]
    assert (first["model"], first["family"], first["commit"], bool(first["dirty"])) == (
        "dit-xl/2",
        "dit",
        "a" * 40,
        False,
    )
    assert (first["width"], first["height"], first["frames"]) == (256, 256, 0)
    assert first["run_started"] == pd.Timestamp(T0, unit="s", tz="UTC")
    clip = df[df["model"] == "latte-xl/2"].iloc[0]
    assert (clip["width"], clip["height"], clip["frames"], bool(clip["dirty"])) == (256, 256, 16, True)
    assert pd.isna(df[df["model"] == "dim-mo-xl/2"].iloc[0]["family"])  # not in the mapping: not guessed
    failed = df[df["status"] == "error"].iloc[0]
    assert pd.isna(failed["value"]) and failed["detail"] == "boom" and pd.isna(failed["width"])


def test_filters(tmp_path: Path):
    store = _store(tmp_path / "s.sqlite")
    assert set(frame(store, model="dit-*")["model"]) == {"dit-xl/2"}
    assert len(frame(store, metric=["gmacs", "latency_*"])) == 4
    assert set(frame(store, device="meta")["model"]) == {"dit-xl/2"}
    assert set(frame(store, run=2)["run_id"]) == {2} and len(frame(store, run=[1, 2])) == 5
    assert len(frame(store, status="ok")) == 4
    # every row was written now; nothing was written tomorrow
    tomorrow = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    assert len(frame(store, since=tomorrow)) == 0 and len(frame(store, until=tomorrow.date().isoformat())) == 5
    empty = frame(store, metric="fid")
    assert empty.empty and list(empty.columns) == list(FRAME_COLUMNS)
    with pytest.raises(UserError, match="not an ISO date"):
        frame(store, since="last week")
    with pytest.raises(UserError, match="non-empty"):
        frame(store, model=[])
    with pytest.raises(StoreError, match="no results store"):
        frame(tmp_path / "missing.sqlite")


def test_parse_resolution():
    assert parse_resolution("256") == (256, 256, 0)
    assert parse_resolution("3840x2160") == (3840, 2160, 0)
    assert parse_resolution("16x256x512") == (256, 512, 16)
    assert parse_resolution("") is None and parse_resolution("table row") is None


def test_export_csv_and_parquet_through_the_frame(tmp_path: Path):
    store = _store(tmp_path / "s.sqlite").path
    runner = CliRunner()
    result = runner.invoke(app, ["export", "--run", "1", "--csv", str(tmp_path / "a.csv"), "--store", str(store)])
    assert result.exit_code == 0, result.output
    header = next(csv.reader((tmp_path / "a.csv").open()))
    assert header[: len(COLUMNS)] == COLUMNS and {"family", "commit", "dirty", "timestamp"} <= set(header)
    assert (tmp_path / "a.csv").read_bytes().count(b"\r\n") == 4  # CRLF lines, as the csv module wrote them
    rows = load(str(tmp_path / "a.csv"))
    assert [c.verdict for c in compare(rows, load("1", store))] == ["ok"] * 3  # the gate reads the export
    assert rows[0]["family"] == "dit" and rows[0]["batch"] == "1"  # the registry's family; ints stay ints

    result = runner.invoke(
        app,
        ["export", "--out", str(tmp_path / "a.parquet"), "--format", "parquet", "-m", "dit-*", "--store", str(store)],
    )
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(tmp_path / "a.parquet")
    assert len(df) == 3 and str(df["batch"].dtype) == "Int64" and str(df["timestamp"].dtype).startswith("datetime64")
    assert df["value"].isna().sum() == 1  # the failed case

    bad = {
        ("--csv", str(tmp_path / "b.csv"), "--out", str(tmp_path / "c.csv")): "one of --csv",
        ("--out", str(tmp_path / "b.xml"), "--format", "xml"): "--format must be one of",
        ("--csv", str(tmp_path / "b.csv"), "--format", "parquet"): "--csv writes CSV",
        ("--csv", str(tmp_path / "b.csv"), "--run", "9"): "run 9 is not in the store",
        ("--csv", str(tmp_path / "b.csv"), "--since", "soon"): "not an ISO date",
    }
    for args, words in bad.items():
        result = runner.invoke(app, ["export", *args, "--store", str(store)])
        assert result.exit_code == 2 and words in result.output, (args, result.output)


def test_write_csv_writes_what_the_csv_module_wrote(tmp_path: Path):
    rows = [
        {"model": "a", "value": 0.1 + 0.2, "batch": 1, "run_id": None, "config": '{"x": "1, 2"}', "other": 3},
        {"model": "b", "value": None, "batch": 2, "run_id": 3, "tolerance": 0.05},
    ]
    write_csv(rows, tmp_path / "x.csv", ("tolerance",))
    expected = io.StringIO(newline="")
    writer = csv.DictWriter(expected, fieldnames=[*COLUMNS, "tolerance"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    assert (tmp_path / "x.csv").read_bytes() == expected.getvalue().encode()
    baseline = Path(__file__).parent.parent / "results" / "baselines" / "teng-table6-smoke-fid.csv"
    write_csv(load(str(baseline)), tmp_path / "again.csv", ("tolerance",))
    assert (tmp_path / "again.csv").read_bytes() == baseline.read_bytes()  # a committed baseline, byte for byte


def test_compare_reads_csvs_on_pandas(tmp_path: Path):
    path = tmp_path / "torn.csv"
    path.write_text("model,metric,value,status\nm,gmacs,1.0,ok\nm2,gmacs,2.0\nm3,gmacs,3,ok,extra\n")
    rows = load(str(path))
    assert rows == [
        {"model": "m", "metric": "gmacs", "value": "1.0", "status": "ok"},
        {"model": "m2", "metric": "gmacs", "value": "2.0", "status": ""},  # short: empty cells, never NaN
    ]
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UserError, match="neither"):
        load(str(tmp_path / "empty.csv"))

"""The executor against a real Slurm (``bash scripts/slurm_local.sh start``: slurmctld + slurmd on this machine;
skipped, saying why, when no Slurm answers): a sweep's jobs give the rows of a local run, a table's student
waits for its teacher (``afterok``), a requeued teacher continues from its checkpoint, a cancelled one leaves
its student cancelled and the rerun finishes both with every row once, ``--cancel`` cancels from the CLI, and
a failed job shows its exit code and the end of its log. Every job asks for 1 CPU and runs one thread."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from results.store import ResultsStore
from results.sweep_csv import read_rows

pytestmark = pytest.mark.slurm
PARTITION = os.environ.get("MAMBABENCH_TEST_SLURM_PARTITION", "debug")
BIN = Path(sys.executable).parent  # the venv's bench and ablations
SWEEP = ["sweep", "-m", "dit-tiny", "--metric", "flops"]
TABLE = ["run", "t2md-table1", "--preset", "smoke", "--variant", "teacher", "--variant", "init"]
TEACHER, STUDENT = "t2md-table1-smoke-teacher-seed0", "t2md-table1-smoke-init-seed0"


def _why_not_slurm() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no Slurm here (sinfo): `bash scripts/slurm_local.sh start` installs and starts one"
    try:
        out = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 20 s"
    if out.returncode != 0:
        return f"Slurm controller not reachable: {out.stderr.strip()} (bash scripts/slurm_local.sh start)"
    up = [s for s in out.stdout.split() if s.rstrip("*~#$@^-+") in ("idle", "mixed", "allocated", "completing")]
    return None if up else f"no node up in partition {PARTITION!r} (sinfo: {out.stdout.split() or 'none'})"


@pytest.fixture(scope="module")
def slurm() -> None:
    reason = _why_not_slurm()
    if reason:
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _one_thread_jobs(monkeypatch):
    """sbatch passes the environment on: jobs run one thread and find this file's functions."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))


def _config(folder: Path, setup: tuple[str, ...] = ()) -> Path:
    """Cluster options: 1 CPU and 2 GB per job, 10 minutes, a look at the queue every half second."""
    lines = ["export OMP_NUM_THREADS=1", *setup]
    path = folder / "cluster.toml"
    path.write_text(
        f'executor = "slurm"\npartition = "{PARTITION}"\ncpus_per_task = 1\nmem_gb = 2\ntime = 10\npoll = 0.5\n'
        f"setup = {json.dumps(lines)}\n"
    )
    return path


def _cli(command: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / command), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=_env()
    )


def _start(command: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / command), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env()
    )


def _env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200"}  # rich wraps at the terminal width


def _wait(what: str, check: Callable[[], object], timeout: float = 60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _jobs(folder: Path) -> dict[str, dict]:
    path = folder / "jobs.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _job(job_id: str) -> dict[str, str]:
    """``scontrol show job``: field -> value ({} once the controller forgot it)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=20)
    return dict(item.split("=", 1) for item in out.stdout.split() if "=" in item)


def _history(job_id: str) -> list[str] | None:
    """Every start of a job as sacct records it (``State|ExitCode``, oldest first); None without accounting."""
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-D", "-j", job_id, "-o", "State,ExitCode"], capture_output=True, text=True
    )
    return out.stdout.splitlines() if out.returncode == 0 else None


def _measurements(path: Path) -> list[tuple]:
    return sorted(
        (m["model"], m["resolution"], m["metric"], m["value"], m["status"]) for m in ResultsStore(path).measurements()
    )


def test_sweep_jobs_give_the_rows_of_a_local_run(slurm, tmp_path: Path):
    sizes = ["-r", "32", "-r", "64"]
    jobs = tmp_path / "jobs"
    there = _start("bench", *SWEEP, *sizes, "--out", tmp_path / "slurm.csv", "--store", tmp_path / "slurm.sqlite",
                   "--cluster-config", _config(tmp_path), "--jobs-dir", jobs)  # fmt: skip
    here = _cli("bench", *SWEEP, *sizes, "--out", tmp_path / "here.csv", "--store", tmp_path / "here.sqlite")
    output = there.communicate(timeout=120)[0]
    assert here.returncode == 0, here.stdout + here.stderr
    assert there.returncode == 0, output
    book = _jobs(jobs)
    assert len(book) == 2 and len({e["job_id"] for e in book.values()}) == 2 and output.count("submitted") == 2
    for entry in book.values():  # real Slurm jobs, of 1 CPU each, that completed
        info = _job(entry["job_id"])
        assert info["JobState"] == "COMPLETED" and info["NumCPUs"] == "1" and info["Partition"] == PARTITION, info
    strip = lambda rows: sorted((r["resolution"], r["gmacs"], r["params_m"], r["status"]) for r in rows)  # noqa: E731
    assert strip(read_rows(tmp_path / "slurm.csv")) == strip(read_rows(tmp_path / "here.csv"))
    assert _measurements(tmp_path / "slurm.sqlite") == _measurements(tmp_path / "here.sqlite")
    again = _cli("bench", *SWEEP, *sizes, "--out", tmp_path / "slurm.csv", "--store", tmp_path / "slurm.sqlite",
                 "--cluster-config", _config(tmp_path), "--jobs-dir", jobs)  # fmt: skip
    assert again.returncode == 0 and "submitted" not in again.stdout and "0 new row(s)" in again.stdout
    assert _jobs(jobs) == book and len(ResultsStore(tmp_path / "slurm.sqlite").measurements()) == 6


def _run(runs: Path, prefix: str) -> Path | None:
    found = sorted(runs.glob(f"runs/{prefix}*"))
    return found[0] if found else None


def _checkpoints(run: Path) -> list[Path]:
    return list((run / "checkpoints").glob("step-*.pt"))


def _steps(run: Path) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in _checkpoints(run))


def _upto(log: list[str], step: int) -> list[str]:
    return [line for line in log if json.loads(line)["step"] <= step]


def _started(jobs: Path, job_id: str, times: int) -> bool:
    """The job's Python has started ``times`` times (submitit logs each start)."""
    log = jobs / "submitit" / f"{job_id}_0_log.out"
    return log.is_file() and log.read_text().count("Loading pickle") >= times


def test_table_afterok_requeue_cancel_and_resume(slurm, tmp_path: Path):
    """The student waits on its teacher (afterok); requeued mid-training (as a preemption would), it starts
    again and trains on from its checkpoint; cancelled mid-run, the command fails; the same command again
    resubmits only the student and ends with each variant's rows once."""
    runs, jobs, store = tmp_path / "runs", tmp_path / "jobs", tmp_path / "s.sqlite"
    args = [*TABLE, "--runs", runs, "--store", store, "--cluster-config", _config(tmp_path), "--jobs-dir", jobs]
    first = _start("ablations", *args)
    book = _wait("both jobs submitted", lambda: len(_jobs(jobs)) == 2 and _jobs(jobs))
    teacher, student = book[TEACHER]["job_id"], book[STUDENT]["job_id"]
    held = _job(student)
    assert held["Dependency"].startswith(f"afterok:{teacher}") and held["JobState"] == "PENDING", held
    assert held["Reason"] == "Dependency", held

    run = _wait("the student's run folder", lambda: _run(runs, "t2md-"), 90)
    _wait("the student's first checkpoint", lambda: _steps(run), 90)
    assert (jobs / TEACHER / "done.json").is_file()  # the student started after its teacher finished
    # preempted: frozen where it is (SIGSTOP), then requeued (killed and queued again). Frozen first because a
    # plain requeue's SIGTERM-then-SIGKILL takes a few seconds, in which this 30-step run would finish
    subprocess.run(["scontrol", "suspend", student], check=True, timeout=20)
    trained, kept = max(_steps(run)), (run / "log.jsonl").read_text().splitlines()
    assert trained < 30 and not (run / "done.json").is_file()
    subprocess.run(["scontrol", "requeue", student], check=True, timeout=20)
    if _wait("the student requeued", lambda: _job(student).get("JobState") == "PENDING" and _job(student))[
        "Reason"
    ] == ("JobHeldAdmin"):  # a suspended job comes back held
        subprocess.run(["scontrol", "release", student], check=True, timeout=20)
    _wait("the student started again", lambda: _job(student).get("Restarts") == "1" and _started(jobs, student, 2))
    assert not (jobs / STUDENT / "done.json").is_file()
    restarted = time.time()
    _wait(
        "the requeued student training on from its checkpoint",
        lambda: (run / "done.json").is_file() or any(p.stat().st_mtime > restarted for p in _checkpoints(run)),
    )
    # continued from the checkpoint: the steps up to it were trained once (the first start's log lines are kept;
    # a start from step 0 would have rewritten them)
    assert (run / "log.jsonl").read_text().splitlines()[: len(_upto(kept, trained))] == _upto(kept, trained)
    subprocess.run(["scancel", student], check=True, timeout=20)  # mid-run again (training, or sampling and scoring)
    output = first.communicate(timeout=90)[0]
    assert first.returncode == 1, output
    assert f"{STUDENT}: job {student} failed (exit code" in output and "_log.err:" in output, output
    _wait("the student cancelled", lambda: _job(student)["JobState"] == "CANCELLED")
    history = _history(student)
    if history is not None:  # accounting: the first start was requeued, the second cancelled
        assert [h.split("|")[0].split()[0] for h in history] == ["REQUEUED", "CANCELLED"], history
    (fid,) = [m["variant"] for m in ResultsStore(store).measurements() if m["metric"] == "fid"]
    assert fid.startswith("t2md-table1/teacher@")  # the finished teacher's rows merged, none of the student

    second = _cli("ablations", *args, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"submitted {TEACHER}" not in second.stdout and f"submitted {STUDENT}" in second.stdout
    log = (run / "log.jsonl").read_text().splitlines()
    assert log[: len(_upto(kept, trained))] == _upto(kept, trained)
    steps = [json.loads(line)["step"] for line in log]
    assert steps == sorted(set(steps)) and steps[-1] == 30  # no step logged twice, none missing at the end
    assert json.loads((run / "done.json").read_text())["steps"] == 30
    fids = [m["variant"] for m in ResultsStore(store).measurements() if m["metric"] == "fid"]
    assert sorted(fids) == sorted(set(fids)) and len(fids) == 2, fids  # each variant's row once


def test_cancel_from_the_cli(slurm, tmp_path: Path):
    args = ["sweep", "-m", "dit-tiny", "-r", "32", "--metric", "latency", "--min-time", "300", "--no-store"]
    args += ["--out", tmp_path / "s.csv", "--cluster-config", _config(tmp_path), "--jobs-dir", tmp_path / "jobs"]
    driver = _start("bench", *args)
    entry = _wait("the job submitted", lambda: _jobs(tmp_path / "jobs"))
    (job_id,) = [e["job_id"] for e in entry.values()]
    _wait("the job running", lambda: _job(job_id).get("JobState") == "RUNNING")
    cancel = _cli("bench", *args, "--cancel")
    assert cancel.returncode == 0 and f"cancelled job {job_id}" in cancel.stdout, cancel.stdout + cancel.stderr
    output = driver.communicate(timeout=60)[0]
    # not done (the sweep's case process, killed by Slurm's SIGTERM, is not a finished case): rerun resubmits it
    assert driver.returncode == 1 and "jobs: 0 done, 1 not" in output and "ended by SIGTERM" in output, output
    _wait("the job cancelled", lambda: _job(job_id)["JobState"] == "CANCELLED")
    status = _cli("bench", *args, "--status")
    assert "failed" in status.stdout and job_id in status.stdout, status.stdout
    again = _cli("bench", *args, "--cancel")
    assert "cancelled 0 job(s)" in again.stdout  # nothing left to cancel


def _boom(folder: Path) -> None:
    print("loading the data", flush=True)
    raise RuntimeError("the data set is not there")


def test_a_failed_job_shows_its_exit_code_and_log_tail(slurm, tmp_path: Path):
    # a job that dies before Python starts (a broken setup line): exit code 3 and its stderr, in the command's output
    args = [*SWEEP, "-r", "32", "--no-store", "--out", tmp_path / "s.csv", "--jobs-dir", tmp_path / "jobs"]
    setup = ("echo 'module: cuda/12.1 is not installed here' >&2", "exit 3")
    result = _cli("bench", *args, "--cluster-config", _config(tmp_path, setup))
    assert result.returncode == 1
    assert "failed (exit code 3:0)" in result.stdout and "module: cuda/12.1 is not installed here" in result.stdout
    status = _cli("bench", *args, "--cluster-config", _config(tmp_path), "--status")
    assert "3:0" in status.stdout and "module: cuda/12.1 is not installed here" in status.stdout, status.stdout

    # a Python error in the job: its first line, the exit code and the traceback's end
    from rich.console import Console

    from mambabench.cluster import cluster_options, print_status, run_jobs

    options = cluster_options(_config(tmp_path))
    cases, logged = {"broken": (_boom, ()), "after": (_boom, ())}, []
    states = run_jobs(cases, tmp_path / "py", options, "test-fail", after={"after": "broken"}, log=logged.append)
    assert states == {"broken": "failed", "after": "failed"}
    # its dependant, held by Slurm as DependencyNeverSatisfied, was cancelled instead of waited for forever
    assert any("after: cancelled job" in line and "dependency broken did not finish" in line for line in logged)
    console = Console(record=True, width=200)
    print_status(tmp_path / "py", ["broken"], console)
    shown = console.export_text()
    assert "RuntimeError: the data set is not there" in shown and "1:0" in shown, shown
    assert "loading the data" in shown or "raise RuntimeError" in shown, shown

"""The one error policy of every CLI (``mambabench.errors``), checked in real processes: a user mistake is one
red line and exit 2, a bug keeps its traceback and exits 1, ``--debug`` shows a user mistake's traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

APP = """
import sys
from mambabench.errors import UserError, cli_app, run_app

app = cli_app("a stand-in CLI")

@app.command("mistake")
def mistake() -> None:
    raise UserError("--size 7: must be even; try --size 8\\nsecond line never shown")

@app.command("bug")
def bug() -> None:
    {}[0]

@app.command("fine")
def fine() -> None:
    print("done")

run_app(app)
"""


def _run(*args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MAMBABENCH_DEBUG"}
    if debug:
        env["MAMBABENCH_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-c", APP, *args], capture_output=True, text=True, env=env, timeout=60)


def test_a_user_mistake_is_one_line_and_exit_2():
    done = _run("mistake")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "error: --size 7: must be even; try --size 8"


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_traceback_of_a_user_mistake(how):
    done = _run("--debug", "mistake") if how == "flag" else _run("mistake", debug=True)
    assert done.returncode == 1 and "Traceback" in done.stderr and "UserError: --size 7" in done.stderr


def test_a_bug_keeps_its_traceback_and_exits_1():
    done = _run("bug")
    assert done.returncode == 1 and "Traceback" in done.stderr and "KeyError: 0" in done.stderr
    assert "error:" not in done.stderr.splitlines()[0]


def test_a_good_command_is_untouched():
    done = _run("fine")
    assert done.returncode == 0 and done.stdout == "done\n" and done.stderr == ""

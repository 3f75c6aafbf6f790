"""Test-wide settings: one intra-op thread (a shared 2-core machine oversubscribes badly with two; the suite
runs as two pytest-xdist workers of one thread each), also in the subprocesses tests start (OMP_NUM_THREADS),
a fixed seed per test, and a results store and runs folder of the test session's own (never the user's;
subprocesses inherit them)."""

import os
import tempfile

import pytest
import torch
from figures import saved_figures  # noqa: F401 (a fixture of every test module)

torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"
# inside $MAMBABENCH_TEST_ROOT when set: CI builds the results site from these stores after the suite
_SESSION = tempfile.mkdtemp(prefix="mambabench-tests-", dir=os.environ.get("MAMBABENCH_TEST_ROOT") or None)
os.environ["MAMBABENCH_RESULTS"] = os.path.join(_SESSION, "results.sqlite")
os.environ["MAMBABENCH_RUNS"] = os.path.join(_SESSION, "runs")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

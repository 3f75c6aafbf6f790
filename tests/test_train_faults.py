"""Training failures are clear and recoverable (issue 16): damaged checkpoints are skipped on resume and
sampling, a finished run extends with a larger --steps, a failed start leaves nothing in the way, config
identity does not depend on how a path is spelt, and bad input is one line with exit code 2 (the traceback
with --debug / MAMBABENCH_DEBUG=1). Tiny models only: every test takes seconds."""

from __future__ import annotations

import json
import shutil
import urllib.error

import pytest
import torch
from typer.testing import CliRunner

from ablations import data as data_module
from ablations.cli import app
from ablations.experiment import DistillConfig, RunConfig, config_hash
from ablations.run_folder import CheckpointError, load_run_model, newest_checkpoint
from ablations.train import Trainer, train
from mambabench.errors import UserError

TINY = dict(model="dim-teng-tiny", batch=4, lr=1e-3, ema=0.9, log_every=1)
CLI_TINY = ["train", "-m", "dim-teng-tiny", "--batch", "4", "--lr", "1e-3", "--ema", "0.9", "--ckpt-every", "2"]


@pytest.fixture(autouse=True)
def _own_store_and_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMBABENCH_RESULTS", str(tmp_path / "results.sqlite"))
    monkeypatch.delenv("MAMBABENCH_DEBUG", raising=False)
    yield
    torch.set_num_threads(1)  # the CLI sets it; the rest of the session runs on one thread


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 4-step run (checkpoints at steps 2 and 4) and a straight 6-step run of the same config."""
    root = tmp_path_factory.mktemp("runs")
    runner = CliRunner()
    for steps in (4, 6):
        result = runner.invoke(app, [*CLI_TINY, "--steps", str(steps), "--out", str(root / f"straight{steps}")])
        assert result.exit_code == 0, result.output
    return root


def _weights(path, key="ema"):
    return torch.load(path, map_location="cpu", weights_only=True)[key]


def _equal(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def _error_line(result) -> str:
    """The command's one error line; fails on a traceback or on more than one error line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def _damage(path, kind: str) -> None:
    size = path.stat().st_size
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[: size // 2])
    elif kind == "zeros":
        path.write_bytes(bytes(size))
    else:
        path.write_bytes(b"")


# ---------------------------------------------------------------- 1. damaged checkpoints


@pytest.mark.parametrize("kind", ["truncated", "zeros", "empty"])
def test_resume_and_sampling_skip_a_damaged_checkpoint(finished, tmp_path, kind):
    run = tmp_path / "run"
    shutil.copytree(finished / "straight4", run)
    bad = run / "checkpoints" / "step-0000004.pt"
    _damage(bad, kind)
    lines = []
    _, _, model = load_run_model(run, log=lines.append)  # sampling uses the newest checkpoint that loads
    assert len(lines) == 1 and str(bad) in lines[0] and "step-0000002.pt" in lines[0]
    assert _equal(model.state_dict(), _weights(run / "checkpoints" / "step-0000002.pt"))

    result = CliRunner().invoke(app, [*CLI_TINY, "--steps", "4", "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(bad) in warnings[0] and "Traceback" not in result.output
    assert (run / "checkpoints" / "step-0000004.pt.damaged").is_file()  # set aside, not deleted
    assert _equal(_weights(bad), _weights(finished / "straight4" / "checkpoints" / "step-0000004.pt"))
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [4]  # log_every 10: the final step only, once


def test_no_checkpoint_loads_is_one_line_naming_the_files(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished / "straight4", run)
    for path in (run / "checkpoints").glob("*.pt"):
        _damage(path, "empty")
    with pytest.raises(CheckpointError, match="step-0000004.pt.*step-0000002.pt"):
        newest_checkpoint(run)
    runner = CliRunner()
    line = _error_line(runner.invoke(app, [*CLI_TINY, "--steps", "4", "--out", str(run), "--resume"]))
    assert "step-0000004.pt" in line and "step-0000002.pt" in line
    line = _error_line(runner.invoke(app, ["sample", "--run", str(run), "--steps", "2", "--n", "2"]))
    assert "step-0000004.pt" in line and "step-0000002.pt" in line


# ---------------------------------------------------------------- 2. --steps grows on resume


def test_a_finished_run_extends_to_more_steps_like_a_straight_run(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished / "straight4", run)
    runner = CliRunner()
    result = runner.invoke(app, [*CLI_TINY, "--steps", "6", "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    straight = finished / "straight6" / "checkpoints" / "step-0000006.pt"
    for key in ("model", "ema"):
        assert _equal(_weights(run / "checkpoints" / "step-0000006.pt", key), _weights(straight, key))
    assert json.loads((run / "done.json").read_text())["steps"] == 6
    assert json.loads((run / "done-step-0000004.json").read_text())["steps"] == 4  # the 4-step summary kept
    assert RunConfig.load(run).steps == 6 and config_hash(RunConfig.load(run)) == config_hash(
        RunConfig.load(finished / "straight6")
    )
    # the finished 4-step model is never pruned, even by later checkpoints
    result = runner.invoke(app, [*CLI_TINY, "--steps", "10", "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (run / "checkpoints").glob("*.pt"))
    assert names == ["step-0000004.pt", "step-0000006.pt", "step-0000008.pt", "step-0000010.pt"]
    # fewer steps than trained, or --steps changed without --resume, or another setting: refused, one line
    assert "--steps 10 or more" in _error_line(
        runner.invoke(app, [*CLI_TINY, "--steps", "8", "--out", str(run), "--resume"])
    )
    assert "--resume" in _error_line(runner.invoke(app, [*CLI_TINY, "--steps", "12", "--out", str(run)]))
    line = _error_line(runner.invoke(app, [*CLI_TINY, "--steps", "12", "--seed", "1", "--out", str(run), "--resume"]))
    assert "another configuration (seed 0 in the run, 1 asked)" in line


def test_runner_style_sessions_still_resume(tmp_path):
    """What ``ablations run`` does: time-sliced sessions with resume=True and kept checkpoints."""
    config = RunConfig(**TINY, steps=4, ckpt_every=1)
    Trainer(config, tmp_path / "run", resume=True, keep_steps=(1,)).run(stop_after=2)
    assert not (tmp_path / "run" / "done.json").exists()
    Trainer(config, tmp_path / "run", resume=True, keep_steps=(1,)).run()
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert names == ["step-0000001.pt", "step-0000003.pt", "step-0000004.pt"]
    assert json.loads((tmp_path / "run" / "done.json").read_text())["steps"] == 4


# ---------------------------------------------------------------- 3. a failed start blocks nothing


def test_a_failed_start_leaves_nothing_in_the_way(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    line = _error_line(runner.invoke(app, [*CLI_TINY, "--steps", "2", "--set", "depth=abc", "--out", str(out)]))
    assert line.startswith("error: --set depth=abc: depth expects an integer")
    assert not (out / "config.json").exists()
    # a start that failed later (here: another config in a folder without checkpoints) is not a run either
    RunConfig(**{**TINY, "lr": 0.5}, steps=2).save(out)
    result = runner.invoke(app, [*CLI_TINY, "--steps", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert RunConfig.load(out).lr == 1e-3


# ---------------------------------------------------------------- 4. identity without path spelling


def test_config_hash_does_not_depend_on_how_paths_are_spelt(tmp_path, monkeypatch):
    assert config_hash(RunConfig(model="dit-tiny")) == "55333f7343d8"  # unchanged for plain configs
    # an entry's revision enters: DiM-Teng's official schedule (revision 1) names new runs (before: 39f72e839f38)
    assert config_hash(RunConfig(model="dim-teng-tiny")) == "704f6e9d3779"
    teacher = tmp_path / "runs" / "teacher"
    RunConfig(model="pixart-tiny", space="pixel", steps=2).save(teacher)
    monkeypatch.chdir(tmp_path)

    def student(path):
        return RunConfig(model="t2md-tiny", space="pixel", distill=DistillConfig(teacher=str(path)))

    assert config_hash(student(teacher)) == config_hash(student("runs/teacher"))
    assert config_hash(student(teacher)) == config_hash(student(tmp_path / "runs" / ".." / "runs" / "teacher"))
    assert config_hash(RunConfig(**TINY, init_from="runs/teacher")) == config_hash(
        RunConfig(**TINY, init_from=str(teacher))
    )
    other = tmp_path / "runs" / "other"
    RunConfig(model="pixart-tiny", space="pixel", steps=3).save(other)  # another teacher: another student
    assert config_hash(student(other)) != config_hash(student(teacher))


def test_init_from_resumes_from_another_working_directory(finished, tmp_path, monkeypatch):
    monkeypatch.chdir(finished)
    runner = CliRunner()
    args = [*CLI_TINY, "--init-from", "straight4", "--out", str(tmp_path / "run")]
    assert runner.invoke(app, [*args, "--steps", "2"]).exit_code == 0
    monkeypatch.chdir(tmp_path)
    args[args.index("straight4")] = str(finished / "straight4")
    result = runner.invoke(app, [*args, "--steps", "3", "--resume"])
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(finished)  # the library resolves too: config.json names the folder absolutely
    Trainer(RunConfig(**TINY, steps=1, init_from="straight4"), tmp_path / "lib")
    assert RunConfig.load(tmp_path / "lib").init_from == str(finished / "straight4")


# ---------------------------------------------------------------- 5. threads


def test_threads_option_sets_torch_threads(finished):
    runner = CliRunner()
    result = runner.invoke(
        app, ["sample", "--run", str(finished / "straight4"), "--steps", "2", "--n", "2", "--threads", "2"]
    )
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 2
    torch.set_num_threads(3)
    result = runner.invoke(app, ["sample", "--run", str(finished / "straight4"), "--steps", "2", "--n", "2"])
    assert result.exit_code == 0 and torch.get_num_threads() == 1  # the default


# ---------------------------------------------------------------- 6. one-line errors


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--set", "depth=abc"], "--set depth=abc: depth expects an integer (dim-teng-tiny has depth=5), got 'abc'"),
        (["--set", "dpth=3"], "--set dpth=3: dim-teng-tiny: unknown option(s) ['dpth']"),
        (["--batch", "0"], "--batch must be at least 1, got 0"),
        (["--batch", "-1"], "--batch must be at least 1, got -1"),
        (["--steps", "0"], "--steps must be at least 1, got 0"),
        (["--threads", "0"], "--threads must be at least 1, got 0"),
        (["--device", "tpu"], "--device tpu: not a device"),
        pytest.param(
            ["--device", "cuda"],
            "--device cuda: PyTorch sees no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here"),
        ),
    ],
)
def test_bad_training_input_is_one_line(tmp_path, args, expected):
    result = CliRunner().invoke(app, [*CLI_TINY, "--steps", "2", *args, "--out", str(tmp_path / "run")])
    assert expected in _error_line(result)
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize("command", ["sample", "fid"])
@pytest.mark.parametrize("device", ["tpu", "cuda"])
def test_bad_device_for_sampling_and_scoring_is_one_line(finished, command, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is here")
    result = CliRunner().invoke(app, [command, "--run", str(finished / "straight4"), "--device", device])
    assert f"--device {device}:" in _error_line(result)


def test_non_finite_loss_is_one_line(tmp_path):
    result = CliRunner().invoke(
        app, [*CLI_TINY, "--lr", "1e30", "--steps", "12", "--ckpt-every", "1", "--out", str(tmp_path / "run")]
    )
    line = _error_line(result)
    assert "at step" in line and "last good checkpoint" in line and "lower --lr" in line


def test_weights_of_another_model_name_both_models(finished, tmp_path):
    runner = CliRunner()
    args = ["train", "-m", "dit-tiny", "--space", "pixel", "--steps", "1", "--batch", "4"]
    line = _error_line(
        runner.invoke(app, [*args, "--init-from", str(finished / "straight4"), "--out", str(tmp_path / "dit")])
    )
    assert "holds weights of dim-teng-tiny, which do not fit dit-tiny" in line
    # resume: a folder whose checkpoints were saved by another model than its config asks for
    run = tmp_path / "run"
    shutil.copytree(finished / "straight4", run)
    saved = RunConfig.load(run)
    RunConfig.from_dict({**saved.to_dict(), "overrides": {"hidden_size": 32}}).save(run)
    line = _error_line(
        runner.invoke(app, [*CLI_TINY, "--steps", "4", "--set", "hidden_size=32", "--out", str(run), "--resume"])
    )
    assert "holds weights of dim-teng-tiny, which do not fit dim-teng-tiny --set hidden_size=32" in line
    line = _error_line(runner.invoke(app, ["sample", "--run", str(run), "--steps", "2", "--n", "2"]))
    assert "which do not fit dim-teng-tiny --set hidden_size=32" in line


def test_download_offline_is_one_line_with_url_and_place(tmp_path, monkeypatch):
    def offline(url, filename):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(data_module.urllib.request, "urlretrieve", offline)
    line = _error_line(CliRunner().invoke(app, ["data", "download", "cifar10", "--root", str(tmp_path / "data")]))
    assert data_module.CIFAR10_URL in line and str(tmp_path / "data" / "cifar-10-python.tar.gz") in line
    assert "Name or service not known" in line
    assert not list((tmp_path / "data").iterdir())  # no partial file left behind


# ---------------------------------------------------------------- 7. --debug


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    runner = CliRunner()
    args = [*CLI_TINY, "--steps", "0", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, ["--debug", *args])
    assert result.exit_code == 1 and isinstance(result.exception, UserError)
    monkeypatch.setenv("MAMBABENCH_DEBUG", "1")
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and isinstance(result.exception, UserError)
    monkeypatch.setenv("MAMBABENCH_DEBUG", "0")
    assert "--steps must be at least 1" in _error_line(runner.invoke(app, args))


def test_library_errors_keep_their_types(tmp_path):
    with pytest.raises(UserError, match="--batch must be at least 1"):
        train(RunConfig(**{**TINY, "batch": 0}, steps=1), tmp_path / "run")


def test_a_bug_is_not_dressed_as_a_user_error(finished, monkeypatch):
    """Anything but a UserError is a bug of ours: it keeps its exception (a traceback, exit 1), no red line."""
    import ablations.generate

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(ablations.generate, "generate", broken)
    result = CliRunner().invoke(app, ["sample", "--run", str(finished / "straight4")])
    assert result.exit_code == 1 and isinstance(result.exception, ZeroDivisionError)
    assert "error:" not in result.output

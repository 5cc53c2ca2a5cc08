"""End-to-end tests of the ``fastfa`` command line: the happy path of every command.

Most tests call :func:`fastfa.cli.main` in-process through click's ``CliRunner``; a few run
real subprocesses (``python -m fastfa`` and the ``fastfa`` console script) to check what a
user's shell sees: exit statuses, stdout against stderr, the program name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import fastfa
from fastfa import kernel_cache
from fastfa.cli import main
from fastfa.datasets import default_dataset_path, make_teacher

#: click >= 8.2 always keeps stderr apart (``result.stderr``); older versions need ``mix_stderr=False``
CLICK_SPLITS_STDERR = tuple(int(p) for p in version("click").split(".")[:2]) >= (8, 2)
TINY = ["--hidden", "16", "--epochs", "2"]
COMMANDS = [
    ["train"],
    ["evaluate"],
    ["rules"],
    ["info"],
    ["data"],
    ["data", "mnist"],
    ["data", "csv"],
    ["data", "npz"],
    ["data", "digits"],
    ["data", "teacher"],
]
PER_EPOCH = ("train_loss", "train_error", "test_loss", "test_error", "epoch", "lr", "seconds")


def make_runner():
    return CliRunner() if CLICK_SPLITS_STDERR else CliRunner(mix_stderr=False)


def cli(*args):
    """Run ``fastfa ARGS`` in-process; returns click's ``Result`` (exceptions propagate)."""
    return make_runner().invoke(main, [str(a) for a in args], prog_name="fastfa", catch_exceptions=False)


def ok(result):
    """Assert a clean success: status 0, no traceback; returns the result."""
    assert result.exit_code == 0, (
        f"status {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


def fastfa_process(*args, script=None, **kwargs):
    """Run the command line in a real subprocess: ``python -m fastfa`` or the given console script."""
    command = [script] if script else [sys.executable, "-m", "fastfa"]
    kwargs.setdefault("env", {**os.environ, "COLUMNS": "82"})  # help 80 wide, as in CliRunner
    return subprocess.run(
        command + [str(a) for a in args], capture_output=True, text=True, timeout=120, **kwargs
    )


def epoch_lines(text):
    return [line for line in text.splitlines() if line.startswith("epoch ")]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A small linear teacher regression dataset (30 features, 10 targets)."""
    return make_teacher("linear", tmp_path_factory.mktemp("data") / "teacher.h5", n_train=2000, n_test=400)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A 3-epoch run on the bundled digits with two hidden layers, written with ``-o``."""
    out = tmp_path_factory.mktemp("runs") / "run.h5"
    result = ok(
        cli("train", "--hidden", "16,8", "--epochs", "3", "--seed", "7", "--lr", "0.03", "-o", out, "-q")
    )
    assert result.stdout == "" and result.stderr == ""
    return out


# ------------------------------------------------------------------ top level


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    result = ok(cli(flag))
    assert result.stdout.strip() == f"fastfa, version {fastfa.__version__}"


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("command", [[]] + COMMANDS, ids=lambda c: "-".join(c) or "fastfa")
def test_help_has_usage_and_an_example(command, flag):
    result = ok(cli(*command, flag))
    text = result.stdout
    assert text.startswith(f"Usage: fastfa {' '.join(command)}".rstrip() + " ")
    assert "Example" in text
    assert f"fastfa {' '.join(command)}".strip() in text.split("Example", 1)[1]
    assert result.stderr == ""


@pytest.mark.parametrize("command", [[], ["data"]], ids=["fastfa", "data"])
def test_group_without_command_shows_help(command):
    result = ok(cli(*command))
    assert result.stdout.startswith("Usage: fastfa") and "Commands:" in result.stdout
    assert result.stderr == ""


# ---------------------------------------------------------------------- rules


def test_rules_text():
    result = ok(cli("rules"))
    names = [line.split()[0] for line in result.stdout.splitlines() if line and not line.startswith(" ")]
    assert {"bp", "fa", "dfa"} <= set(names)
    assert names == sorted(names)
    assert "Lillicrap" in result.stdout and "devices: cpu" in result.stdout


def test_rules_json():
    result = ok(cli("rules", "--json"))
    rules = json.loads(result.stdout)
    by_name = {r["name"]: r for r in rules}
    assert {"bp", "fa", "dfa", "usf", "frsf", "brsf", "shallow"} <= set(by_name)
    for rule in rules:
        assert set(rule) == {"name", "summary", "reference", "devices", "options", "compiled"}
        assert "cpu" in rule["devices"] and rule["summary"] and rule["compiled"] == []  # the built-ins
    assert "feedback_scale" in by_name["fa"]["options"]


# ---------------------------------------------------------------------- train


def test_train_bundled_digits():
    result = ok(cli("train", *TINY))
    lines = epoch_lines(result.stdout)
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    assert all("err" in line and "test loss" in line and "angle upd" in line for line in lines)
    # nothing on stderr, but the one-line notice of a first run's compile (kernel_cache.NOTICE)
    assert result.stderr.replace(kernel_cache.NOTICE + "\n", "") == ""


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "usf", "frsf", "brsf", "shallow"])
def test_train_every_rule(rule):
    result = ok(cli("train", "--rule", rule, "--hidden", "8", "--epochs", "1", "--json"))
    summary = json.loads(result.stdout)
    assert summary["config"]["rule"] == rule
    assert np.isfinite(summary["final"]["train_loss"])


def test_train_teacher_regression(teacher, tmp_path):
    out = tmp_path / "reg.h5"
    result = ok(cli("train", teacher, "--hidden", "16", "--epochs", "3", "--lr", "0.005", "-o", out))
    lines = epoch_lines(result.stdout)
    assert len(lines) == 3
    assert all("err" not in line for line in lines)  # no error rate for regression
    with h5py.File(out, "r") as f:
        loss = f["history/train_loss"][()]
        assert f.attrs["task"] == "regression"
        assert list(f.attrs["sizes"]) == [30, 16, 10]
        assert np.all(np.isfinite(f["history/test_loss"][()]))
    assert loss[-1] < loss[0]


def test_train_json(tmp_path):
    out = tmp_path / "j.h5"
    result = ok(cli("train", *TINY, "--json", "-o", out))
    summary = json.loads(result.stdout)  # stdout holds the JSON document and nothing else
    assert len(epoch_lines(result.stderr)) == 2  # the per-epoch lines moved to stderr
    assert summary["out"] == str(out)
    assert summary["sizes"] == [64, 16, 10]
    assert summary["config"]["hidden"] == [16] and summary["config"]["epochs"] == 2
    assert summary["dataset"] == str(default_dataset_path())
    history = summary["history"]
    assert history["epoch"] == [1, 2]
    for key in PER_EPOCH:
        assert len(history[key]) == 2, key
        assert summary["final"][key] == history[key][-1]
    assert len(history["update_angle"]) == 2 and len(history["update_angle"][0]) == 1


def test_train_json_quiet():
    result = ok(cli("train", *TINY, "--json", "--quiet"))
    assert result.stderr == ""
    assert json.loads(result.stdout)["final"]["epoch"] == 2


def test_train_quiet(tmp_path):
    out = tmp_path / "q.h5"
    result = ok(cli("train", *TINY, "--quiet", "-o", out))
    assert result.stdout == "" and result.stderr == ""
    assert out.exists()


def test_train_overwrite(tmp_path):
    out = tmp_path / "o.h5"
    ok(cli("train", "--hidden", "4", "--epochs", "1", "-q", "-o", out))
    ok(cli("train", "--hidden", "6", "--epochs", "1", "-q", "-o", out, "--overwrite"))
    with h5py.File(out, "r") as f:
        assert list(f.attrs["sizes"]) == [64, 6, 10]
    assert [p.name for p in tmp_path.iterdir()] == ["o.h5"]  # no temporary files left


def test_train_in_memory_matches_streaming(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    ok(cli("train", *TINY, "-q", "-o", a, "--chunk-rows", "300"))
    ok(cli("train", *TINY, "-q", "-o", b, "--chunk-rows", "300", "--in-memory"))
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for name in ("model/W0", "model/W1", "model/b0", "model/b1", "optimizer/state"):
            np.testing.assert_array_equal(fa[name][()], fb[name][()], err_msg=name)


# ------------------------------------------------------------------ run files


def test_run_file_contents(digits_run):
    with h5py.File(digits_run, "r") as f:
        attrs = f.attrs
        assert attrs["format"] == "fastfa-run"
        assert bool(attrs["complete"]) and int(attrs["epoch"]) == 3
        assert json.loads(attrs["progress"]) == {}
        assert list(attrs["sizes"]) == [64, 16, 8, 10]
        config = json.loads(attrs["config"])
        assert config["seed"] == 7 and config["lr"] == 0.03 and config["hidden"] == [16, 8]
        assert config["rule"] == "fa" and config["epochs"] == 3
        versions = json.loads(attrs["versions"])
        assert versions["fastfa"] == fastfa.__version__
        assert {"numpy", "numba", "h5py", "python"} <= set(versions)
        assert attrs["dataset"] == str(default_dataset_path())
        history = f["history"]
        assert history["epoch"][()].tolist() == [1, 2, 3]
        for key in ("train_loss", "train_error", "test_loss", "test_error"):
            values = history[key][()]
            assert values.shape == (3,), key
            assert np.all(np.isfinite(values)), key
        assert np.all((history["test_error"][()] >= 0) & (history["test_error"][()] <= 1))
        for key in ("update_angle", "feedback_angle"):
            angles = history[key][()]
            assert angles.shape == (3, 2), key  # epochs x hidden layers
            assert np.all((angles >= 0) & (angles <= 180)), key
        assert f["model/W0"].shape == (64, 16) and f["model/W2"].shape == (8, 10)
        assert f["model/b1"].shape == (8,)
        assert "B0" in f["feedback"] and f["optimizer/state"].shape[0] == 2


def test_info_run(digits_run):
    result = ok(cli("info", digits_run))
    text = result.stdout
    assert text.startswith(f"run ({digits_run}): rule fa, 64-16-8-10 tanh, classification")
    assert "3/3 (complete)" in text and "seed 7" in text and "test_error" in text
    assert "update_angle" in text and "feedback_angle" in text
    assert "  trained   on cpu, " in text and f"threads; fastfa {fastfa.__version__}, numba" in text
    desc = json.loads(ok(cli("info", digits_run, "--json")).stdout)
    assert desc["kind"] == "run" and desc["epoch"] == 3 and desc["complete"] is True
    assert desc["config"]["seed"] == 7 and desc["versions"]["fastfa"] == fastfa.__version__
    assert len(desc["history"]["test_loss"]) == 3
    assert "lines" not in desc


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory):
    """A 3-epoch run on the bundled digits holding out a fifth of the training rows for validation."""
    out = tmp_path_factory.mktemp("runs") / "valid.h5"
    ok(cli("train", "--hidden", "8", "--epochs", "3", "--valid-fraction", "0.2", "-o", out, "-q"))
    return out


def test_info_run_with_validation(valid_run):
    with h5py.File(valid_run, "r") as f:
        best = int(f["best"].attrs["epoch"])
        final_test = json.loads(f.attrs["final_test"])
    text = ok(cli("info", valid_run)).stdout
    assert "valid_loss  last" in text and "valid_error last" in text and "test_error" not in text
    assert f"  selected  best epoch {best} (lowest validation error, then loss); no early stop" in text
    assert f"  final test loss {final_test['loss']:.4g}, error {100 * final_test['error']:.4g}%" in text
    assert f"(best model, epoch {best}, 539 rows)" in text
    desc = json.loads(ok(cli("info", valid_run, "--json")).stdout)
    assert desc["best_epoch"] == best and desc["stopped_early"] is False
    assert desc["final_test"] == final_test and final_test["model"] == "best"
    plain = json.loads(ok(cli("info", default_dataset_path(), "--json")).stdout)
    assert "best_epoch" not in plain  # a dataset has no selection


def test_info_run_without_validation_selects_nothing(digits_run):
    text = ok(cli("info", digits_run)).stdout
    assert "selected" not in text and "final test" not in text and "valid_" not in text
    desc = json.loads(ok(cli("info", digits_run, "--json")).stdout)
    assert desc["best_epoch"] is None and desc["stopped_early"] is False and desc["final_test"] is None


def test_info_csv_to_stdout(digits_run, valid_run):
    lines = ok(cli("info", digits_run, "--csv")).stdout.splitlines()
    assert lines[0] == (
        "epoch,lr,train_loss,train_error,test_loss,test_error,seconds,"
        "update_angle_1,update_angle_2,feedback_angle_1,feedback_angle_2,norm_ratio_1,norm_ratio_2"
    )
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]
    with h5py.File(digits_run, "r") as f:
        for row, line in enumerate(lines[1:]):
            cells = dict(zip(lines[0].split(","), map(float, line.split(",")), strict=True))
            assert cells["test_error"] == f["history/test_error"][row]  # exact: shortest round-trip text
            assert cells["feedback_angle_2"] == f["history/feedback_angle"][row, 1]
    assert ok(cli("info", digits_run, "--csv", "-")).stdout.splitlines() == lines
    header = ok(cli("info", valid_run, "--csv", "-")).stdout.splitlines()[0]
    assert header == (
        "epoch,lr,train_loss,train_error,valid_loss,valid_error,seconds,"
        "update_angle_1,feedback_angle_1,norm_ratio_1"
    )


def test_info_csv_to_a_file(digits_run, tmp_path):
    target = tmp_path / "history.csv"
    result = ok(cli("info", digits_run, "--csv", target))
    assert result.stdout == "" and "3 epochs written to" in result.stderr
    text = target.read_text()
    assert text == ok(cli("info", digits_run, "--csv")).stdout
    target.write_text("keep me\n")
    result = cli("info", digits_run, "--csv", target)
    assert result.exit_code == 1 and target.read_text() == "keep me\n"
    assert result.stderr.strip() == f"Error: {target} exists; pass --overwrite to replace it"
    ok(cli("info", digits_run, "--csv", target, "--overwrite"))
    assert target.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]  # no temporary files left
    result = cli("info", digits_run, "--csv", tmp_path / "nowhere" / "h.csv")
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1


def test_info_csv_of_a_dataset_is_one_line_error(teacher, tmp_path):
    target = tmp_path / "h.csv"
    for args in (["--csv"], ["--csv", target]):
        result = cli("info", teacher, *args)
        assert result.exit_code == 1 and result.stdout == ""
        assert (
            result.stderr.strip()
            == f"Error: {teacher}: not a run file; --csv writes the per-epoch history of a run"
        )
    assert not target.exists()
    result = cli("info", tmp_path / "missing.h5", "--csv")
    assert (
        result.exit_code == 1 and result.stderr.strip() == f"Error: {tmp_path / 'missing.h5'}: no such file"
    )


def test_plot_runs_with_and_without_test_curves(valid_run, digits_run, tmp_path, monkeypatch):
    """A run with validation data has valid curves and one final test marker instead of test curves."""
    pytest.importorskip("matplotlib")
    import fastfa.plots

    labels = []
    real_save = fastfa.plots.save

    def save(fig, out):
        labels.extend(ax.get_legend_handles_labels()[1] for ax in fig.axes)
        real_save(fig, out)

    monkeypatch.setattr(fastfa.plots, "save", save)
    ok(cli("plot", valid_run, "-o", tmp_path / "valid.png"))
    assert labels[0] == ["fa train", "fa valid", "fa test (selected)"]
    assert labels[1] == ["fa train", "fa valid", "fa test (selected)"]
    labels.clear()
    ok(cli("plot", digits_run, "-o", tmp_path / "test.png"))
    assert labels[0] == ["fa train", "fa test"] and labels[1] == ["fa train", "fa test"]
    assert (tmp_path / "valid.png").stat().st_size > 0 and (tmp_path / "test.png").stat().st_size > 0


def test_info_dataset(teacher):
    result = ok(cli("info", teacher))
    assert result.stdout.startswith(f"dataset 'teacher-linear' ({teacher})")
    assert "train     2000 rows" in result.stdout and "test      400 rows" in result.stdout
    assert "x_scale" not in result.stdout  # float inputs are not scaled
    desc = json.loads(ok(cli("info", teacher, "--json")).stdout)
    assert desc == {
        "kind": "dataset",
        "name": "teacher-linear",
        "task": "regression",
        "n_features": 30,
        "n_outputs": 10,
        "n_classes": None,
        "x_scale": None,
        "source": desc["source"],
        "splits": {"train": 2000, "test": 400},
    }


def test_info_bundled_digits():
    desc = json.loads(ok(cli("info", default_dataset_path(), "--json")).stdout)
    assert desc["n_classes"] == 10 and desc["x_scale"] == 1 / 16
    assert desc["splits"] == {"train": 1258, "test": 539}


def test_evaluate(digits_run):
    data = default_dataset_path()
    text = ok(cli("evaluate", digits_run, data)).stdout.splitlines()
    assert [line.split()[0] for line in text] == ["train", "test"]
    assert "accuracy" in text[1]
    result = json.loads(ok(cli("evaluate", digits_run, data, "--json", "--split", "test")).stdout)
    assert result["task"] == "classification" and set(result["results"]) == {"test"}
    test = result["results"]["test"]
    assert test["rows"] == 539
    with h5py.File(digits_run, "r") as f:  # the run's last evaluation, recomputed
        assert test["loss"] == pytest.approx(f["history/test_loss"][-1], rel=1e-12)
        assert test["error"] == pytest.approx(f["history/test_error"][-1], rel=1e-12)
    only = ok(cli("evaluate", digits_run, data, "--split", "test")).stdout.splitlines()
    assert len(only) == 1 and only[0].startswith("test ")


def test_evaluate_regression(teacher, tmp_path):
    out = tmp_path / "r.h5"
    ok(cli("train", teacher, "--hidden", "8", "--epochs", "1", "--lr", "0.005", "-q", "-o", out))
    result = json.loads(ok(cli("evaluate", out, teacher, "--json")).stdout)
    assert result["task"] == "regression" and set(result["results"]) == {"train", "test"}
    assert "accuracy" not in ok(cli("evaluate", out, teacher)).stdout


def test_data_teacher_then_train(tmp_path):
    data = tmp_path / "nl.h5"
    result = ok(cli("data", "teacher", "--kind", "nonlinear", "-o", data, "--n-train", 300, "--n-test", 50))
    assert result.stdout.startswith(f"wrote {data}: teacher-nonlinear")
    ok(cli("train", data, "--hidden", "8", "--epochs", "1", "--lr", "0.005", "-q"))


def test_data_digits_roundtrip(tmp_path):
    data = tmp_path / "d.h5"
    ok(cli("data", "digits", "-o", data))
    a = json.loads(ok(cli("info", data, "--json")).stdout)
    b = json.loads(ok(cli("info", default_dataset_path(), "--json")).stdout)
    assert a == b


# ---------------------------------------------------------------- subprocesses


def test_python_m_fastfa_matches_cli():
    for args in (["--help"], ["train", "-h"], ["rules"], ["--version"]):
        done = fastfa_process(*args)
        assert done.returncode == 0, done.stderr
        assert done.stdout == cli(*args).stdout, args
        assert done.stderr == ""


def test_python_m_fastfa_errors_like_cli():
    done = fastfa_process("train", "--rule", "nope")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: unknown rule 'nope'")
    result = make_runner().invoke(main, ["train", "--rule", "nope"], prog_name="fastfa")
    assert result.exit_code == 1 and result.stderr == done.stderr


def test_python_m_fastfa_train_and_evaluate(tmp_path, teacher):
    out = tmp_path / "p.h5"
    done = fastfa_process(
        "train", teacher, "--hidden", "8", "--epochs", "2", "--lr", "0.005", "-o", out, "--json"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["history"]["epoch"] == [1, 2] and len(epoch_lines(done.stderr)) == 2
    done = fastfa_process("evaluate", out, teacher, "--split", "test", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"]["test"]["loss"] == pytest.approx(summary["final"]["test_loss"])
    done = fastfa_process("info", out)
    assert done.returncode == 0 and done.stdout.startswith(f"run ({out}): rule fa, 30-8-10")


@pytest.mark.skipif(shutil.which("fastfa") is None, reason="the fastfa console script is not on PATH")
def test_console_script(tmp_path):
    script = shutil.which("fastfa")
    done = fastfa_process("--version", script=script)
    assert done.returncode == 0 and done.stdout.strip() == f"fastfa, version {fastfa.__version__}"
    done = fastfa_process("rules", "--json", script=script)
    assert done.returncode == 0 and "fa" in {r["name"] for r in json.loads(done.stdout)}
    done = fastfa_process("train", *TINY, "-q", "-o", "s.h5", script=script, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    assert (tmp_path / "s.h5").exists()
    done = fastfa_process("train", "--epochs", "0", script=script)
    assert done.returncode == 1 and done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1
    done = fastfa_process("info", "s.h5", script=script, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("run (s.h5): rule fa, 64-16-10")

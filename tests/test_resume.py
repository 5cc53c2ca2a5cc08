"""Checkpoints and exact resume of ``fastfa train`` under SIGKILL, SIGINT and SIGTERM.

A reference run A trains without interruption. The same training then runs as a real
subprocess that is stopped in the middle of an epoch (after its first checkpoint exists)
and resumed with ``--resume``; the final weights, biases, feedback matrices, optimizer
state, step counter, generator state and history must equal A's bit for bit.

The dataset is synthetic and big enough (48,000 rows, 5 chunks) that an epoch of the
64-256-10 network takes about half a second on two cores; a signal sent a quarter of the
reference run's epoch time after the first checkpoint appears lands early in an epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib.metadata import version

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from fastfa.cli import main
from fastfa.datasets import write_dataset

CLICK_SPLITS_STDERR = tuple(int(p) for p in version("click").split(".")[:2]) >= (8, 2)
ROWS, FEATURES, CLASSES = 48_000, 64, 10
EPOCHS = 3
SETTINGS = [
    "--hidden",
    "256",
    "--epochs",
    str(EPOCHS),
    "--lr",
    "0.01",
    "--batch-size",
    "32",
    "--chunk-rows",
    "10000",
    "--seed",
    "3",
]
#: everything but the wall-clock times must match bit for bit
STATE_ATTRS = ("step", "epoch", "rng_state", "config", "sizes", "task", "complete", "progress", "chunk_rows")


def cli(*args):
    runner = CliRunner() if CLICK_SPLITS_STDERR else CliRunner(mix_stderr=False)
    return runner.invoke(main, [str(a) for a in args], prog_name="fastfa", catch_exceptions=False)


def start(*args, **kwargs):
    """``python -m fastfa ARGS`` as a running subprocess."""
    return subprocess.Popen(
        [sys.executable, "-m", "fastfa", *[str(a) for a in args]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(path, proc, timeout=120):
    """Wait until ``path`` exists (its first checkpoint: written atomically after epoch 1)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training ended (status {proc.returncode}) before {path.name} appeared:\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.005)


def stop_mid_epoch(proc, path, signum, pause):
    """Send ``signum`` ``pause`` seconds into the second epoch; returns ``(status, stdout, stderr)``."""
    wait_for(path, proc)
    time.sleep(pause)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def read_state(path):
    """``(arrays, attrs)`` of a run file: every dataset by path, and the root attributes that matter."""
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
        attrs = {key: f.attrs[key] for key in STATE_ATTRS}
    return arrays, attrs


def assert_same_run(path, reference):
    """``path`` holds exactly the state of the reference run (bitwise), wall-clock times aside."""
    arrays, attrs = read_state(path)
    ref_arrays, ref_attrs = read_state(reference)
    assert sorted(arrays) == sorted(ref_arrays)
    for name, ref in ref_arrays.items():
        if name == "history/seconds":
            continue
        got = arrays[name]
        assert got.dtype == ref.dtype and got.shape == ref.shape, name
        assert got.tobytes() == ref.tobytes(), f"{name} differs from the uninterrupted run"
    for key, ref in ref_attrs.items():
        assert np.array_equal(attrs[key], ref), f"attribute {key}: {attrs[key]!r} != {ref!r}"
    assert {"model/W0", "model/W1", "model/b0", "model/b1", "feedback/B0", "optimizer/state"} <= set(arrays)


def no_temp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A learnable synthetic classification task: labels from a noisy random linear teacher."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((ROWS + 1000, FEATURES)).astype(np.float32)
    y = np.argmax(
        x @ rng.standard_normal((FEATURES, CLASSES)) + rng.standard_normal((len(x), CLASSES)), axis=1
    )
    path = tmp_path_factory.mktemp("data") / "synthetic.h5"
    return write_dataset(
        path,
        {"train": (x[:ROWS], y[:ROWS]), "test": (x[ROWS:], y[ROWS:])},
        name="synthetic",
        task="classification",
        n_classes=CLASSES,
    )


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """Run A: the same training, never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "a.h5"
    result = cli("train", data, *SETTINGS, "-o", out, "-q")
    assert result.exit_code == 0, result.stderr
    with h5py.File(out, "r") as f:
        assert int(f.attrs["epoch"]) == EPOCHS and bool(f.attrs["complete"])
    return out


@pytest.fixture(scope="module")
def pause(reference):
    """Seconds to wait after a checkpoint appears: a quarter of the shortest reference epoch."""
    with h5py.File(reference, "r") as f:
        seconds = float(np.min(f["history/seconds"][()]))
    return min(max(0.25 * seconds, 0.01), 0.5)


def kill_then_resume(data, settings, out, pause, epochs):
    """``fastfa train DATA SETTINGS -o OUT`` killed with SIGKILL ``pause`` seconds after its first
    checkpoint, which must hold whole epochs short of ``epochs``; then ``--resume`` (its result)."""
    proc = start("train", data, *settings, "-o", out)
    wait_for(out, proc)
    time.sleep(pause)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with h5py.File(out, "r") as f:  # the last checkpoint: a whole epoch, and not the last one
        assert 1 <= int(f.attrs["epoch"]) < epochs and not f.attrs["complete"]
        assert json.loads(f.attrs["progress"]) == {}
    done = subprocess.run(
        [sys.executable, "-m", "fastfa", "train", str(data), "-o", str(out), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_sigkill_then_resume_is_exact(data, reference, pause, tmp_path):
    out = tmp_path / "b.h5"
    done = kill_then_resume(data, SETTINGS, out, pause, EPOCHS)
    assert "Traceback" not in done.stdout + done.stderr
    epochs = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("epoch")]
    assert epochs and epochs[-1] == f"{EPOCHS}/{EPOCHS}"
    assert_same_run(out, reference)


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
def test_signal_saves_mid_epoch_checkpoint_and_resume_is_exact(
    data, reference, pause, tmp_path, signum, status
):
    # On a loaded machine the signal can land before the next epoch's first slice is done (a
    # checkpoint at row 0, which resumes exactly too): then stop a fresh run later in its epoch.
    for attempt in range(3):
        out = tmp_path / f"c{attempt}.h5"
        proc = start("train", data, *SETTINGS, "-o", out)
        code, stdout, stderr = stop_mid_epoch(proc, out, signum, pause * 2**attempt)
        assert code == status, stderr
        assert "Traceback" not in stdout + stderr
        lines = stderr.splitlines()
        assert len(lines) == 1, stderr
        assert no_temp_files(tmp_path) == []
        with h5py.File(out, "r") as f:
            done = int(f.attrs["epoch"])  # whole epochs in the checkpoint
            assert 1 <= done < EPOCHS and not f.attrs["complete"]
            progress = json.loads(f.attrs["progress"])
        assert progress, "the checkpoint must record the position inside the epoch"
        if progress["rows_done"] > 0:
            break
    assert 0 < progress["rows_done"] < ROWS and progress["epoch_seed"] >= 0
    assert lines[0] == (
        f"Interrupted: checkpoint at epoch {done + 1}, {progress['rows_done']}/{ROWS} rows saved to {out}; "
        f"continue with --out {out} --resume"
    )
    assert [line.split()[1] for line in stdout.splitlines()] == [f"{e}/{EPOCHS}" for e in range(1, done + 1)]
    result = cli("train", data, "-o", out, "--resume", "-q")
    assert result.exit_code == 0, result.stderr
    assert_same_run(out, reference)
    assert no_temp_files(tmp_path) == []


def test_sigint_without_out_saves_nothing(data, pause, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = start("train", data, *SETTINGS, cwd=tmp_path, env=env)
    first = proc.stdout.readline()  # printed when epoch 1 ends
    assert first.startswith(f"epoch   1/{EPOCHS}"), first + proc.stderr.read()
    time.sleep(pause)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.count("\n") == 1 and err.startswith("Interrupted at epoch ") and "nothing saved" in err
    assert list(tmp_path.iterdir()) == []


def test_resume_of_complete_run_is_harmless(data, reference, tmp_path):
    out = tmp_path / "done.h5"
    shutil.copyfile(reference, out)
    before = out.read_bytes()
    result = cli("train", data, "-o", out, "--resume")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "already complete (3/3 epochs)" in result.stderr
    assert out.read_bytes() == before
    summary = json.loads(cli("train", data, "-o", out, "--resume", "--json").stdout)
    assert summary["final"]["epoch"] == EPOCHS and len(summary["history"]["epoch"]) == EPOCHS
    assert out.read_bytes() == before


@pytest.mark.parametrize("change", [["--lr", "0.5"], ["--hidden", "32"], ["--seed", "4"], ["--rule", "bp"]])
def test_resume_refuses_changed_settings(data, reference, tmp_path, change):
    out = tmp_path / "keep.h5"
    shutil.copyfile(reference, out)
    before = out.read_bytes()
    result = cli("train", data, "-o", out, "--resume", *change)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"Error: {change[0]} (run file: ")
    assert "cannot change when resuming" in result.stderr
    assert out.read_bytes() == before


def test_resume_accepts_the_same_command_again(data, reference, tmp_path):
    """Appending --resume to the command that made the run is accepted: its values are the file's."""
    out = tmp_path / "again.h5"
    shutil.copyfile(reference, out)
    before = out.read_bytes()
    result = cli("train", data, *SETTINGS, "-o", out, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "already complete" in result.stderr
    assert out.read_bytes() == before


def test_resume_with_more_epochs_extends_the_run(tmp_path):
    """3 epochs, then ``--resume --epochs 5``, equals 5 epochs in one go (constant schedule)."""
    tiny = ["--hidden", "12", "--seed", "5", "-q"]
    whole, extended = tmp_path / "whole.h5", tmp_path / "extended.h5"
    assert cli("train", *tiny, "--epochs", "5", "-o", whole).exit_code == 0
    assert cli("train", *tiny, "--epochs", "3", "-o", extended).exit_code == 0
    assert cli("train", "-o", extended, "--resume", "--epochs", "5", "-q").exit_code == 0
    a, _ = read_state(whole)
    b, attrs = read_state(extended)
    assert int(attrs["epoch"]) == 5 and bool(attrs["complete"])
    for name in ("model/W0", "model/W1", "model/b0", "model/b1", "optimizer/state", "history/test_loss"):
        assert a[name].tobytes() == b[name].tobytes(), name

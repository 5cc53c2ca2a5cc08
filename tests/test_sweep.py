"""``fastfa sweep``: spec parsing, the two engines against plain ``fastfa train``, faults.

The grid is 2 rules x 2 seeds x 2 learning rates on the bundled digits with a 16-unit
hidden layer: small enough that a whole sweep takes seconds, including starting the
worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from fastfa.datasets import default_dataset_path
from fastfa.sweep.spec import SpecError, load_spec, run_name
from fastfa.threads import use_threads
from tests.test_cli import cli, ok

GRID = """
dataset = "{dataset}"
[base]
hidden = [16]
epochs = {epochs}
batch_size = 32
[axes]
rule = ["bp", "fa"]
seed = [0, 1]
lr = {lrs}
"""
NAMES = [f"rule-{rule}_seed-{seed}_lr-{lr}" for rule in ("bp", "fa") for seed in (0, 1) for lr in (0.05, 0.1)]


def write_spec(folder, epochs=2, lrs="[0.05, 0.1]", name="grid.toml"):
    path = Path(folder) / name
    path.write_text(GRID.format(dataset=default_dataset_path(), epochs=epochs, lrs=lrs))
    return path


def histories(folder, names=NAMES):
    """Every run's full history, keyed by run name."""
    out = {}
    for name in names:
        with h5py.File(Path(folder) / f"{name}.h5", "r") as f:
            assert f.attrs["complete"], name
            out[name] = {key: f[f"history/{key}"][()] for key in f["history"] if key != "seconds"}
    return out


def assert_same_histories(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            np.testing.assert_array_equal(a[name][key], b[name][key], err_msg=f"{name}: {key}")


# ---------------------------------------------------------------------- spec


def test_spec_expands_the_grid_in_axis_order(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    tasks = spec.tasks(tmp_path / "out")
    assert [t.name for t in tasks] == NAMES
    first = tasks[0]
    expected = {"hidden": [16], "epochs": 2, "batch_size": 32, "rule": "bp", "seed": 0, "lr": 0.05}
    assert first.settings == expected
    assert first.out == str(tmp_path / "out" / f"{NAMES[0]}.h5")
    assert Path(first.dataset) == default_dataset_path()
    assert run_name({"hidden": [128, 64], "rule_options": {"feedback_scale": 0.5}, "nesterov": True}) == (
        "hidden-128x64_rule_options-feedback_scale=0.5_nesterov-true"
    )


def test_spec_dataset_is_relative_to_the_spec(tmp_path):
    (tmp_path / "s.toml").write_text('dataset = "data/x.h5"\n[axes]\nseed = [0]\n')
    assert load_spec(tmp_path / "s.toml").dataset == str(tmp_path.resolve() / "data" / "x.h5")


BAD_SPECS = [
    ("missing", None, "no such file"),
    ("not-toml", "dataset = [", "not valid TOML"),
    ("no-dataset", "[axes]\nseed = [0]\n", "needs dataset"),
    ("top-key", 'dataset = "d.h5"\nworkers = 3\n', "unknown key(s) workers"),
    ("base-key", 'dataset = "d.h5"\n[base]\nlearning_rate = 0.1\n', "unknown setting(s) learning_rate in"),
    ("axis-key", 'dataset = "d.h5"\n[axes]\nrules = ["fa"]\n', "unknown setting(s) rules in [axes]"),
    ("axis-empty", 'dataset = "d.h5"\n[axes]\nseed = []\n', "axis 'seed' must be a non-empty list"),
    ("axis-scalar", 'dataset = "d.h5"\n[axes]\nseed = 3\n', "axis 'seed' must be a non-empty list"),
    ("both", 'dataset = "d.h5"\n[base]\nseed = 1\n[axes]\nseed = [0]\n', "seed set both in [base] and in"),
    ("threads", 'dataset = "d.h5"\nthreads_per_run = 0\n', "threads_per_run must be a positive integer"),
    ("same-name", 'dataset = "d.h5"\n[axes]\nrule = ["a b", "a_b"]\n', "share the name"),
]


@pytest.mark.parametrize("case,text,fragment", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_is_one_clear_error(case, text, fragment, tmp_path):
    path = tmp_path / "spec.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SpecError, match=None) as info:
        load_spec(path).tasks(tmp_path / "out")
    assert fragment in str(info.value)
    result = cli("sweep", path, "-o", tmp_path / "out")
    assert result.exit_code == 1 and fragment in result.stderr and "Traceback" not in result.stderr


def test_unreachable_scheduler_and_missing_dataset(tmp_path):
    pytest.importorskip("distributed")
    spec = write_spec(tmp_path)
    result = cli("sweep", spec, "--scheduler", "tcp://127.0.0.1:9", "-q")
    assert result.exit_code == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.stderr
    (tmp_path / "nodata.toml").write_text('dataset = "nowhere.h5"\n[axes]\nseed = [0]\n')
    result = cli("sweep", tmp_path / "nodata.toml", "-q")
    assert result.exit_code == 1 and "nowhere.h5: no such dataset" in result.stderr


def test_sweep_usage_errors(tmp_path):
    result = cli("sweep")
    assert result.exit_code == 1 and "missing SPEC" in result.stderr
    result = cli("sweep", "--report", tmp_path)
    assert result.exit_code == 1 and "not a sweep folder" in result.stderr
    result = cli("sweep", write_spec(tmp_path), "--workers", "0")
    assert result.exit_code == 1 and "--workers must be a positive integer" in result.stderr


# ------------------------------------------------------------------- engines


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The 2 x 2 x 2 grid through the local pool with 2 workers x 1 thread."""
    folder = tmp_path_factory.mktemp("local")
    spec = write_spec(folder)
    result = ok(cli("sweep", spec, "--workers", "2", "--threads-per-run", "1"))
    return folder, spec, result


def test_local_pool_runs_the_grid_and_summarises(local_sweep):
    folder, _, result = local_sweep
    out = folder / "grid"
    assert sorted(p.stem for p in out.glob("*.h5") if p.name != "summary.h5") == sorted(NAMES)
    assert "[8/8]" in result.stderr and "runs: 8 done, 0 running, 0 failed of 8" in result.stderr
    table = (out / "summary.md").read_text()
    assert result.stdout == table
    lines = table.splitlines()
    assert lines[0] == "| rule | lr | runs done | train_loss | train_error | test_loss | test_error |"
    assert len(lines) == 2 + 4 and all("| 2/2 |" in line for line in lines[2:])
    # mean +- std over the two seeds, read back from the run files
    runs = histories(out)
    errors = [runs[f"rule-fa_seed-{s}_lr-0.1"]["test_error"][-1] for s in (0, 1)]
    mean, std = 100 * np.mean(errors), 100 * np.std(errors, ddof=1)
    assert "| fa | 0.1 | 2/2 |" in table and f"{mean:.2f}% ± {std:.2f}%" in table
    with h5py.File(out / "summary.h5", "r") as f:
        assert [n.decode() for n in f["runs/name"][()]] == NAMES
        assert list(f["groups/done"][()]) == [2, 2, 2, 2]
        np.testing.assert_allclose(f["groups/test_error_mean"][3], np.mean(errors))
        assert "valid_error" not in f["runs"] and "valid_error_mean" not in f["groups"]
    assert ok(cli("sweep", "--report", out)).stdout == table


VALID_GRID = """
dataset = "{dataset}"
[base]
hidden = [8]
epochs = 3
valid_fraction = 0.2
[axes]
rule = ["bp", "fa"]
seed = [0, 1]
"""


def test_sweep_with_validation_reports_the_selected_models_test_error(tmp_path):
    """Runs with validation data have no test curves: the report gives their final test figures."""
    spec = tmp_path / "valid.toml"
    spec.write_text(VALID_GRID.format(dataset=default_dataset_path()))
    result = ok(cli("sweep", spec, "--workers", "2", "--threads-per-run", "1", "-q"))
    out = tmp_path / "valid"
    table = (out / "summary.md").read_text()
    assert result.stdout == table == ok(cli("sweep", "--report", out)).stdout
    lines = table.splitlines()
    header = (
        "| rule | runs done | train_loss | train_error | valid_loss | valid_error | test_loss | test_error |"
    )
    assert lines[0] == header and len(lines) >= 4
    assert "evaluated once on the test split" in table
    for rule, line in zip(("bp", "fa"), lines[2:4], strict=True):
        tests, valids = [], []
        for seed in (0, 1):
            with h5py.File(out / f"rule-{rule}_seed-{seed}.h5", "r") as f:
                assert "test_error" not in f["history"]
                final_test = json.loads(f.attrs["final_test"])
                best = int(f["best"].attrs["epoch"])
                assert final_test["model"] == "best" and final_test["epoch"] == best
                tests.append(final_test["error"])
                valids.append(f["history/valid_error"][list(f["history/epoch"][()]).index(best)])
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:2] == [rule, "2/2"]
        for cell, values in ((cells[5], valids), (cells[7], tests)):
            mean, std = 100 * np.mean(values), 100 * np.std(values, ddof=1)
            assert cell == f"{mean:.2f}% ± {std:.2f}%"
    with h5py.File(out / "summary.h5", "r") as f:
        np.testing.assert_allclose(f["groups/test_error_mean"][1], np.mean(tests))
        np.testing.assert_allclose(f["groups/valid_error_mean"][1], np.mean(valids))
        assert np.all(np.isfinite(f["runs/test_error"][()]))


def test_engines_and_plain_train_agree_exactly(local_sweep, tmp_path):
    """Local pool, a Dask LocalCluster of 2 worker processes, and `fastfa train` one run at a time."""
    pytest.importorskip("distributed")
    folder, spec, _ = local_sweep
    expected = histories(folder / "grid")
    ok(cli("sweep", spec, "--scheduler", "local", "--workers", "2", "-o", tmp_path / "dask", "-q"))
    assert_same_histories(histories(tmp_path / "dask"), expected)
    previous = __import__("numba").get_num_threads()
    try:
        use_threads(1)  # what each sweep worker does: one thread for numba and BLAS
        for name in NAMES:
            rule, seed, lr = (part.split("-", 1)[1] for part in name.split("_"))
            args = ["--rule", rule, "--seed", seed, "--lr", lr, "--hidden", "16", "--epochs", "2"]
            out = f"{tmp_path / name}.h5"
            ok(cli("train", default_dataset_path(), *args, "--threads", "1", "-q", "-o", out))
    finally:
        use_threads(previous)
    assert_same_histories(histories(tmp_path), expected)


def test_rerun_of_a_finished_sweep_computes_nothing(local_sweep):
    folder, spec, _ = local_sweep
    out = folder / "grid"
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("rule-*.h5")}
    result = ok(cli("sweep", spec, "--workers", "2"))
    assert result.stderr.count("done (earlier)") == 8
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("rule-*.h5")} == stamps


def test_rerun_after_the_spec_changed_does_not_reuse_old_runs(tmp_path):
    """Run files made with other settings are reported, not taken for the new runs."""
    ok(cli("sweep", write_spec(tmp_path, epochs=1, lrs="[0.05]"), "--workers", "1", "-q"))
    before = histories(tmp_path / "grid", NAMES[::2])
    result = cli("sweep", write_spec(tmp_path, epochs=2, lrs="[0.05]"), "--workers", "1", "-q")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: 4 of 4 runs failed")
    table = (tmp_path / "grid" / "summary.md").read_text()
    assert table.count("holds a run with other settings: epochs 1 (wanted 2)") == 4
    assert_same_histories(histories(tmp_path / "grid", NAMES[::2]), before)  # left as they were
    result = cli("sweep", tmp_path / "grid.toml", "--workers", "1", "-q", "--retry-failed")
    table = (tmp_path / "grid" / "summary.md").read_text()
    assert result.exit_code == 1 and table.count("epochs 1 (wanted 2)") == 4
    assert_same_histories(histories(tmp_path / "grid", NAMES[::2]), before)


def test_a_failing_setting_is_recorded_and_the_rest_finish(tmp_path):
    spec = write_spec(tmp_path, lrs="[0.1, -1.0]")
    result = cli("sweep", spec, "--workers", "2", "-q")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: 4 of 8 runs failed; see {tmp_path / 'grid' / 'summary.md'}"
    )
    out = tmp_path / "grid"
    good = [n.replace("0.05", "0.1") for n in NAMES[::2]]
    histories(out, good)  # all complete
    bad = [n.replace("0.05", "-1") for n in NAMES[::2]]
    for name in bad:
        record = json.loads((out / f"{name}.failed.json").read_text())
        assert "learning rate must be a number > 0" in record["error"]
        assert not (out / f"{name}.h5").exists()
    table = (out / "summary.md").read_text()
    assert "| 0/2 (2 failed) |" in table and "Failed runs:" in table
    # a rerun does not try them again unless asked to
    result = cli("sweep", spec, "--workers", "2")
    assert result.stderr.count("failed: learning rate") == 4 and result.stderr.count("(earlier)") == 8
    result = cli("sweep", spec, "--workers", "2", "--retry-failed", "-q")
    assert result.exit_code == 1 and (out / f"{bad[0]}.failed.json").exists()


def _children(pid):
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid):
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds worker processes through /proc")
@pytest.mark.parametrize("engine", [[], ["--scheduler", "local"]], ids=["local-pool", "dask"])
def test_killed_worker_runs_are_retried_and_resume(engine, tmp_path):
    """SIGKILL one worker process in the middle of a run: every run still completes, exactly."""
    if engine:
        pytest.importorskip("distributed")
    spec = write_spec(tmp_path, epochs=40, lrs="[0.05]")
    names = [n for n in NAMES if n.endswith("0.05")]
    out = tmp_path / "grid"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "fastfa", "sweep", str(spec), "--workers", "2", *engine],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and sweep.poll() is None:
        started = [p for p in out.glob("rule-*.h5")] if out.exists() else []
        workers = [p for p in _children(sweep.pid) if "spawn_main" in _cmdline(p)]
        if started and workers:
            victim = workers[0]
            os.kill(victim, signal.SIGKILL)
        time.sleep(0.02)
    stdout, stderr = sweep.communicate(timeout=300)
    assert victim is not None, f"no run was in progress to interrupt\n{stderr}"
    assert sweep.returncode == 0, stderr
    assert "runs: 4 done, 0 running, 0 failed of 4" in stderr
    killed = histories(out, names)
    assert all(len(h["epoch"]) == 40 for h in killed.values())
    # the retried runs resumed from their checkpoints: same results as an undisturbed sweep
    ok(cli("sweep", spec, "--workers", "2", "-o", tmp_path / "calm", "-q"))
    assert_same_histories(killed, histories(tmp_path / "calm", names))

"""``fastfa reproduce --quick`` for every experiment, and ``fastfa plot``.

The quick variants assert the direction of each published result: fa and bp far below
shallow on the linear task with the fa/bp angle falling below 90 degrees, the deeper
student not losing to the shallower one, fa and bp beating shallow on MNIST, dfa learning
at every depth, LeNet's sign-concordant rules ahead of fa and dfa. The MNIST experiments use
the first rows of MNIST when ``../shared/data`` has it, and the bundled digits otherwise
(LeNet's test is skipped then: it needs digits that pad to 1x32x32).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fastfa.datasets import default_dataset_path, open_dataset, read_idx, write_dataset
from fastfa.runs import read_outcome
from tests.test_cli import cli, ok

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
PNG = b"\x89PNG\r\n\x1a\n"


def has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def mnist_rows(tmp_path_factory):
    """The first 10,000 training and 2,000 test rows of MNIST, or the bundled digits."""
    files = [MNIST / f"{kind}-{part}-idx{d}-ubyte.gz" for kind in ("train", "t10k")
             for part, d in (("images", 3), ("labels", 1))]  # fmt: skip
    if not all(f.exists() for f in files):
        return default_dataset_path()
    parts = ("train", "t10k")
    images = {k: read_idx(MNIST / f"{k}-images-idx3-ubyte.gz", 0x803).reshape(-1, 784) for k in parts}
    labels = {k: read_idx(MNIST / f"{k}-labels-idx1-ubyte.gz", 0x801) for k in parts}
    path = tmp_path_factory.mktemp("mnist") / "mnist-rows.h5"
    splits = {"train": (images["train"][:10000], labels["train"][:10000]),
              "test": (images["t10k"][:2000], labels["t10k"][:2000])}  # fmt: skip
    return write_dataset(path, splits, name="mnist-rows", task="classification", x_scale=1 / 255,
                         image_shape=(28, 28))  # fmt: skip


def check_quick(name, tmp_path, *extra):
    out = tmp_path / name
    result = ok(cli("reproduce", name, "--quick", "-o", out, "-q", *extra))
    text = (out / "results.md").read_text()
    assert result.stdout == text
    assert "Claims:" in text and "- PASS:" in text and "FAIL" not in text
    assert "| network | rule |" in text
    if has_matplotlib():
        for png in out.glob("*.png"):
            assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000
        assert (out / f"{name}.png").exists()
    return out, text


def test_quick_linear(tmp_path):
    out, text = check_quick("lillicrap-linear", tmp_path)
    assert "| 30-20-10 | shallow |" in text and "not published" in text
    assert "fa/bp update angle falls" in text
    # an experiment is a sweep: its folder reports like one, and a rerun trains nothing
    assert "| rule | runs done |" in ok(cli("sweep", "--report", out)).stdout
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("rule-*.h5")}
    ok(cli("reproduce", "lillicrap-linear", "--quick", "-o", out, "-q"))
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("rule-*.h5")} == stamps


def test_quick_nonlinear(tmp_path):
    _, text = check_quick("lillicrap-nonlinear", tmp_path)
    assert text.count("student NSE") == 2


def test_quick_mnist(tmp_path, mnist_rows):
    _, text = check_quick("lillicrap-mnist", tmp_path, "--data", mnist_rows)
    assert "| 784-1000-10 | fa |" in text and "| 2.1% |" in text


def test_quick_nokland(tmp_path, mnist_rows):
    # the digits stand-in has 1,257 training rows: one epoch is too short for the deepest net
    epochs = ["--epochs", "10"] if mnist_rows == default_dataset_path() else []
    _, text = check_quick("nokland-depth", tmp_path, "--data", mnist_rows, *epochs)
    assert text.count("dfa learns") == 4


def test_quick_biotorch_lenet(tmp_path, mnist_rows):
    if mnist_rows == default_dataset_path():
        pytest.skip("needs MNIST in ../shared/data/mnist: LeNet takes 1x32x32 digits")
    out, text = check_quick("biotorch-lenet-mnist", tmp_path, "--data", mnist_rows)
    for rule in ("bp", "fa", "dfa", "usf", "brsf", "frsf"):
        assert text.count(f"| lenet-mnist | {rule} |") == 2  # the test errors and the validation curves
    assert "selected model's test error" in text and "| 0.91% |" in text
    assert "valid error at epoch 2 (end)" in text and "below fa" in text
    # the flat 28x28 rows, padded with two zero pixels each side, then the quick subset of them
    with open_dataset(mnist_rows) as flat, open_dataset(out / "mnist-rows-1x32x32-quick.h5") as images:
        assert images.image_shape == (1, 32, 32) and images.x_scale == flat.x_scale
        assert images.split("train").n_rows == 6000 and images.split("test").n_rows == 2000
        padded, original = images.split("train").read_raw()[0][:3], flat.split("train").read_raw()[0][:3]
    padded = padded.reshape(3, 32, 32)
    assert (padded[:, 2:30, 2:30] == original.reshape(3, 28, 28)).all() and padded.sum() == original.sum()
    for run in sorted(out.glob("rule-*.h5")):
        outcome = read_outcome(run)
        assert outcome["config"]["valid_fraction"] == 0.1 and outcome["config"]["milestones"] == [1, 2]
        assert "test_error" not in outcome["history"] and "valid_error" in outcome["history"]
        assert outcome["final_test"]["epoch"] == outcome["best_epoch"] and "error" in outcome["final_test"]
    # a rerun finds its runs finished (their settings hold the image shape) and trains nothing
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("rule-*.h5")}
    ok(cli("reproduce", "biotorch-lenet-mnist", "--quick", "-o", out, "-q", "--data", mnist_rows))
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("rule-*.h5")} == stamps


def test_quick_liao_normalisation(tmp_path, mnist_rows):
    if mnist_rows == default_dataset_path():
        pytest.skip("needs MNIST in ../shared/data/mnist: the network takes 1x28x28 digits")
    out, text = check_quick("liao-normalisation", tmp_path, "--data", mnist_rows)
    for variant in ("sgd", "bn", "manhattan", "bn+manhattan"):
        for rule in ("bp", "usf", "frsf", "brsf"):
            assert text.count(f"| {variant} | {rule} |") == 2  # the test errors and the validation curves
    assert "with batch norm every rule ahead of plain SGD" in text
    configs = {
        run.name: read_outcome(run)["config"] for run in out.glob("*.h5") if run.name.startswith("rule-")
    }
    assert len(configs) == 16
    bn = configs["rule-usf_net-bn+manhattan_seed-0.h5"]
    assert bn["optimizer"] == "manhattan" and bn["batch_norm"] and bn["layers"].count("+bn") == 6
    plain = configs["rule-usf_net-sgd_seed-0.h5"]
    assert plain["optimizer"] == "sgd" and "+bn" not in plain["layers"]


def test_lenet_needs_images(tmp_path):
    result = cli("reproduce", "biotorch-lenet-mnist", "--quick", "--data", default_dataset_path(),
                 "-o", tmp_path / "lenet")  # fmt: skip
    assert result.exit_code == 1 and "needs 1x32x32 images or images that pad to them" in result.stderr


def test_mnist_experiment_needs_data(tmp_path):
    result = cli("reproduce", "lillicrap-mnist", "-o", tmp_path / "m")
    assert result.exit_code == 1 and "needs MNIST: pass --data mnist.h5" in result.stderr
    result = cli("reproduce", "no-such-thing")
    assert result.exit_code == 2 and "lillicrap-linear" in result.stderr


@pytest.mark.skipif(not has_matplotlib(), reason="needs matplotlib")
def test_plot_runs(tmp_path):
    runs = []
    for rule in ("bp", "fa"):
        run = tmp_path / f"{rule}.h5"
        ok(cli("train", "--rule", rule, "--hidden", "16,16", "--epochs", "2", "-q", "-o", run))
        runs.append(run)
    result = ok(cli("plot", *runs, "-o", tmp_path / "fig.png", "--title", "digits"))
    assert result.stdout.strip() == f"wrote {tmp_path / 'fig.png'}"
    assert (tmp_path / "fig.png").read_bytes()[:8] == PNG


def test_plot_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    result = cli("plot", tmp_path / "missing.h5", "-o", tmp_path / "fig.png")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: plots need matplotlib: pip install 'fastfa[plot]'"


def test_plot_bad_inputs(tmp_path):
    result = cli("plot", tmp_path / "missing.h5", "-o", tmp_path / "fig.png")
    if has_matplotlib():
        assert result.exit_code == 1 and "missing.h5: no such file" in result.stderr
    result = cli("plot", default_dataset_path(), "-o", tmp_path / "fig.png")
    if has_matplotlib():
        assert result.exit_code == 1 and "not a fastfa run file" in result.stderr
    assert not (tmp_path / "fig.png").exists()


def test_a_second_reproduce_into_a_held_folder_fails_at_once(tmp_path):
    """The experiment's folder is held while its runs go: another writer gets one line and exit 1."""
    import subprocess
    import time

    out = tmp_path / "linear"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom fastfa.sweep.engines import sweep_folder\n"
         "with sweep_folder(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        result = cli("reproduce", "lillicrap-linear", "--quick", "-o", out)
        assert time.monotonic() - started < 30
        assert result.exit_code == 1 and str(holder.pid) in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    finally:
        holder.kill()
        holder.wait()


def test_rule_settings_replace_the_base_in_full_runs_only(tmp_path):
    from fastfa.reproduce.experiments import EXPERIMENTS
    from fastfa.reproduce.runner import build_tasks

    exp = EXPERIMENTS["biotorch-lenet-mnist"]
    full, _, _ = build_tasks(exp, "data.h5", tmp_path)
    quick, _, _ = build_tasks(exp, "data.h5", tmp_path, quick=True)
    for rule in exp.rules:
        lrs = {task.settings["lr"] for task in full if task.settings["rule"] == rule}
        assert lrs == {exp.rule_settings[rule]["lr"]}
    assert {task.settings["lr"] for task in quick} == {exp.quick["base"]["lr"]}
    assert len({task.settings["lr"] for task in full}) > 1  # the rates differ between rules


def test_quick_biotorch_lenet_cifar10_on_a_synthetic_cifar_file(tmp_path):
    """BioTorch's CIFAR-10 LeNet with its augmentation and channel standardisation, end to end on
    CIFAR-shaped noise (no CIFAR-10 in CI): every rule runs and the run files hold the settings."""
    import numpy as np

    rng = np.random.default_rng(0)
    splits = {
        split: (rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8), rng.integers(0, 10, n))
        for split, n in (("train", 600), ("test", 300))
    }
    data = write_dataset(tmp_path / "cifar-like.h5", splits, name="cifar-like", task="classification",
                         x_scale=1 / 255)  # fmt: skip
    out, text = check_quick("biotorch-lenet-cifar10", tmp_path, "--data", data)
    assert "every rule ran end to end" in text and "| 14.23% |" in text
    for run in sorted(out.glob("rule-*.h5")):
        config = read_outcome(run)["config"]
        assert (config["crop_padding"], config["flip"], config["standardize"]) == (4, True, "channel")
        assert config["layers"].startswith("conv:32:3") and config["image_shape"] == [3, 32, 32]
    result = cli("reproduce", "biotorch-lenet-cifar10", "-o", tmp_path / "c")
    assert result.exit_code == 1 and "needs cifar10: pass --data cifar10.h5" in result.stderr


def test_quick_akrout_mnist(tmp_path, mnist_rows):
    """kp's and wm's last-layer feedback falls well below fa's angle to W^T within 3 epochs."""
    if mnist_rows == default_dataset_path():
        pytest.skip("needs MNIST in ../shared/data/mnist: the digits give too few steps for the angles")
    out, text = check_quick("akrout-mnist", tmp_path, "--data", mnist_rows)
    assert "well below fa's" in text and "| 784-500-10 | kp |" in text and "| 1.55% |" in text
    for run in sorted(out.glob("rule-*.h5")):
        config = read_outcome(run)["config"]
        assert (config["batch_size"], config["shuffle"], config["activation"]) == (128, False, "logistic")
        if config["rule"] == "wm":
            assert (
                config["rule_options"]["mirror_decay"] == 0.0 and config["rule_options"]["mirror_lr"] == 1.28
            )

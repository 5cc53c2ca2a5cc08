"""The plugin author's path: a one-file rule with ``--plugin``, and the example distribution
installed into a fresh virtual environment, where ``fastfa rules`` finds it and ``fastfa
train`` trains with it."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from fastfa.rules import _runtime_rules
from tests.test_cli import cli, ok

ROOT = Path(__file__).resolve().parents[1]
ONE_FILE = ROOT / "examples" / "one_file_rule.py"
DISTRIBUTION = ROOT / "examples" / "fastfa-example-rule"
COMPILED_DISTRIBUTION = ROOT / "examples" / "fastfa-dkp"


@pytest.fixture(autouse=True)
def forget_runtime_rules():
    yield
    _runtime_rules.clear()


def test_one_file_plugin_lists_and_trains(tmp_path):
    listing = ok(cli("rules", "--plugin", ONE_FILE)).stdout
    assert "half-fa" in listing and "feedback_init=same, feedback_scale=1.0" in listing
    run = tmp_path / "half.h5"
    ok(
        cli(
            "train",
            "--plugin",
            ONE_FILE,
            "--rule",
            "half-fa",
            "--hidden",
            "16",
            "--epochs",
            "2",
            "-q",
            "-o",
            run,
        )
    )
    # resuming needs the rule again: with --plugin it continues
    ok(cli("train", "--plugin", ONE_FILE, "-o", run, "--resume", "--epochs", "3", "-q"))


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("x = 1\n", "defines no fastfa Rule"),
        ("raise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
        ("def broken(:\n", "failed to import: SyntaxError"),
    ],
    ids=["no-rule", "raises", "syntax"],
)
def test_bad_plugin_file_is_one_clear_error(text, fragment, tmp_path):
    path = tmp_path / "plugin.py"
    path.write_text(text)
    for command in (["train", "--plugin", path, "--epochs", "1"], ["rules", "--plugin", path]):
        result = cli(*command)
        assert result.exit_code == 1, result.stderr
        assert (
            result.stderr.count("\n") == 1 and fragment in result.stderr and "Traceback" not in result.stderr
        )
    result = cli("train", "--plugin", tmp_path / "missing.py")
    assert result.exit_code == 1 and "missing.py: no such plugin file" in result.stderr


def _venv_with_this_fastfa(folder):
    """A fresh virtual environment that sees this interpreter's packages (fastfa among them).

    Returns its interpreter and its site-packages folder.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    venv_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # site.addsitedir also runs the .pth files there (an editable install's import hooks among them)
    dirs = dict.fromkeys([*site.getsitepackages(), *(p for p in sys.path if p and Path(p).is_dir())])
    lines = [f"import site; site.addsitedir({d!r})" for d in dirs]
    (Path(venv_site) / "fastfa-test-parent.pth").write_text("\n".join(lines) + "\n")
    return python, venv_site


def _can_build_wheels_here():
    """Whether this interpreter's setuptools builds wheels by itself (>= 70.1, or with ``wheel``)."""
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(part) for part in setuptools.__version__.split(".")[:2] if part.isdigit())
    if version >= (70, 1):
        return True
    try:
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


def test_example_distribution_installs_and_trains(tmp_path):
    python, venv_site = _venv_with_this_fastfa(tmp_path / "venv")
    _install(DISTRIBUTION, venv_site)
    env = {**os.environ, "PYTHONWARNINGS": "error::UserWarning"}  # no plugin may fail to load
    listing = subprocess.run([str(python), "-m", "fastfa", "rules"], capture_output=True, text=True, env=env)
    assert listing.returncode == 0, listing.stderr
    assert "nfa" in listing.stdout and "feedback_norm=1.0" in listing.stdout
    train = subprocess.run(
        [str(python), "-m", "fastfa", "train", "--rule", "nfa", "--rule-opt", "feedback_norm=0.5",
         "--hidden", "16", "--epochs", "2", "--json", "-q", "-o", str(tmp_path / "nfa.h5")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    summary = json.loads(train.stdout)
    assert (
        summary["config"]["rule"] == "nfa"
        and float(summary["config"]["rule_options"]["feedback_norm"]) == 0.5
    )
    assert summary["final"]["test_error"] < 0.5  # it learns (chance: 0.9)
    # the rule is not visible to this interpreter, which never installed it
    assert cli("train", "--rule", "nfa", "--epochs", "1").exit_code == 1


def _install(distribution, venv_site):
    isolation = ["--no-build-isolation"] if _can_build_wheels_here() else []
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *isolation, "--target", venv_site,
         str(distribution)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr


def test_compiled_example_distribution_installs_trains_and_passes_its_own_tests(tmp_path):
    """examples/fastfa-dkp: Direct Kolen-Pollack as numba code in the epoch loop, installed into a
    fresh environment; its own tests check its update against the formula and that it learns the
    digits to the bar of fastfa's built-in rules."""
    python, venv_site = _venv_with_this_fastfa(tmp_path / "venv")
    _install(COMPILED_DISTRIBUTION, venv_site)
    env = {**os.environ, "PYTHONWARNINGS": "error::UserWarning"}
    listing = subprocess.run([str(python), "-m", "fastfa", "rules"], capture_output=True, text=True, env=env)
    assert listing.returncode == 0, listing.stderr
    assert "dkp" in listing.stdout and "compiled: hidden_signal, feedback_step" in listing.stdout
    own_tests = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(COMPILED_DISTRIBUTION / "tests")],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr
    assert "3 passed" in own_tests.stdout

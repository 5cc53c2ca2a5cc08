"""Tests of the ``fastfa data`` commands."""

import gzip
import struct

import numpy as np
import pytest
from click.testing import CliRunner

from fastfa.cli import main
from fastfa.cli.data import data
from fastfa.datasets import open_dataset

COMMANDS = ["mnist", "csv", "npz", "digits", "teacher"]


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, *args):
    return runner.invoke(data, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_data_group_help(runner):
    for args in (["data", "--help"], ["data", "-h"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0
        for command in COMMANDS:
            assert command in result.output
        assert "Example" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(runner, command):
    result = run(runner, command, "-h")
    assert result.exit_code == 0
    assert f"fastfa data {command}" in result.output  # the example
    assert "--overwrite" in result.output and "--out" in result.output


def test_digits_and_overwrite(runner, tmp_path):
    out = tmp_path / "d.h5"
    result = run(runner, "digits", "-o", out)
    assert result.exit_code == 0
    assert result.output.strip().count("\n") == 0 and "train 1258, test 539" in result.output
    result = run(runner, "digits", "-o", out)
    assert_one_line_error(result, "already exists", "--overwrite")
    assert run(runner, "digits", "-o", out, "--overwrite").exit_code == 0


def test_teacher(runner, tmp_path):
    out = tmp_path / "t.h5"
    result = run(
        runner, "teacher", "--kind", "nonlinear", "-o", out, "--n-train", 100, "--n-test", 20, "--seed", 2
    )
    assert result.exit_code == 0, result.output
    assert "regression, 10 targets, 30 features" in result.output
    with open_dataset(out) as ds:
        assert ds.split("train").n_rows == 100 and ds.name == "teacher-nonlinear"
    result = run(runner, "teacher", "--kind", "cubic", "-o", tmp_path / "u.h5")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_csv(runner, tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "toy.csv"
    lines = ["f1;f2;target"] + [
        f"{a:.3f};{b:.3f};{int(c)}"
        for a, b, c in zip(rng.random(40), rng.random(40), rng.integers(0, 2, 40), strict=True)
    ]
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "toy.h5"
    result = run(runner, "csv", src, "-o", out, "--test-fraction", 0.25, "--seed", 3, "--name", "mine")
    assert result.exit_code == 0, result.output
    assert "mine (classification, 2 classes, 2 features, float32): train 30, test 10 rows" in result.output
    result = run(runner, "csv", src, "-o", tmp_path / "r.h5", "--task", "regression", "--header")
    assert result.exit_code == 0, result.output
    both = run(runner, "csv", src, "-o", tmp_path / "x.h5", "--test-file", src, "--test-fraction", 0.5)
    assert both.exit_code == 2 and "not both" in both.output


def test_csv_errors_are_one_line(runner, tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("1,2,0\n3,4,1.5\n5,6,1\n")
    assert_one_line_error(run(runner, "csv", src, "-o", tmp_path / "b.h5"), "bad.csv", "line 2")
    result = run(runner, "csv", tmp_path / "missing.csv", "-o", tmp_path / "b.h5")
    assert result.exit_code == 2 and "does not exist" in result.output


def label_first_csv(path, header=True, labels="ab"):
    rng = np.random.default_rng(1)
    lines = ["species,length,width"] if header else []
    lines += [f"{labels[k]},{a:.3f},{b:.3f}" for a, b, k in zip(rng.random(20), rng.random(20), [0, 1] * 10)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_label_column_by_name(runner, tmp_path):
    src = label_first_csv(tmp_path / "iris.csv")
    result = run(runner, "csv", src, "-o", tmp_path / "n.h5", "--label-column", "species")
    assert result.exit_code == 0, result.output
    assert "(classification, 2 classes, 2 features, float32)" in result.output
    with open_dataset(tmp_path / "n.h5") as ds:
        assert ds.classes == ("a", "b")
    result = run(runner, "csv", src, "-o", tmp_path / "i.h5", "--label-column", 0)
    assert result.exit_code == 0, result.output
    with open_dataset(tmp_path / "n.h5") as by_name, open_dataset(tmp_path / "i.h5") as by_index:
        np.testing.assert_array_equal(by_name.split("train").load()[0], by_index.split("train").load()[0])
    regression = tmp_path / "r.csv"
    regression.write_text("a,b,y1,y2\n" + "".join(f"{i},{i % 3},{i / 2},{-i}\n" for i in range(20)))
    for columns in (["y1", "y2"], ["y1", "-1"], ["-2", "-1"]):
        args = [a for c in columns for a in ("--label-column", c)]
        result = run(
            runner, "csv", regression, "-o", tmp_path / "r.h5", "--task", "regression", *args, "--overwrite"
        )
        assert result.exit_code == 0, result.output
        assert "(regression, 2 targets, 2 features, float32)" in result.output


def test_csv_label_column_name_errors(runner, tmp_path):
    src = label_first_csv(tmp_path / "iris.csv")
    out = tmp_path / "o.h5"
    result = run(runner, "csv", src, "-o", out, "--label-column", "class")
    assert_one_line_error(result, "iris.csv", "no column named 'class'", "'species', 'length', 'width'")
    assert not out.exists()
    result = run(runner, "csv", src, "-o", out, "--label-column", "species", "--no-header")
    assert_one_line_error(result, "label column 'species' is a name", "no header row", "--no-header")
    assert not out.exists()
    bare = label_first_csv(tmp_path / "bare.csv", header=False, labels="01")
    result = run(runner, "csv", bare, "-o", out, "--label-column", "species")
    assert_one_line_error(result, "bare.csv", "label column 'species' is a name", "no header row")
    assert not out.exists()
    assert run(runner, "csv", bare, "-o", out, "--label-column", "0").exit_code == 0


def test_csv_x_scale_fraction(runner, tmp_path):
    src = tmp_path / "px.csv"
    src.write_text("".join(f"{i},{255 - i},{i % 2}\n" for i in range(20)))
    result = run(runner, "csv", src, "-o", tmp_path / "px.h5", "--x-scale", "1/255")
    assert result.exit_code == 0, result.output
    assert "uint8 x_scale=0.00392157" in result.output
    result = run(runner, "csv", src, "-o", tmp_path / "py.h5", "--x-scale", "one")
    assert result.exit_code == 2 and "fraction" in result.output


def test_npz(runner, tmp_path):
    src = tmp_path / "a.npz"
    np.savez(
        src,
        x_train=np.zeros((5, 3), np.float32),
        y_train=[0, 1, 2, 1, 0],
        x_test=np.ones((2, 3), np.float32),
        y_test=[1, 2],
    )
    result = run(runner, "npz", src, "-o", tmp_path / "a.h5")
    assert result.exit_code == 0, result.output
    assert "3 classes, 3 features" in result.output
    np.savez(src, x_train=np.zeros((5, 3)), y_train=[0, 1, 2, 1, 0])
    assert_one_line_error(run(runner, "npz", src, "-o", tmp_path / "b.h5"), "missing array 'x_test'")


def idx(path, magic, array):
    path.write_bytes(
        gzip.compress(
            struct.pack(">i", magic)
            + struct.pack(f">{array.ndim}i", *array.shape)
            + array.astype(np.uint8).tobytes()
        )
    )


def test_mnist(runner, tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    for split, n in (("train", 6), ("t10k", 3)):
        idx(d / f"{split}-images-idx3-ubyte.gz", 0x803, np.zeros((n, 2, 2)))
        idx(d / f"{split}-labels-idx1-ubyte.gz", 0x801, np.arange(n))
    result = run(runner, "mnist", d, "-o", tmp_path / "m.h5")
    assert result.exit_code == 0, result.output
    assert "train 6, test 3 rows" in result.output
    idx(d / "t10k-labels-idx1-ubyte.gz", 0x802, np.arange(3))
    assert_one_line_error(run(runner, "mnist", d, "-o", tmp_path / "n.h5"), "bad IDX magic number")
    assert not (tmp_path / "n.h5").exists()
    result = run(runner, "mnist", tmp_path / "nowhere", "-o", tmp_path / "n.h5")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_output_directory_missing(runner, tmp_path):
    assert_one_line_error(run(runner, "digits", "-o", tmp_path / "no" / "d.h5"), "does not exist")

"""A corpus of bad inputs to the ``fastfa`` command line.

Every case must end the same way: a non-zero exit status (2 for usage errors, 1 for the
rest), exactly one line on stderr that starts with ``Error:`` and names the problem, no
traceback anywhere, and no output left behind -- the output file does not exist, no
temporary ``.<name>.*.tmp`` file remains, and files that existed before are unchanged.
"""

from __future__ import annotations

import gzip
import re
import shutil
import struct
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from fastfa.cli import main
from fastfa.datasets import default_dataset_path

CLICK_SPLITS_STDERR = tuple(int(p) for p in version("click").split(".")[:2]) >= (8, 2)
KNOWN_RULES = ("bp", "brsf", "dfa", "fa", "frsf", "shallow", "usf")
FEATURES, CLASSES, ROWS = 4, 3, 40


def make_runner():
    return CliRunner() if CLICK_SPLITS_STDERR else CliRunner(mix_stderr=False)


# ------------------------------------------------------------------ the files


def write_raw(path, x, y, x_test=None, y_test=None, *, task="classification"):
    """An HDF5 dataset written directly with h5py, bypassing fastfa's checks."""
    with h5py.File(path, "w") as f:
        f.attrs["task"] = task
        if task == "classification":
            f.attrs["n_classes"] = CLASSES
        f.create_group("train").update({"x": x, "y": y})
        f.create_group("test").update(
            {"x": x[:5] if x_test is None else x_test, "y": y[:5] if y_test is None else y_test}
        )


def idx_file(path, magic, array):
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A folder of bad (and a few good) inputs, made once."""
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, ROWS)
    write_raw(d / "good.h5", x, y)
    nan, inf = x.copy(), x.copy()
    nan[7, 2], inf[9, 1] = np.nan, -np.inf
    write_raw(d / "nan.h5", nan, y)
    write_raw(d / "inf.h5", inf, y)
    big, neg = y.copy(), y.copy()
    big[3], neg[4] = 5, -1
    write_raw(d / "range.h5", x, big)
    write_raw(d / "negative.h5", x, neg)
    write_raw(d / "floaty.h5", x, y + 0.5)
    write_raw(d / "lengths.h5", x, y[:30])
    write_raw(d / "empty.h5", x, y, x[:0], y[:0])
    with h5py.File(d / "nogroup.h5", "w") as f:
        f.attrs.update({"task": "classification", "n_classes": CLASSES})
        f.create_group("train").update({"x": x, "y": y})
    with h5py.File(d / "nodataset.h5", "w") as f:
        f.attrs.update({"task": "classification", "n_classes": CLASSES})
        for split in ("train", "test"):
            f.create_group(split)["x"] = x
    (d / "text.h5").write_text("x,y\n1,2\n")
    good = (d / "good.h5").read_bytes()
    (d / "truncated.h5").write_bytes(good[: len(good) // 2])

    # a complete run on good.h5 (4 features, 3 classes), and broken copies of it
    result = make_runner().invoke(
        main,
        ["train", str(d / "good.h5"), "--hidden", "5", "--epochs", "1", "-q", "-o", str(d / "run.h5")],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    run = (d / "run.h5").read_bytes()
    (d / "run_truncated.h5").write_bytes(run[: len(run) // 2])
    for name, damage in (
        ("run_noweights.h5", lambda f: f["model"].pop("W0")),
        ("run_badconfig.h5", lambda f: f.attrs.__setitem__("config", "{not json")),
        ("run_badshape.h5", lambda f: (f["model"].pop("W1"), f["model"].create_dataset("W1", data=[[1.0]]))),
    ):
        shutil.copyfile(d / "run.h5", d / name)
        with h5py.File(d / name, "a") as f:
            damage(f)

    mnist = d / "mnist"
    mnist.mkdir()
    idx_file(mnist / "train-images-idx3-ubyte.gz", 0x803, np.zeros((6, 2, 2)))
    idx_file(mnist / "train-labels-idx1-ubyte.gz", 0x801, np.arange(6))  # the t10k files are missing
    (d / "ragged.csv").write_text("1,2,0\n3,4\n5,6,1\n")
    (d / "words.csv").write_text("1,2,0\n3,four,1\n5,6,1\n")
    return d


def unwritable_folder(base):
    """A folder this process cannot create files in, or None.

    ``chmod 0o500`` suffices for ordinary users; root writes anyway, and then ``/proc``
    (where nobody can create files) stands in.
    """
    folder = base / "readonly"
    folder.mkdir()
    folder.chmod(0o500)
    for candidate in (folder, Path("/proc")):
        try:
            (candidate / ".probe").touch()
        except OSError:
            return candidate
        (candidate / ".probe").unlink()
    return None


# ------------------------------------------------------------------ the corpus

#: (id, arguments, exit status, fragments the error line must contain)
#: In the arguments, {d} is the folder of prepared files, {out} a new file in an empty
#: work folder, {w} that folder, {digits} the bundled dataset, {ro} an unwritable folder,
#: {exists} a file that exists there already, and {run} / {dataset} work-folder copies
#: of d/run.h5 / d/good.h5 given as the run to resume. Every existing file must survive
#: unchanged.
CASES = [
    # the dataset file
    ("missing-file", "train {d}/nope.h5 -o {out}", 1, ["nope.h5", "no such file"]),
    ("directory-as-dataset", "train {d} -o {out}", 2, ["is a directory"]),
    ("not-hdf5", "train {d}/text.h5 -o {out}", 1, ["text.h5", "not an HDF5 file"]),
    ("truncated-hdf5", "train {d}/truncated.h5 -o {out}", 1, ["truncated.h5", "truncated HDF5 file"]),
    ("missing-group", "train {d}/nogroup.h5 -o {out}", 1, ["missing group 'test'"]),
    ("missing-dataset", "train {d}/nodataset.h5 -o {out}", 1, ["missing dataset 'train/y'"]),
    ("length-mismatch", "train {d}/lengths.h5 -o {out}", 1, ["x and y lengths differ", "40", "30"]),
    ("nan-in-x", "train {d}/nan.h5 -o {out}", 1, ["nan.h5", "NaN or inf", "'train'", "row 7"]),
    ("inf-in-x", "train {d}/inf.h5 -o {out}", 1, ["inf.h5", "NaN or inf", "row 9"]),
    ("label-out-of-range", "train {d}/range.h5 -o {out}", 1, ["label 5 out of range 0..2", "row 3"]),
    ("negative-label", "train {d}/negative.h5 -o {out}", 1, ["negative label -1", "row 4"]),
    ("float-labels", "train {d}/floaty.h5 -o {out}", 1, ["float64", "labels must be integers"]),
    ("empty-split", "train {d}/empty.h5 -o {out}", 1, ["split 'test' is empty"]),
    ("nan-in-x-evaluate", "evaluate {d}/run.h5 {d}/nan.h5", 1, ["NaN or inf", "row 7"]),
    # numbers
    ("zero-epochs", "train --epochs 0 -o {out}", 1, ["epochs must be a positive integer, got 0"]),
    ("negative-epochs", "train --epochs -3 -o {out}", 1, ["epochs must be a positive integer, got -3"]),
    ("epochs-not-a-number", "train --epochs two -o {out}", 2, ["--epochs", "'two' is not a valid integer"]),
    ("zero-batch-size", "train -b 0 -o {out}", 1, ["batch size must be a positive integer, got 0"]),
    ("zero-lr", "train --lr 0 -o {out}", 1, ["learning rate must be a number > 0"]),
    ("negative-lr", "train --lr -0.1 -o {out}", 1, ["learning rate must be a number > 0", "-0.1"]),
    ("nan-lr", "train --lr nan -o {out}", 1, ["learning rate", "nan"]),
    ("infinite-lr", "train --lr inf -o {out}", 1, [re.compile(r"learning rate|--lr")]),
    ("momentum-one", "train --momentum 1 -o {out}", 1, ["momentum must be a number >= 0 and < 1, got 1.0"]),
    ("momentum-above-one", "train --momentum 1.5 -o {out}", 1, ["momentum", "< 1"]),
    ("negative-momentum", "train --momentum -0.5 -o {out}", 1, ["momentum", ">= 0"]),
    ("adam-beta1-one", "train --optimizer adam --beta1 1 -o {out}", 1, ["beta1", "< 1"]),
    ("negative-weight-decay", "train --weight-decay -1 -o {out}", 1, ["weight decay", ">= 0"]),
    ("zero-threads", "train --threads 0 -o {out}", 1, ["--threads must be a positive integer"]),
    ("zero-chunk-rows", "train --chunk-rows 0 -o {out}", 1, ["--chunk-rows must be a positive integer"]),
    # names
    ("unknown-rule", "train --rule nope -o {out}", 1, ["unknown rule 'nope'", "known rules", *KNOWN_RULES]),
    (
        "unknown-activation",
        "train --activation swish -o {out}",
        2,
        ["--activation", "'swish'", "tanh", "relu"],
    ),
    (
        "unknown-optimizer",
        "train --optimizer rmsprop -o {out}",
        2,
        ["--optimizer", "'rmsprop'", "adam", "sgd"],
    ),
    ("unknown-loss", "train --loss hinge -o {out}", 2, ["--loss", "'hinge'"]),
    ("unknown-schedule", "train --schedule linear -o {out}", 2, ["--schedule", "'linear'"]),
    ("unknown-dtype", "train --dtype float16 -o {out}", 2, ["--dtype", "'float16'"]),
    ("unknown-init", "train --init orthogonal -o {out}", 1, ["unknown init 'orthogonal'", "glorot"]),
    ("negative-init", "train --init -1 -o {out}", 1, ["init", "positive number", "-1"]),
    ("bad-hidden", "train --hidden abc -o {out}", 2, ["--hidden", "comma-separated integers", "'abc'"]),
    ("zero-hidden", "train --hidden 10,0 -o {out}", 2, ["--hidden", "must be positive", "'10,0'"]),
    ("negative-hidden", "train --hidden=-3 -o {out}", 2, ["--hidden", "must be positive", "'-3'"]),
    (
        "rule-opt-unknown",
        "train --rule-opt foo=1 -o {out}",
        1,
        ["rule 'fa' has no option 'foo'", "feedback_scale"],
    ),
    (
        "rule-opt-bad-value",
        "train --rule-opt feedback_scale=big -o {out}",
        1,
        ["feedback_scale", "'big'", "float"],
    ),
    ("rule-opt-no-equals", "train --rule-opt feedback_scale -o {out}", 2, ["--rule-opt", "KEY=VALUE"]),
    ("rule-opt-no-key", "train --rule-opt =3 -o {out}", 2, ["--rule-opt", "KEY=VALUE", "'=3'"]),
    ("unknown-option", "train --learning-rate 0.1 -o {out}", 2, ["No such option", "--learning-rate"]),
    ("unknown-command", "fit -o {out}", 2, ["No such command 'fit'"]),
    # the output
    ("output-folder-missing", "train -o {w}/nowhere/run.h5", 1, ["nowhere", "does not exist"]),
    ("output-folder-unwritable", "train -o {ro}/run.h5", 1, ["not writable"]),
    ("output-is-a-folder", "train -o {w}", 1, ["is a directory"]),
    ("output-exists", "train -o {exists}", 1, ["already exists", "--overwrite"]),
    ("data-output-exists", "data teacher -o {exists}", 1, ["already exists", "--overwrite"]),
    ("data-output-folder-missing", "data digits -o {w}/nowhere/d.h5", 1, ["does not exist"]),
    # runs: --resume and evaluate
    ("resume-without-out", "train --resume", 1, ["--resume needs --out"]),
    ("resume-missing-run", "train -o {out} --resume", 1, ["no such file"]),
    (
        "resume-changed-lr",
        "train {d}/good.h5 -o {run} --resume --lr 0.1",
        1,
        ["--lr (run file: 0.05, given: 0.1) cannot change when resuming"],
    ),
    (
        "resume-feature-mismatch",
        "train {digits} -o {run} --resume",
        1,
        ["64 features", "do not fit", "(4, 5, 3)"],
    ),
    ("resume-dataset-as-run", "train {d}/good.h5 -o {dataset} --resume", 1, ["not a fastfa run file"]),
    (
        "resume-truncated-run",
        "train {d}/good.h5 -o {run_truncated} --resume",
        1,
        ["not a readable HDF5 file"],
    ),
    (
        "resume-run-without-weights",
        "train {d}/good.h5 -o {run_noweights} --resume",
        1,
        ["corrupt or incomplete run file", "W0"],
    ),
    ("evaluate-feature-mismatch", "evaluate {d}/run.h5 {digits}", 1, ["64 features", "expects 4"]),
    ("evaluate-dataset-as-run", "evaluate {d}/good.h5 {d}/good.h5", 1, ["good.h5", "not a fastfa run file"]),
    ("evaluate-truncated-run", "evaluate {d}/run_truncated.h5 {d}/good.h5", 1, ["not a readable HDF5 file"]),
    (
        "evaluate-run-without-weights",
        "evaluate {d}/run_noweights.h5 {d}/good.h5",
        1,
        ["corrupt or incomplete", "W0"],
    ),
    (
        "evaluate-run-bad-config",
        "evaluate {d}/run_badconfig.h5 {d}/good.h5",
        1,
        ["corrupt or incomplete", "JSON"],
    ),
    ("evaluate-run-bad-shape", "evaluate {d}/run_badshape.h5 {d}/good.h5", 1, ["model/W1 has shape (1, 1)"]),
    ("evaluate-missing-data", "evaluate {d}/run.h5 {d}/nope.h5", 1, ["nope.h5", "no such file"]),
    ("evaluate-unknown-split", "evaluate {d}/run.h5 {d}/good.h5 --split valid", 1, ["no split 'valid'"]),
    ("info-missing-file", "info {d}/nope.h5", 1, ["nope.h5", "no such file"]),
    ("info-not-hdf5", "info {d}/text.h5", 1, ["not an HDF5 file"]),
    # converters
    (
        "mnist-missing-files",
        "data mnist {d}/mnist -o {out}",
        1,
        ["missing MNIST file t10k-images-idx3-ubyte"],
    ),
    ("mnist-missing-folder", "data mnist {d}/nowhere -o {out}", 2, ["does not exist"]),
    (
        "csv-ragged-rows",
        "data csv {d}/ragged.csv -o {out}",
        1,
        ["ragged.csv", "line 2 has 2 fields, expected 3"],
    ),
    ("csv-not-a-number", "data csv {d}/words.csv -o {out}", 1, ["words.csv", "line 2", "'four'"]),
    ("teacher-bad-kind", "data teacher --kind cubic -o {out}", 2, ["--kind", "'cubic'"]),
    ("teacher-zero-rows", "data teacher --n-train 0 -o {out}", 2, ["--n-train", "0"]),
]

# The rest of the keywords in the arguments: files copied into the work folder.
COPIES = {
    "run": "run.h5",
    "dataset": "good.h5",
    "run_truncated": "run_truncated.h5",
    "run_noweights": "run_noweights.h5",
}


def temp_files(folder):
    """Temporary files an atomic write would leave behind (``.<name>.*.tmp``)."""
    return sorted(
        p.name for p in Path(folder).iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")
    )


def snapshot(folder):
    """Every file under ``folder`` with its contents."""
    return {p: p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def prepare(template, files, work):
    """The argument list of a case, and the folders where nothing may be written."""
    places = {"d": files, "w": work, "out": work / "out.h5", "digits": default_dataset_path()}
    folders = [work]
    if "{ro}" in template:
        ro = unwritable_folder(work)
        if ro is None:
            pytest.skip("no folder here refuses this process's writes")
        places["ro"] = ro
        folders.append(ro)
    if "{exists}" in template:
        places["exists"] = work / "exists.h5"
        places["exists"].write_bytes(b"precious, not to be overwritten\n")
    for key, name in COPIES.items():
        if "{" + key + "}" in template:
            places[key] = work / name
            shutil.copyfile(files / name, places[key])
    args = [token.format(**places) for token in template.split()]
    return args, places["out"], folders


def assert_one_line_error(stdout, stderr, status, expected_status, fragments):
    assert status == expected_status, f"status {status}\nstdout: {stdout}\nstderr: {stderr}"
    assert "Traceback" not in stdout + stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and stderr.endswith("\n"), f"stderr is not one line:\n{stderr}"
    assert lines[0].startswith("Error: "), lines[0]
    for fragment in fragments:
        if isinstance(fragment, re.Pattern):
            assert fragment.search(lines[0]), f"{fragment.pattern!r} not in {lines[0]!r}"
        else:
            assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert stdout == "", f"nothing belongs on stdout, got:\n{stdout}"


def test_corpus_is_large_enough():
    assert len(CASES) >= 25
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("template", "status", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input(files, tmp_path, template, status, fragments):
    work = tmp_path / "work"
    work.mkdir()
    args, out, folders = prepare(template, files, work)
    before = snapshot(work), snapshot(files)
    try:
        result = make_runner().invoke(main, args, prog_name="fastfa", catch_exceptions=False)
    finally:
        if "{ro}" in template and folders[-1] != Path("/proc"):
            folders[-1].chmod(0o700)  # let pytest clean up
    assert_one_line_error(result.stdout, result.stderr, result.exit_code, status, fragments)
    assert not out.exists(), f"{out.name} was written"
    for folder in folders:
        assert temp_files(folder) == [], f"temporary files left in {folder}"
    assert (snapshot(work), snapshot(files)) == before, "an existing file changed or a new one appeared"


#: cases rerun as real processes: what a shell sees on stderr, and the exit status
SUBPROCESS_CASES = [
    "nan-in-x",
    "unknown-rule",
    "bad-hidden",
    "output-exists",
    "evaluate-dataset-as-run",
    "csv-ragged-rows",
    "resume-feature-mismatch",
]


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_in_a_real_process(files, tmp_path, case):
    template, status, fragments = next(c[1:] for c in CASES if c[0] == case)
    work = tmp_path / "work"
    work.mkdir()
    args, out, folders = prepare(template, files, work)
    before = snapshot(work)
    done = subprocess.run(
        [sys.executable, "-m", "fastfa", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(done.stdout, done.stderr, done.returncode, status, fragments)
    assert not out.exists() and temp_files(work) == []
    assert snapshot(work) == before


def test_overwrite_failure_keeps_the_old_file(files, tmp_path):
    """With --overwrite, a run that fails before its first checkpoint leaves the old file alone."""
    out = tmp_path / "old.h5"
    out.write_bytes(b"old contents\n")
    result = make_runner().invoke(
        main, ["train", str(files / "nan.h5"), "-o", str(out), "--overwrite"], catch_exceptions=False
    )
    assert_one_line_error(result.stdout, result.stderr, result.exit_code, 1, ["NaN or inf"])
    assert out.read_bytes() == b"old contents\n" and temp_files(tmp_path) == []

"""Model selection and using a trained model: validation rows, early stopping, the best
parameters, standardisation kept with the model, ``fastfa predict``, ``export`` and ``load``.

Tiny synthetic datasets (a few hundred rows, hidden layers of 12) keep every run under a
second once the kernels are compiled.
"""

from __future__ import annotations

import json
from importlib.metadata import version

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import fastfa
from fastfa.cli import main
from fastfa.config import TrainConfig
from fastfa.datasets import write_dataset
from fastfa.predict import numpy_forward
from fastfa.runs import load_model, load_run
from fastfa.session import Run, fit
from fastfa.standardize import feature_stats
from fastfa.validation import holdout_rows, remaining_rows

CLICK_SPLITS_STDERR = tuple(int(p) for p in version("click").split(".")[:2]) >= (8, 2)
SCALES = np.array([1e-2, 1e-1, 1.0, 10.0, 1e2, 1e3])
TINY = ["--hidden", "12", "-q"]


def cli(*args):
    runner = CliRunner() if CLICK_SPLITS_STDERR else CliRunner(mix_stderr=False)
    return runner.invoke(main, [str(a) for a in args], prog_name="fastfa", catch_exceptions=False)


def ok(result):
    assert result.exit_code == 0, f"status {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result


def one_line_error(result, *fragments):
    assert result.exit_code != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def tabular(rng, n, shift=0.0):
    """Features on scales from 1e-2 to 1e3; the class depends on three of them."""
    z = rng.normal(size=(n, len(SCALES)))
    y = (z[:, 1] + z[:, 3] - z[:, 5] > 0).astype(np.int64)
    return (z + shift) * SCALES, y


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Train rows, and test rows whose feature means are far from the training rows'."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("sel") / "tab.h5"
    x, y = tabular(rng, 500)
    xt, yt = tabular(rng, 120, shift=3.0)
    write_dataset(
        path, {"train": (x, y), "test": (xt, yt)}, task="classification", n_classes=2, name="tab",
        extra_attrs={"classes": ["no", "yes"]},
    )  # fmt: skip
    return path


def test_holdout_rows_are_seeded_disjoint_and_complete():
    a, b = holdout_rows(1000, 0.2, seed=3), holdout_rows(1000, 0.2, seed=3)
    assert np.array_equal(a, b) and len(a) == 200 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, holdout_rows(1000, 0.2, seed=4))
    rest = remaining_rows(1000, a)
    assert len(np.intersect1d(a, rest)) == 0 and len(a) + len(rest) == 1000


@pytest.mark.parametrize(
    ("n", "fraction", "fragment"),
    [(10, 0.01, "holds out no row"), (3, 0.9, "leaves no training row"), (10, 1.0, "strictly between")],
)
def test_holdout_rows_refuse_fractions_that_leave_a_part_empty(n, fraction, fragment):
    with pytest.raises(ValueError, match=fragment):
        holdout_rows(n, fraction, seed=0)


def test_validation_rows_are_disjoint_kept_on_resume_and_in_a_sweep(data, tmp_path):
    ok(cli("train", data, *TINY, "--epochs", "2", "--valid-fraction", "0.2", "-o", tmp_path / "a.h5"))
    _, history, meta = load_run(tmp_path / "a.h5")
    rows = meta["selection"].valid_rows
    assert len(rows) == 100 and meta["selection"].train_rows == 500
    assert np.array_equal(rows, holdout_rows(500, 0.2, seed=0))
    # the training rows are the rest: evaluate sees 400 train and 100 valid rows
    report = json.loads(ok(cli("evaluate", tmp_path / "a.h5", data, "--json")).stdout)["results"]
    assert report["train"]["rows"] == 400 and report["valid"]["rows"] == 100
    # resumed for more epochs: the same rows
    ok(cli("train", data, "-o", tmp_path / "a.h5", "--resume", "--epochs", "3", "-q"))
    assert np.array_equal(load_run(tmp_path / "a.h5")[2]["selection"].valid_rows, rows)
    # a sweep with the same seed holds out the same rows
    spec = tmp_path / "grid.toml"
    spec.write_text(
        f'dataset = "{data}"\n[base]\nhidden = [12]\nepochs = 2\nvalid_fraction = 0.2\n[axes]\nseed = [0]\n'
    )
    ok(cli("sweep", spec, "--workers", "1", "-q"))
    swept = tmp_path / "grid" / "seed-0.h5"
    assert np.array_equal(load_run(swept)[2]["selection"].valid_rows, rows)


def test_validation_figures_are_those_of_the_held_out_rows(data, tmp_path):
    """The history's last valid figures equal evaluate's on the held-out rows (last model)."""
    run = fit(
        Run.fresh(TrainConfig(hidden=(12,), epochs=3, valid_fraction=0.25, seed=2), data, tmp_path / "v.h5")
    )
    trainer, meta = load_model(tmp_path / "v.h5", "last")
    rows = meta["selection"].valid_rows
    with h5py.File(data) as f:
        x, y = f["train/x"][()][rows], f["train/y"][()][rows]
    loss, error = trainer.evaluate(x, y)
    assert loss == pytest.approx(run.history["valid_loss"][-1], rel=1e-6)
    assert error == run.history["valid_error"][-1]
    assert "test_error" not in run.history  # the test split is not looked at during training


def test_early_stopping_stops_where_the_history_says_and_keeps_the_best(data, tmp_path):
    out = tmp_path / "es.h5"
    # a large learning rate makes validation figures stall and wander
    args = ["--epochs", "40", "--lr", "0.5", "--valid-fraction", "0.2", "--early-stopping", "3"]
    result = ok(cli("train", data, "--hidden", "12", *args, "-o", out))
    _, history, meta = load_run(out)
    selection = meta["selection"]
    errors, losses = history["valid_error"], history["valid_loss"]
    keys = list(zip(errors, losses))
    best = min(range(len(keys)), key=lambda i: keys[i])  # first of the lowest (error, loss)
    assert selection.best_epoch == history["epoch"][best]
    assert selection.stopped_early and len(errors) < 40
    assert len(errors) == best + 1 + 3  # stopped 3 epochs after the best
    assert "early stopping" in result.stdout and "best model, epoch" in result.stdout
    # evaluate on the best model gives the history's validation figure of the best epoch
    report = json.loads(ok(cli("evaluate", out, data, "--json")).stdout)
    assert report["model"] == "best" and report["epoch"] == selection.best_epoch
    assert report["results"]["valid"]["error"] == errors[best]
    assert report["results"]["valid"]["loss"] == pytest.approx(losses[best], rel=1e-6)
    assert report["results"]["test"]["error"] == meta["selection"].final_test["error"]
    last = json.loads(ok(cli("evaluate", out, data, "--json", "--model", "last")).stdout)
    assert last["model"] == "last" and last["results"]["valid"]["error"] == errors[-1]
    # the best parameters are those of the best epoch: retrain to that epoch, same seed
    again = tmp_path / "again.h5"
    rerun = ["--epochs", str(selection.best_epoch), "--lr", "0.5", "--valid-fraction", "0.2"]
    ok(cli("train", data, "--hidden", "12", *rerun, "-o", again))
    assert np.array_equal(load_run(again)[0].params, selection.best_params)
    # resuming a run that stopped early trains nothing
    before = out.read_bytes()
    assert "stopped early" in ok(cli("train", data, "-o", out, "--resume")).stderr
    assert out.read_bytes() == before


def test_multistep_schedule_follows_its_milestones(tmp_path):
    config = TrainConfig(schedule="multistep", milestones=(2, 4), lr=1.0, gamma=0.5, epochs=6)
    trainer = fastfa.Trainer(config, 3, 2)
    assert [trainer.learning_rate(e) for e in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    run = fit(Run.fresh(config.replace(hidden=(4,), lr=0.05)))
    assert run.history["lr"] == pytest.approx([0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125])


def test_standardisation_uses_training_rows_only_and_is_kept(data, tmp_path):
    out = tmp_path / "std.h5"
    ok(cli("train", data, *TINY, "--epochs", "2", "--valid-fraction", "0.2", "-o", out))
    trainer, _, meta = load_run(out)
    mean, std = trainer.standardization
    with h5py.File(data) as f:
        x = f["train/x"][()]
    train_rows = remaining_rows(500, meta["selection"].valid_rows)
    np.testing.assert_allclose(mean, x[train_rows].mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(std, x[train_rows].std(axis=0), rtol=1e-10)
    assert not np.allclose(mean, x.mean(axis=0), rtol=1e-6)  # the validation rows are left out
    # the test rows' means lie 3 standard deviations away: they must not leak into the statistics
    assert np.all(np.abs(mean / SCALES) < 0.5)


def test_feature_stats_stream_in_chunks(data):
    from fastfa.datasets import open_dataset

    with open_dataset(data) as ds:
        split = ds.split("train")
        whole = feature_stats(split, chunk_rows=10_000)
        chunked = feature_stats(split, chunk_rows=7)
    np.testing.assert_allclose(whole[0], chunked[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(whole[1], chunked[1], rtol=1e-12)


def test_channel_stats_take_each_channel_over_all_its_pixels(rng):
    from fastfa.datasets import ArraySplit
    from fastfa.standardize import channel_stats

    images = rng.normal(size=(50, 3, 4, 5)) * np.array([1.0, 10.0, 0.1])[:, None, None]
    images += np.array([-2.0, 0.0, 5.0])[:, None, None]
    split = ArraySplit("train", images.reshape(50, -1), np.zeros(50, dtype=np.int64))
    mean, std = channel_stats(split, 3, chunk_rows=7)
    for c in range(3):
        np.testing.assert_allclose(mean.reshape(3, -1)[c], images[:, c].mean(), rtol=1e-12)
        np.testing.assert_allclose(std.reshape(3, -1)[c], images[:, c].std(), rtol=1e-12)
    one_mean, one_std = channel_stats(split, 1)
    np.testing.assert_allclose(one_mean, images.mean(), rtol=1e-12)
    np.testing.assert_allclose(one_std, images.std(), rtol=1e-12)
    with pytest.raises(ValueError, match="do not split into 7 channels"):
        channel_stats(split, 7)


def test_standardize_channel_on_images_is_kept_in_the_run(tmp_path):
    """The bundled digits as 1 x 8 x 8 images, standardised with one mean and deviation."""
    out = tmp_path / "chan.h5"
    ok(cli("train", "--layers", "conv:2:3,dense:8", "--image-shape", "1x8x8", "--epochs", "1",
           "--standardize", "channel", "-q", "-o", out))  # fmt: skip
    trainer = load_run(out)[0]
    mean, std = trainer.standardization
    assert np.all(mean == mean[0]) and np.all(std == std[0]) and 0 < mean[0] < 1 and std[0] > 0


def test_standardize_auto_leaves_uint8_images_alone(tmp_path):
    """The bundled digits (uint8 with x_scale) train exactly as with --standardize off."""
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    ok(cli("train", *TINY, "--epochs", "1", "-o", a))
    ok(cli("train", *TINY, "--epochs", "1", "--standardize", "off", "-o", b))
    ta, tb = load_run(a)[0], load_run(b)[0]
    assert ta.standardization is None and np.array_equal(ta.params, tb.params)


def test_unscaled_features_without_standardisation_draw_a_warning(data, tmp_path):
    result = ok(cli("train", data, *TINY, "--epochs", "1", "--standardize", "off"))
    assert "Warning: features look unscaled" in result.stderr
    assert "Warning" not in ok(cli("train", data, *TINY, "--epochs", "1")).stderr


def test_predict_export_and_evaluate_agree(data, tmp_path):
    out = tmp_path / "m.h5"
    ok(cli("train", data, *TINY, "--epochs", "3", "--dtype", "float64", "--valid-fraction", "0.2", "-o", out))
    ok(cli("predict", out, data, "-o", tmp_path / "labels.csv"))
    ok(cli("predict", out, data, "-o", tmp_path / "labels.npy"))
    ok(cli("predict", out, data, "-o", tmp_path / "proba.npy", "--proba"))
    ok(cli("export", out, "-o", tmp_path / "model.npz"))
    with h5py.File(data) as f:
        x, y = f["test/x"][()], f["test/y"][()]
    labels = np.load(tmp_path / "labels.npy")
    names = np.loadtxt(tmp_path / "labels.csv", dtype=str, skiprows=1)
    assert list(names) == [["no", "yes"][k] for k in labels]  # the dataset's class names
    evaluated = json.loads(ok(cli("evaluate", out, data, "--split", "test", "--json")).stdout)
    assert np.mean(labels != y) == evaluated["results"]["test"]["error"]
    model = np.load(tmp_path / "model.npz")
    assert str(model["format"]) == "fastfa-model" and "mean" in model and "B0" in model
    forward = numpy_forward(model, x)
    np.testing.assert_allclose(forward, np.load(tmp_path / "proba.npy"), rtol=1e-12, atol=1e-14)
    assert np.array_equal(forward.argmax(axis=1), labels)
    # the same rows as CSV and .npy inputs give the same predictions
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header="a,b,c,d,e,f", comments="", fmt="%.17g")
    np.save(tmp_path / "x.npy", x)
    ok(cli("predict", out, tmp_path / "x.csv", "-o", tmp_path / "from_csv.npy"))
    ok(cli("predict", out, tmp_path / "x.npy", "-o", tmp_path / "from_npy.h5"))
    assert np.array_equal(np.load(tmp_path / "from_csv.npy"), labels)
    with h5py.File(tmp_path / "from_npy.h5") as f:
        assert np.array_equal(f["label"][()], labels)
    # fastfa.load gives a fitted estimator with the same predictions
    clf = fastfa.load(out)
    assert np.array_equal(clf.predict(x), labels)
    assert clf.class_names_ == ["no", "yes"] and clf.n_iter_ == 3


def test_predict_bad_inputs_are_one_line_and_leave_nothing(data, tmp_path):
    run = tmp_path / "m.h5"
    ok(cli("train", data, *TINY, "--epochs", "1", "-o", run))
    np.save(tmp_path / "narrow.npy", np.zeros((4, 5)))
    bad = np.ones((4, 6))
    bad[2, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    out = tmp_path / "p.csv"
    one_line_error(cli("predict", run, tmp_path / "narrow.npy", "-o", out), "5 features", "expects 6")
    one_line_error(cli("predict", run, tmp_path / "nan.npy", "-o", out), "row 3, feature 4 is nan")
    one_line_error(cli("predict", run, data, "-o", data, "--overwrite"), "is an input")
    one_line_error(cli("predict", run, data, "-o", tmp_path / "p.txt"), "unknown output type")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "m.h5",
        "nan.npy",
        "narrow.npy",
    ]
    one_line_error(cli("export", run, "-o", tmp_path / "nowhere" / "m.npz"), "does not exist")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        result = cli("export", run, "-o", readonly / "m.npz")
        if result.exit_code != 0:  # root may write anyway
            one_line_error(result, "not writable")
    finally:
        readonly.chmod(0o700)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--valid-fraction", "0"], "--valid-fraction must lie strictly between 0 and 1"),
        (["--valid-fraction", "1"], "--valid-fraction must lie strictly between 0 and 1"),
        (["--valid-fraction", "-0.1"], "--valid-fraction must lie strictly between 0 and 1"),
        (["--valid-fraction", "0.999"], "leaves no training row"),
        (["--early-stopping", "3"], "--early-stopping needs validation data"),
        (["--early-stopping", "0", "--valid-fraction", "0.2"], "--early-stopping must be a positive"),
        (["--schedule", "multistep", "--milestones", "5,3"], "milestones must be increasing"),
        (["--schedule", "multistep"], "multistep schedule needs milestones"),
    ],
)
def test_bad_selection_options_are_one_line_and_write_nothing(data, tmp_path, args, fragment):
    out = tmp_path / "r.h5"
    one_line_error(cli("train", data, *TINY, *args, "-o", out), fragment)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_run_files_from_before_selection_still_load_resume_and_predict(tmp_path):
    """A run file as fastfa wrote it before: no validation, best model, statistics or new settings."""
    out = tmp_path / "old.h5"
    ok(cli("train", *TINY, "--epochs", "1", "-o", out))
    with h5py.File(out, "r+") as f:
        for name in ("stopped_early", "final_test", "classes"):
            if name in f.attrs:
                del f.attrs[name]
        config = json.loads(f.attrs["config"])
        for key in ("milestones", "valid_fraction", "early_stopping", "standardize"):
            del config[key]
        f.attrs["config"] = json.dumps(config)
    trainer, meta = load_model(out)
    assert meta["model"] == "last" and trainer.standardization is None
    ok(cli("train", "-o", out, "--resume", "--epochs", "2", "-q"))
    assert load_run(out)[0].epoch == 2
    ok(cli("evaluate", out, fastfa.datasets.default_dataset_path()))
    ok(cli("predict", out, fastfa.datasets.default_dataset_path(), "-o", tmp_path / "p.npy"))

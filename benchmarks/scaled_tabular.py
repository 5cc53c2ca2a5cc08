"""Tabular data whose features differ in scale by orders of magnitude, trained with defaults.

The bundled UCI digits (uint8, 64 features) become float data with column ``j`` multiplied by
``10 ** (-2 + 5 j / 63)`` (from 1e-2 to 1e3), as a careless CSV of real measurements would be.
Each row trains with ``fastfa train``'s defaults (fa, 64-1000-10 tanh, 10 epochs, lr 0.05)
on: the scaled data with the default ``--standardize auto``; the same with ``--standardize
off`` (what every earlier fastfa did); and the data standardised beforehand with statistics
of the training rows. Prints the test error of each, per seed.

    python -m benchmarks.scaled_tabular --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from fastfa.config import TrainConfig
from fastfa.datasets import default_dataset_path, open_dataset, write_dataset
from fastfa.session import Run, fit


def scaled_copies(folder):
    """``(scaled.h5, prestandardised.h5)`` made from the bundled digits."""
    with open_dataset(default_dataset_path()) as ds:
        (x, y), (xt, yt) = ds.split("train").load("float64"), ds.split("test").load("float64")
    scales = 10.0 ** np.linspace(-2, 3, x.shape[1])
    x, xt = x * scales, xt * scales
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    paths = Path(folder) / "scaled.h5", Path(folder) / "prestandardised.h5"
    for path, (a, b) in zip(paths, [(x, xt), ((x - mean) / std, (xt - mean) / std)]):
        write_dataset(
            path, {"train": (a, y), "test": (b, yt)}, name=path.stem, task="classification", n_classes=10
        )
    return paths


def test_error(dataset, seed, standardize):
    run = fit(Run.fresh(TrainConfig(hidden=(1000,), lr=0.05, seed=seed, standardize=standardize), dataset))
    return run.final()["test_error"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        scaled, pre = scaled_copies(folder)
        rows = {
            "scaled, --standardize auto (default)": (scaled, "auto"),
            "scaled, --standardize off": (scaled, "off"),
            "pre-standardised data": (pre, "off"),
        }
        print(f"{'setting':<38} " + " ".join(f"seed {s:>2}" for s in seeds) + "    mean")
        for label, (path, setting) in rows.items():
            errors = [100 * test_error(path, seed, setting) for seed in seeds]
            cells = " ".join(f"{e:6.2f}%" for e in errors)
            print(f"{label:<38} {cells}  {np.mean(errors):6.2f}%")


if __name__ == "__main__":
    main()

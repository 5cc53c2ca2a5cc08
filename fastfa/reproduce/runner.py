"""Run an experiment: its dataset, one run file per rule, network and seed (through the sweep engine).

The runs go through :func:`fastfa.sweep.engines.run_tasks`, so an experiment is a sweep:
rerunning it skips finished runs and resumes interrupted ones, and ``fastfa sweep --report
DIR`` works on its folder. Every run records epoch 0 (the untrained network) so that curves
start at the beginning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastfa.datasets import DatasetError, convert_mnist, make_teacher, open_dataset, write_dataset
from fastfa.reproduce.experiments import EXPERIMENTS
from fastfa.sweep.engines import run_tasks
from fastfa.sweep.spec import RunTask, run_name
from fastfa.sweep.summary import write_grid


def get_experiment(name):
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}") from None


def prepare_data(exp, out_dir, *, quick=False, data=None, mnist_dir=None):
    """The experiment's dataset file, made in ``out_dir`` when it is generated or converted.

    MNIST comes from ``data`` (a fastfa dataset file) or is converted from the IDX files in
    ``mnist_dir``; ``--quick`` uses the first rows of it (``quick["data_rows"]``).
    """
    out_dir = Path(out_dir)
    if exp.data.startswith("teacher-"):
        path = out_dir / f"{exp.data}.h5"
        n_train, n_test = exp.quick.get("data_rows", exp.data_rows) if quick else exp.data_rows
        if not path.exists():
            make_teacher(exp.data.split("-", 1)[1], path, n_train=n_train, n_test=n_test, seed=0)
        return path
    if data is None:
        data = out_dir / "mnist.h5"
        if not data.exists():
            if mnist_dir is None:
                raise ValueError(
                    f"{exp.name} needs MNIST: pass --data mnist.h5 (made by `fastfa data mnist DIR -o "
                    "mnist.h5`) or --mnist-dir DIR (the four IDX files)"
                )
            convert_mnist(mnist_dir, data)
    data = Path(data)
    if not quick:
        return data
    subset = out_dir / f"{data.stem}-quick.h5"
    if not subset.exists():
        first_rows(data, subset, *exp.quick["data_rows"])
    return subset


def first_rows(source, out, n_train, n_test):
    """Write a dataset of the first ``n_train`` training and ``n_test`` test rows of ``source``,
    stored as in ``source`` (uint8 images keep their ``x_scale``, so they train as the full data do)."""
    with open_dataset(source) as ds:
        if "test" not in ds.splits:
            raise DatasetError(f"{source}: needs a test split")
        splits = {}
        for name, n in (("train", n_train), ("test", n_test)):
            x, y = ds.split(name).read_raw()
            splits[name] = x[:n], y[:n]
        x_scale = ds.x_scale if ds.split("train").x_dtype == np.uint8 else None
        write_dataset(out, splits, name=f"{ds.name}-first-rows", task=ds.task, n_classes=ds.n_outputs,
                      x_scale=x_scale, source=f"first rows of {source}")  # fmt: skip


def build_tasks(exp, dataset, out_dir, *, seeds=None, epochs=None, quick=False):
    """One :class:`~fastfa.sweep.spec.RunTask` per rule, network and seed."""
    seeds = seeds or (exp.quick.get("seeds", exp.seeds) if quick else exp.seeds)
    base = dict(exp.base)
    if quick:
        base.update(exp.quick.get("base", {}))
        base["epochs"] = exp.quick.get("epochs", base["epochs"])
    if epochs is not None:
        base["epochs"] = epochs
    several = len(exp.nets) > 1
    tasks = []
    for rule in exp.rules:
        for net, hidden in exp.nets.items():
            for seed in range(seeds):
                point = {"rule": rule, **({"net": net} if several else {}), "seed": seed}
                settings = {**base, "rule": rule, "hidden": list(hidden), "seed": seed}
                if rule in exp.rule_options:
                    settings["rule_options"] = dict(exp.rule_options[rule])
                name = run_name(point)
                out = str(Path(out_dir) / f"{name}.h5")
                tasks.append(RunTask(name, settings, point, str(dataset), out, 1, True, True))
    return tasks, base, seeds


def run_experiment(exp, out_dir, *, seeds=None, epochs=None, quick=False, data=None, mnist_dir=None,
                   workers=None, display=True):  # fmt: skip
    """Train every run of ``exp`` not finished yet in ``out_dir``; returns ``(tasks, dataset)``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = prepare_data(exp, out_dir, quick=quick, data=data, mnist_dir=mnist_dir)
    tasks, base, n_seeds = build_tasks(exp, dataset, out_dir, seeds=seeds, epochs=epochs, quick=quick)
    axes = {"rule": list(exp.rules)}
    if len(exp.nets) > 1:
        axes["net"] = list(exp.nets)
    axes["seed"] = list(range(n_seeds))
    write_grid(
        out_dir, tasks, source=f"fastfa reproduce {exp.name}", dataset=str(dataset), base=base, axes=axes
    )
    outcomes = run_tasks(tasks, workers=workers, display=display)
    failed = [o for o in outcomes if o["status"] == "failed"]
    if failed:
        raise ValueError(
            f"{len(failed)} of {len(outcomes)} runs failed, e.g. {failed[0]['name']}: {failed[0]['error']}"
        )
    return tasks, dataset

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
from fastfa.sweep.engines import run_tasks, sweep_folder
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
    ``mnist_dir``; an experiment on images (``exp.images``) converts them padded, and pads a
    flat ``data`` file into a copy (:func:`padded_images`). ``--quick`` uses the first rows of
    it (``quick["data_rows"]``).
    """
    out_dir = Path(out_dir)
    if exp.data.startswith("teacher-"):
        path = out_dir / f"{exp.data}.h5"
        n_train, n_test = exp.quick.get("data_rows", exp.data_rows) if quick else exp.data_rows
        if not path.exists():
            make_teacher(exp.data.split("-", 1)[1], path, n_train=n_train, n_test=n_test, seed=0)
        return path
    if data is None and exp.data != "mnist":
        raise ValueError(
            f"{exp.name} needs {exp.data}: pass --data {exp.data}.h5 (made by `fastfa data {exp.data} "
            f"ARCHIVE -o {exp.data}.h5`)"
        )
    if data is None:
        data = out_dir / ("mnist.h5" if not exp.images else f"mnist-{shape_text(exp.images)}.h5")
        if not data.exists():
            if mnist_dir is None:
                raise ValueError(
                    f"{exp.name} needs MNIST: pass --data mnist.h5 (made by `fastfa data mnist DIR -o "
                    "mnist.h5`) or --mnist-dir DIR (the four IDX files)"
                )
            padding = {"images": True, "pad": exp.images[-1]} if exp.images else {}
            convert_mnist(mnist_dir, data, **padding)
    data = as_images(Path(data), exp.images, out_dir)
    if not quick:
        return data
    subset = out_dir / f"{data.stem}-quick.h5"
    if not subset.exists():
        first_rows(data, subset, *exp.quick["data_rows"])
    return subset


def shape_text(shape):
    return "x".join(map(str, shape))


def as_images(data, shape, out_dir):
    """``data`` when its inputs are images of ``shape`` (or ``shape`` is empty), else a copy in
    ``out_dir`` with its images zero-padded to ``shape`` (made once, then reused)."""
    if not shape:
        return data
    with open_dataset(data) as ds:
        if ds.image_shape == tuple(shape):
            return data
    padded = Path(out_dir) / f"{data.stem}-{shape_text(shape)}.h5"
    if not padded.exists():
        padded_images(data, padded, shape)
    return padded


def padded_images(source, out, shape):
    """Write ``source`` with every image zero-padded, centred, to ``shape`` ``(C, H, W)`` (MNIST's
    1x28x28 to 1x32x32: two pixels each side, as torchvision's ``Pad(2)``), stored as in ``source``."""
    with open_dataset(source) as ds:
        have = ds.image_shape
        fits = have is not None and all(h <= s and (s - h) % 2 == 0 for h, s in zip(have, shape, strict=True))
        if not fits or have[0] != shape[0]:
            raise DatasetError(
                f"{source}: needs {shape_text(shape)} images or images that pad to them (e.g. MNIST made by "
                f"`fastfa data mnist`), has {'flat rows' if have is None else shape_text(have) + ' images'}"
            )
        margins = [(0, 0)] + [((s - h) // 2,) * 2 for h, s in zip(have, shape, strict=True)]
        splits = {}
        for name in ds.splits:
            x, y = ds.split(name).read_raw()
            splits[name] = np.pad(x.reshape(len(x), *have), margins), y
        _write_like(ds, out, splits, "padded", f"{source} padded to {shape_text(shape)}", shape)


def first_rows(source, out, n_train, n_test):
    """Write a dataset of the first ``n_train`` training and ``n_test`` test rows of ``source``,
    stored as in ``source`` (uint8 images keep their ``x_scale`` and image shape, so they train as
    the full data do)."""
    with open_dataset(source) as ds:
        if "test" not in ds.splits:
            raise DatasetError(f"{source}: needs a test split")
        splits = {}
        for name, n in (("train", n_train), ("test", n_test)):
            x, y = ds.split(name).read_raw()
            splits[name] = x[:n], y[:n]
        _write_like(ds, out, splits, "first-rows", f"first rows of {source}", ds.image_shape)


def _write_like(ds, out, splits, suffix, source, image_shape):
    """Write ``splits`` to ``out`` with the metadata of the open dataset ``ds`` (uint8 inputs keep
    its ``x_scale``)."""
    x_scale = ds.x_scale if ds.split("train").x_dtype == np.uint8 else None
    write_dataset(out, splits, name=f"{ds.name}-{suffix}", task=ds.task, n_classes=ds.n_outputs,
                  x_scale=x_scale, source=source, image_shape=image_shape)  # fmt: skip


def build_tasks(exp, dataset, out_dir, *, seeds=None, epochs=None, quick=False):
    """One :class:`~fastfa.sweep.spec.RunTask` per rule, network and seed."""
    seeds = seeds or (exp.quick.get("seeds", exp.seeds) if quick else exp.seeds)
    base = dict(exp.base)
    if quick:
        base.update(exp.quick.get("base", {}))
    base["epochs"] = epochs or (exp.quick.get("epochs", exp.epochs) if quick else exp.epochs)
    if exp.milestones:
        base["milestones"] = milestone_epochs(exp.milestones, base["epochs"])
    several = len(exp.nets) > 1
    tasks = []
    for rule in exp.rules:
        for net, layers in exp.nets.items():
            for seed in range(seeds):
                point = {"rule": rule, **({"net": net} if several else {}), "seed": seed}
                own = {} if quick else exp.rule_settings.get((net, rule), exp.rule_settings.get(rule, {}))
                trained_by = exp.aliases.get(rule, rule)
                settings = {
                    **base,
                    **network_settings(layers, exp.images),
                    **own,
                    "rule": trained_by,
                    "seed": seed,
                }
                if rule in exp.rule_options:
                    settings["rule_options"] = dict(exp.rule_options[rule])
                name = run_name(point)
                out = str(Path(out_dir) / f"{name}.h5")
                tasks.append(RunTask(name, settings, point, str(dataset), out, 1, True, True))
    return tasks, base, seeds


def milestone_epochs(fractions, epochs):
    """The 1-based epochs at ``fractions`` of ``epochs`` (``(0.5, 0.75)`` of 20: ``[10, 15]``),
    rounded, at least 1, repeats dropped."""
    return sorted({max(1, round(f * epochs)) for f in fractions})


def network_settings(layers, images=()):
    """TrainConfig settings of a network: hidden sizes, or a layer list or preset name on ``images``
    (given, so that a rerun finds the settings its run files hold), or a dict of settings with the
    layer list (a network trained a particular way)."""
    if isinstance(layers, dict):
        return {**layers, **network_settings(layers["layers"], images)}
    if isinstance(layers, str):
        return {"hidden": [], "layers": layers, "image_shape": list(images)}
    return {"hidden": list(layers)}


def run_experiment(exp, out_dir, *, seeds=None, epochs=None, quick=False, data=None, mnist_dir=None,
                   workers=None, display=True):  # fmt: skip
    """Train every run of ``exp`` not finished yet in ``out_dir``; returns ``(tasks, dataset)``.

    The folder is held while the runs go (:func:`fastfa.sweep.engines.sweep_folder`): a second
    ``fastfa reproduce`` into it fails at once, naming the holder.
    """
    out_dir = Path(out_dir)
    with sweep_folder(out_dir):
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

"""Figures of runs: learning curves and alignment angles (matplotlib, an optional extra).

Runs are grouped by label (the rule, plus the architecture when the runs differ in it);
a group of several seeds is drawn as its mean with a band from the lowest to the highest
seed. Every panel has labelled axes and a legend by rule.

A run with validation data has validation curves (drawn as "valid") and no test curves:
its test split is evaluated once, for the model selected on validation data, and drawn
as a marker at the selected epoch (:func:`draw_final_test`).

``pip install 'fastfa[plot]'`` installs matplotlib; without it :func:`pyplot` raises a
``ValueError`` that says so.
"""

from __future__ import annotations

import numpy as np

from fastfa.runs import read_outcome

#: One colour per rule, the same in every figure.
RULE_COLOURS = {
    "bp": "#1f77b4",
    "fa": "#d62728",
    "dfa": "#2ca02c",
    "shallow": "#7f7f7f",
    "usf": "#9467bd",
    "frsf": "#8c564b",
    "brsf": "#e377c2",
}
LAYER_STYLES = ("-", "--", ":", "-.")


def pyplot():
    """matplotlib's pyplot with a file-only backend, or a clear error when it is missing."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError("plots need matplotlib: pip install 'fastfa[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load(paths):
    """``[{"path", "rule", "hidden", "seed", "history", "final_test", "best_epoch"}]`` of run files.

    ``final_test`` and ``best_epoch`` as :func:`~fastfa.runs.read_outcome` gives them.
    """
    runs = []
    for path in paths:
        outcome = read_outcome(path)
        config = outcome["config"]
        runs.append(
            {
                "path": str(path),
                "rule": config["rule"],
                "hidden": tuple(config["hidden"]),
                "seed": config["seed"],
                "history": {k: np.asarray(v, dtype=float) for k, v in outcome["history"].items()},
                "final_test": outcome["final_test"],
                "best_epoch": outcome["best_epoch"],
            }
        )
    return runs


def final_test_value(run, key):
    """The run's final test figure ``key`` (``"loss"`` or ``"error"``): the last epoch's
    ``test_<key>`` when it has test curves, else that of the model selected on validation
    data (``final_test``); ``None`` when it has neither."""
    history = run["history"].get(f"test_{key}")
    if history is not None and len(history):
        return float(history[-1])
    value = run.get("final_test", {}).get(key)
    return None if value is None else float(value)


def label_runs(runs, label=None):
    """Give each run a ``label``: ``label(run)``, or the rule (plus hidden sizes when they differ)."""
    several_nets = len({r["hidden"] for r in runs}) > 1
    for run in runs:
        if label is not None:
            run["label"] = label(run)
        elif several_nets:
            run["label"] = f"{run['rule']} {'-'.join(map(str, run['hidden'])) or 'no hidden'}"
        else:
            run["label"] = run["rule"]
    return runs


def series(runs, key, layer=None, transform=None):
    """``{label: (epochs, values[seed, epoch])}`` of history ``key`` (column ``layer`` if 2-D)."""
    groups = {}
    for run in runs:
        if key not in run["history"]:
            continue
        values = run["history"][key]
        if values.ndim == 2:
            if layer is None or layer >= values.shape[1]:
                continue
            values = values[:, layer]
        if transform is not None:
            values = transform(run, values)
        groups.setdefault(run["label"], []).append((run["history"]["epoch"], values))
    out = {}
    for label, items in groups.items():
        n = min(len(v) for _, v in items)
        out[label] = (items[0][0][:n], np.array([v[:n] for _, v in items]))
    return out


def draw(ax, runs, key, *, ylabel, layer=None, transform=None, log=False, x_scale=1.0, xlabel="epoch",
         style="-", suffix=""):  # fmt: skip
    """Mean over seeds (band: lowest to highest seed) of ``key`` per label on ``ax``."""
    for label, (epochs, values) in series(runs, key, layer, transform).items():
        colour = colour_of(label, runs)
        x = epochs * x_scale
        mean = np.nanmean(values, axis=0) if np.isfinite(values).any() else values[0]
        if not np.isfinite(mean).any():
            continue
        ax.plot(x, mean, style, color=colour, label=label + suffix, lw=1.6)
        if len(values) > 1:
            ax.fill_between(
                x, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=colour, alpha=0.2, lw=0
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3, which="both" if log else "major")


def draw_final_test(ax, runs, key, *, transform=None, x_scale=1.0, suffix=" test (selected)"):
    """The test figure ``key`` (``"loss"`` or ``"error"``) of each run that has no test curve but a
    model selected on validation data: one marker per run at its selected epoch, one legend
    entry per label."""
    labelled = set()
    for run in runs:
        test = run.get("final_test") or {}
        if f"test_{key}" in run["history"] or key not in test:
            continue
        value = np.asarray([float(test[key])])
        if transform is not None:
            value = transform(run, value)
        label = run["label"]
        ax.plot([test["epoch"] * x_scale], value, "*", color=colour_of(label, runs), ms=9,
                label=None if label in labelled else label + suffix)  # fmt: skip
        labelled.add(label)


def colour_of(label, runs):
    rule = next((r["rule"] for r in runs if r["label"] == label), label)
    if rule in RULE_COLOURS:
        labels = sorted({r["label"] for r in runs if r["rule"] == rule})
        if len(labels) == 1:
            return RULE_COLOURS[rule]
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    labels = sorted({r["label"] for r in runs})
    return palette[labels.index(label) % len(palette)]


ANGLES = {
    "update_angle": "hidden-layer update vs backprop's",
    "feedback_angle": "feedback B vs forward W^T",
}


def angle_panels(axes, runs, x_scale=1.0, xlabel="epoch", keys=tuple(ANGLES)):
    """Per hidden layer, the update angle (rule vs bp) and the W^T-vs-B angle: one axis per key."""
    n_hidden = max((r["history"]["update_angle"].shape[1] for r in runs if "update_angle" in r["history"]),
                   default=0)  # fmt: skip
    learners = [r for r in runs if r["rule"] not in ("bp", "shallow")]
    for ax, key in zip(axes, keys, strict=True):
        title = ANGLES[key]
        for layer in range(n_hidden):
            suffix = f" (layer {layer + 1})" if n_hidden > 1 else ""
            draw(ax, learners, key, ylabel="angle (degrees)", layer=layer, x_scale=x_scale, xlabel=xlabel,
                 style=LAYER_STYLES[layer % len(LAYER_STYLES)], suffix=suffix)  # fmt: skip
        ax.axhline(90, color="black", lw=0.8, ls=":")
        ax.set_ylim(0, 100)
        ax.set_title(title)
        if ax.lines:
            ax.legend(fontsize="small")


def plot_runs(paths, out, title=None):
    """``fastfa plot``: loss, error and alignment panels for the run files ``paths``; writes ``out``."""
    plt = pyplot()
    runs = label_runs(load(paths))
    classification = any("train_error" in r["history"] and np.nanmax(r["history"]["train_error"]) > 0
                         for r in runs)  # fmt: skip
    has_angles = any("update_angle" in r["history"] and r["rule"] not in ("bp", "shallow") for r in runs)
    n = 1 + classification + 2 * has_angles
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
    axes = list(axes[0])
    ax = axes.pop(0)
    draw(ax, runs, "train_loss", ylabel="loss", log=True, suffix=" train", style="--")
    draw(ax, runs, "valid_loss", ylabel="loss", log=True, suffix=" valid", style="-.")
    draw(ax, runs, "test_loss", ylabel="loss", log=True, suffix=" test")
    draw_final_test(ax, runs, "loss")
    ax.set_title("loss")
    _legend(ax)
    if classification:
        ax = axes.pop(0)
        percent = lambda run, v: 100 * v  # noqa: E731
        draw(
            ax,
            runs,
            "train_error",
            ylabel="error (%)",
            log=True,
            transform=percent,
            suffix=" train",
            style="--",
        )
        draw(ax, runs, "valid_error", ylabel="error (%)", log=True, transform=percent, suffix=" valid",
             style="-.")  # fmt: skip
        draw(ax, runs, "test_error", ylabel="error (%)", log=True, transform=percent, suffix=" test")
        draw_final_test(ax, runs, "error", transform=percent)
        ax.set_title("classification error")
        _legend(ax)
    if has_angles:
        angle_panels(axes, runs)
    if title:
        fig.suptitle(title)
    save(fig, out)


def _legend(ax):
    """A legend when the panel has labelled lines (a panel can be empty, e.g. without test curves)."""
    if any(not line.get_label().startswith("_") for line in ax.lines):
        ax.legend(fontsize="small")


def save(fig, out):
    """Write ``fig`` to ``out`` (PNG) atomically (:func:`fastfa.files.atomic_path`) and close it."""
    from fastfa.files import atomic_path

    fig.tight_layout()
    try:
        with atomic_path(out, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        pyplot().close(fig)

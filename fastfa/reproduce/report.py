"""An experiment's results: a table next to the published numbers, the paper's claims checked, figures.

The normalised squared error of the teacher tasks is Lillicrap et al.'s
``NSE = sum ||e||^2 / sum ||y*||^2`` over the held-out points; fastfa's test loss is the
mean of ``0.5 ||e||^2``, so ``NSE = 2 test_loss / mean ||y*||^2``.

A run with validation data (a dataset with a ``valid`` split) records validation curves
instead of test curves; its final test figure is that of the model selected on the
validation data, evaluated once at the end (the run file's ``final_test``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastfa.datasets import open_dataset
from fastfa.plots import (
    ANGLES,
    angle_panels,
    draw,
    draw_final_test,
    final_test_value,
    label_runs,
    load,
    pyplot,
    save,
)
from fastfa.reproduce.experiments import AKROUT_ANGLES, NOT_PUBLISHED
from fastfa.runs import load_run
from fastfa.validation import run_splits


def target_energy(dataset, split="test", run=None):
    """``mean ||y*||^2`` over ``split`` (the NSE denominator); ``"valid"`` as the run file ``run``
    sees it (its held-out training rows, or the dataset's ``valid`` split)."""
    with open_dataset(dataset) as ds:
        if run is None:
            rows = ds.split(split)
        else:
            selection = load_run(run)[2]["selection"]
            rows = run_splits(ds, selection.valid_rows, selection.train_rows)[split]
        _, y = rows.read(0, rows.n_rows, dtype=np.float64)
    return float(np.mean(np.sum(np.asarray(y, dtype=np.float64).reshape(len(y), -1) ** 2, axis=1)))


def load_runs(exp, tasks, dataset):
    """The run files of ``tasks`` with ``net`` and (for teacher tasks) an ``nse`` history added
    (from the test curve; without one, ``final_test`` gains the selected model's ``nse``), and a
    ``valid_nse`` history for runs with validation curves."""
    runs = load([t.out for t in tasks])
    energy = target_energy(dataset) if exp.metric == "nse" else None
    for run, task in zip(runs, tasks, strict=True):
        run["net"] = task.point.get("net", next(iter(exp.nets)))
        run["rule"] = task.point["rule"]  # the experiment's label (a rule, or an alias of one)
        if energy is not None:
            if "test_loss" in run["history"]:
                run["history"]["nse"] = 2 * run["history"]["test_loss"] / energy
            elif "loss" in run["final_test"]:
                run["final_test"]["nse"] = 2 * run["final_test"]["loss"] / energy
            if "valid_loss" in run["history"]:
                valid_energy = target_energy(dataset, "valid", run["path"])
                run["history"]["valid_nse"] = 2 * run["history"]["valid_loss"] / valid_energy
    return runs


def final_value(run, metric):
    """A run's final ``metric``: ``"nse"``, or ``"test_error"`` in percent -- the last epoch's, or
    the selected model's (:func:`~fastfa.plots.final_test_value`) for a run without test curves."""
    if metric == "nse":
        nse = run["history"].get("nse")
        value = float(nse[-1]) if nse is not None and len(nse) else run["final_test"].get("nse")
    else:
        value = final_test_value(run, "error")
        value = None if value is None else 100.0 * value
    if value is None:
        raise ValueError(f"{run['path']}: no test figures (does the dataset have a test split?)")
    return value


def results(exp, runs):
    """``{(net, rule): final metric per seed}`` (NSE, or test error in percent)."""
    metric = "nse" if exp.metric == "nse" else "test_error"
    out = {}
    for run in runs:
        out.setdefault((run["net"], run["rule"]), []).append(final_value(run, metric))
    return {k: np.array(v) for k, v in out.items()}


def fmt(values, metric):
    mean, std = values.mean(), (values.std(ddof=1) if len(values) > 1 else 0.0)
    if metric == "nse":
        return f"{mean:.2e} ± {std:.1e}"
    return f"{mean:.2f}% ± {std:.2f}%"


def table(exp, res):
    """Markdown: one row per network and rule, mean ± std over seeds next to the published number."""
    what = "final test NSE" if exp.metric == "nse" else "final test error"
    if exp.base.get("valid_fraction"):
        what = what.replace("final", "selected model's")
    lines = [f"| network | rule | {what} (mean ± std) | seeds | published |", "|---|---|---|---|---|"]
    for (net, rule), values in res.items():
        published = exp.published.get((net, rule), NOT_PUBLISHED)
        lines.append(f"| {net} | {rule} | {fmt(values, exp.metric)} | {len(values)} | {published} |")
    return "\n".join(lines) + "\n"


def convergence(runs, milestones):
    """Markdown: per network and rule, the validation error (mean over seeds) at the last
    learning-rate milestone and at the last epoch, and the epochs selected -- whether the curves
    had settled; ``""`` for runs without validation curves."""
    runs = [r for r in runs if "valid_error" in r["history"]]
    if not runs:
        return ""
    end = int(max(r["history"]["epoch"][-1] for r in runs))
    epochs = sorted(m for m in milestones if m < end)[-1:] + [end]
    heads = [f"valid error at epoch {e}{' (end)' if e == end else ' (last milestone)'}" for e in epochs]
    lines = [f"| network | rule | {' | '.join(heads)} | selected epochs |", "|---" * (len(heads) + 3) + "|"]
    groups = {}
    for run in runs:
        groups.setdefault((run["net"], run["rule"]), []).append(run)
    for (net, rule), group in groups.items():
        cells = [f"{100 * np.mean([_at_epoch(r, 'valid_error', e) for r in group]):.2f}%" for e in epochs]
        selected = ", ".join(str(r["best_epoch"]) for r in group)
        lines.append(f"| {net} | {rule} | {' | '.join(cells)} | {selected} |")
    return "\n".join(lines) + "\n"


def _at_epoch(run, key, epoch):
    """History ``key`` of ``run`` at ``epoch`` (NaN when the run did not record it)."""
    index = np.flatnonzero(run["history"]["epoch"] == epoch)
    return float(run["history"][key][index[0]]) if len(index) else float("nan")


# ---------------------------------------------------------------------- checks


def checks(exp, res, runs, quick):
    """The paper's claims, as ``[(statement, holds)]`` on the measured means."""
    mean = {k: float(v.mean()) for k, v in res.items()}
    net = next(iter(exp.nets))
    out = []
    if exp.name == "lillicrap-linear":
        fa, bp, shallow = mean[(net, "fa")], mean[(net, "bp")], mean[(net, "shallow")]
        start, end = _angle(runs, "fa", 0), _angle(runs, "fa", -1)
        if quick:
            out += [
                (f"fa NSE {fa:.2e} and bp NSE {bp:.2e} far below shallow's {shallow:.2e} (< 1/10)",
                 fa < shallow / 10 and bp < shallow / 10),
                (f"fa/bp update angle falls: {start:.0f}° at the start, {end:.0f}° at the end (< 90°)",
                 end < start and end < 90),
            ]  # fmt: skip
        else:
            out += [
                (f"fa NSE {fa:.2e} <= 0.01", fa <= 0.01),
                (f"bp NSE {bp:.2e} <= 0.01", bp <= 0.01),
                (f"shallow NSE {shallow:.2f} >= 0.5", shallow >= 0.5),
                (f"fa/bp update angle {start:.0f}° at the start, {end:.0f}° at the end (< 45°)", end < 45),
            ]
    elif exp.name == "lillicrap-nonlinear":
        shallow_net, deep_net = list(exp.nets)
        for rule in exp.rules:
            a, b = mean[(deep_net, rule)], mean[(shallow_net, rule)]
            out.append((f"{rule}: {deep_net} student NSE {a:.2e} <= {shallow_net} student's {b:.2e}", a <= b))
    elif exp.name == "lillicrap-mnist":
        fa, bp, shallow = mean[(net, "fa")], mean[(net, "bp")], mean[(net, "shallow")]
        if quick:
            out += [
                (
                    f"fa {fa:.2f}% and bp {bp:.2f}% below shallow's {shallow:.2f}%",
                    fa < shallow and bp < shallow,
                )
            ]
        else:
            out += [
                (f"fa {fa:.2f}% <= 2.3%", fa <= 2.3),
                (f"bp {bp:.2f}% <= 2.6%", bp <= 2.6),
                (f"shallow {shallow:.2f}% >= 4%", shallow >= 4.0),
            ]
    elif exp.name == "nokland-depth":
        for net in exp.nets:
            dfa, bp, fa = mean[(net, "dfa")], mean[(net, "bp")], mean[(net, "fa")]
            if quick:
                out.append((f"{net}: dfa learns ({dfa:.1f}% error, chance 90%)", dfa < 50))
            else:
                out.append((f"{net}: dfa {dfa:.2f}% within 0.5 points of bp {bp:.2f}% (fa {fa:.2f}%)",
                            abs(dfa - bp) <= 0.5))  # fmt: skip
    elif exp.name == "biotorch-lenet-mnist":
        out += _lenet_checks(exp, {rule: value for (_, rule), value in mean.items()}, quick)
    elif exp.name == "biotorch-lenet-cifar10":
        out += _lenet_cifar_checks(exp, {rule: value for (_, rule), value in mean.items()}, quick)
    elif exp.name in ("akrout-mnist", "akrout-cifar10"):
        published = AKROUT_ANGLES[exp.name.split("-", 1)[1]]
        out += _akrout_checks({rule: value for (_, rule), value in mean.items()}, runs, quick, published)
    elif exp.name == "liao-normalisation":
        out += _liao_checks(mean, quick)
    return out


def _liao_checks(mean, quick):
    """Liao et al.'s finding on the mean test errors (percent) per ``(variant, rule)``: sign-concordant
    feedback without batch norm or Batch Manhattan fails or lags far behind (2 points or more behind its
    own bn+manhattan run), and with both comes close to bp (within 1 point of bp's best variant)."""
    rules = sorted({rule for _, rule in mean}, key=lambda rule: (rule != "bp", rule))
    if quick:  # the direction: batch norm speeds every rule's first epochs up
        finite = all(np.isfinite(v) for v in mean.values())
        pairs = ", ".join(f"{rule} {mean[('bn', rule)]:.1f}% vs {mean[('sgd', rule)]:.1f}%" for rule in rules)
        return [
            (f"all {len(mean)} runs finished with a test error", finite),
            (f"with batch norm every rule ahead of plain SGD ({pairs})",
             all(mean[("bn", rule)] < mean[("sgd", rule)] for rule in rules)),
        ]  # fmt: skip
    best_bp = min(value for (variant, rule), value in mean.items() if rule == "bp")
    out = []
    for rule in rules[1:]:
        plain, both = mean[("sgd", rule)], mean[("bn+manhattan", rule)]
        out.append((f"{rule}: plain SGD {plain:.2f}% at least 2 points behind bn+manhattan {both:.2f}%",
                    plain >= both + 2.0))  # fmt: skip
        out.append((f"{rule}: bn+manhattan {both:.2f}% within 1 point of bp's best {best_bp:.2f}%",
                    both <= best_bp + 1.0))  # fmt: skip
    return out


def _akrout_checks(mean, runs, quick, published):
    """Akrout et al.'s findings: kp and wm as accurate as bp and their feedback close to ``W^T``,
    fa behind with its feedback far from it (the hidden layer's feedback angle at the end, shown
    next to the ``published`` angles: rule -> degrees)."""
    learned = [rule for rule in ("kp", "wm", "wm-akrout") if rule in mean]
    angle = {rule: _angle(runs, rule, -1, "feedback_angle") for rule in ("fa", *learned)}
    theirs = {rule: published.get(rule.split("-")[0]) for rule in angle}
    listed = ", ".join(f"{rule} {angle[rule]:.1f}° (published {theirs[rule]}°)" for rule in learned)
    if quick:  # wm-akrout's sigmoid response averages its noise out only over many more steps
        fast = [r for r in learned if r != "wm-akrout"]
        below = max(angle[r] for r in fast) <= angle["fa"] - 10
        shown = ", ".join(f"{rule} {angle[rule]:.1f}°" for rule in fast)
        return [
            (f"learned feedback angles ({shown}) well below fa's ({angle['fa']:.1f}°: 10° or more)", below)
        ]
    bp = mean["bp"]
    errors = ", ".join(f"{rule} {mean[rule]:.2f}%" for rule in learned)
    return [
        (f"{errors}: each within 0.3 points of bp {bp:.2f}%", max(abs(mean[r] - bp) for r in learned) <= 0.3),
        (f"fa {mean['fa']:.2f}% at least 0.4 points above bp {bp:.2f}%", mean["fa"] >= bp + 0.4),
        (f"last-layer feedback angle under 10°: {listed}", max(angle[r] for r in learned) < 10),
        (f"fa's last-layer feedback angle {angle['fa']:.1f}° (published {theirs['fa']}°) above 30°",
         angle["fa"] > 30),
    ]  # fmt: skip


def _lenet_cifar_checks(exp, mean, quick):
    """BioTorch's LeNet CIFAR-10 findings on the measured mean test errors (percent) per rule:
    ``--quick`` (a few rows, often synthetic) only that every rule gave a test error."""
    if quick:
        finite = all(np.isfinite(v) for v in mean.values())
        errors = ", ".join(f"{r} {v:.1f}%" for r, v in mean.items())
        return [(f"every rule ran end to end ({errors})", finite)]
    worst_sign = max(mean[r] for r in ("usf", "brsf", "frsf"))
    out = [
        (f"fa {mean['fa']:.2f}% and dfa {mean['dfa']:.2f}% above every sign-concordant rule "
         f"(worst: {worst_sign:.2f}%)", min(mean["fa"], mean["dfa"]) > worst_sign),
    ]  # fmt: skip
    for rule, value in mean.items():
        published = float(exp.published[(next(iter(exp.nets)), rule)].rstrip("%"))
        out.append((f"{rule} {value:.2f}% within 2 points of BioTorch's {published:.2f}% or better",
                    value <= published + 2.0))  # fmt: skip
    return out


def _lenet_checks(exp, mean, quick):
    """BioTorch's LeNet MNIST findings on the measured mean test errors (percent) per rule."""
    concordant = ("bp", "usf", "brsf", "frsf")
    lowest_random = min(mean["fa"], mean["dfa"])
    if quick:
        worst = max(mean[r] for r in concordant)
        return [(f"{', '.join(f'{r} {mean[r]:.1f}%' for r in concordant)} below 50% and below fa "
                 f"{mean['fa']:.1f}% and dfa {mean['dfa']:.1f}% (chance 90%)",
                 worst < min(50.0, lowest_random))]  # fmt: skip
    worst_sign = max(mean[r] for r in ("usf", "brsf", "frsf"))
    out = [
        (f"{', '.join(f'{r} {mean[r]:.2f}%' for r in concordant)}: each at or below 1.2%",
         max(mean[r] for r in concordant) <= 1.2),
        (f"fa {mean['fa']:.2f}% and dfa {mean['dfa']:.2f}% above every sign-concordant rule "
         f"(worst: {worst_sign:.2f}%)", lowest_random > worst_sign),
    ]  # fmt: skip
    for rule, value in mean.items():
        published = float(exp.published[(next(iter(exp.nets)), rule)].rstrip("%"))
        out.append((f"{rule} {value:.2f}% within 0.4 points of BioTorch's {published:.2f}% or better",
                    value <= published + 0.4))  # fmt: skip
    return out


def _angle(runs, rule, index, key="update_angle"):
    """Mean over seeds of the first hidden layer's ``key`` angle (update or feedback) at epoch ``index``."""
    values = [r["history"][key][index, 0] for r in runs if r["rule"] == rule]
    return float(np.mean(values))


# --------------------------------------------------------------------- figures


def figures(exp, runs, out_dir, examples_per_epoch):
    """Write the experiment's PNG figures into ``out_dir``; returns their paths."""
    plt = pyplot()
    out_dir = Path(out_dir)
    paths = []
    if exp.metric == "nse":
        several = len(exp.nets) > 1
        label_runs(runs, (lambda r: f"{r['rule']} {r['net']}") if several else (lambda r: r["rule"]))
        n_panels = 1 if several else 2
        fig, axes = plt.subplots(1, n_panels, figsize=(6.5 * n_panels, 4.4), squeeze=False)
        ax = axes[0][0]
        styles = {label: ("--" if several and label.endswith(list(exp.nets)[0]) else "-") for label in
                  {r["label"] for r in runs}}  # fmt: skip
        for label, style in sorted(styles.items()):
            group = [r for r in runs if r["label"] == label]
            draw(ax, group, "nse", ylabel="test NSE", log=True,
                 x_scale=examples_per_epoch, xlabel="training examples", style=style)  # fmt: skip
            if any("valid_nse" in r["history"] for r in group):
                draw(ax, group, "valid_nse", ylabel="NSE", log=True, x_scale=examples_per_epoch,
                     xlabel="training examples", style="-.", suffix=" valid")  # fmt: skip
                draw_final_test(ax, group, "nse", x_scale=examples_per_epoch)
        ax.set_title("normalised squared error (held-out points)")
        ax.legend(fontsize="small")
        if not several:
            angle_panels([axes[0][1]], [r for r in runs if r["rule"] == "fa"], x_scale=examples_per_epoch,
                         xlabel="training examples", keys=("update_angle",))  # fmt: skip
            axes[0][1].set_title("angle between fa's and bp's hidden updates")
        fig.suptitle(exp.title, fontsize="medium")
        path = out_dir / f"{exp.name}.png"
        save(fig, path)
        paths.append(path)
        return paths
    percent = lambda run, v: 100 * v  # noqa: E731
    nets = list(exp.nets)
    fig, axes = plt.subplots(1, len(nets), figsize=(max(6.0, 4.6 * len(nets)), 3.8), squeeze=False)
    for ax, net in zip(axes[0], nets, strict=True):
        group = label_runs([r for r in runs if r["net"] == net])
        draw(ax, group, "test_error", ylabel="test error (%)", log=True, transform=percent)
        if any("valid_error" in r["history"] for r in group):
            draw(ax, group, "valid_error", ylabel="error (%)", log=True, transform=percent, suffix=" valid",
                 style="-.")  # fmt: skip
            draw_final_test(ax, group, "error", transform=percent)
        ax.set_title(net)
        ax.legend(fontsize="small")
    fig.suptitle(exp.title, fontsize="medium")
    path = out_dir / f"{exp.name}.png"
    save(fig, path)
    paths.append(path)
    learners = [r for r in runs if r["rule"] not in ("bp", "shallow")]
    if learners:
        paths.append(alignment_figure(exp, learners, nets, out_dir, plt))
    return paths


def alignment_figure(exp, learners, nets, out_dir, plt):
    """Update and W^T-vs-B angles per network (columns): the first and the last hidden layer of each rule."""
    fig, axes = plt.subplots(2, len(nets), figsize=(max(6.0, 4.6 * len(nets)), 7.0), squeeze=False)
    for column, net in enumerate(nets):
        group = label_runs([r for r in learners if r["net"] == net], lambda r: r["rule"])
        n_hidden = max((r["history"]["update_angle"].shape[1] for r in group
                        if "update_angle" in r["history"]), default=1)  # fmt: skip
        layers = sorted({0, n_hidden - 1})
        for row, key in enumerate(ANGLES):
            ax = axes[row][column]
            for layer, style in zip(layers, ("-", "--"), strict=False):
                draw(ax, group, key, ylabel="angle (degrees)", layer=layer, style=style,
                     suffix=f" layer {layer + 1}" if n_hidden > 1 else "")  # fmt: skip
            ax.axhline(90, color="black", lw=0.8, ls=":")
            ax.set_ylim(0, 100)
            ax.set_title(f"{net}: {ANGLES[key]}", fontsize="medium")
            ax.legend(fontsize="small", loc="lower left")
    fig.suptitle(f"{exp.name}: alignment of the first and last hidden layers", fontsize="medium")
    path = out_dir / f"{exp.name}-alignment.png"
    save(fig, path)
    return path

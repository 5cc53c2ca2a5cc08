"""``fastfa evaluate``, ``fastfa rules`` and ``fastfa info``: look at models, rules and files."""

from __future__ import annotations

import click

from fastfa.cli.options import (
    CONTEXT,
    MODEL_OPTION,
    PLUGIN_OPTION,
    check_inputs,
    echo_json,
    fail,
    load_plugins,
    user_errors,
)


@click.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(dir_okay=False))
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--split", "splits", multiple=True, help="Split(s) to evaluate (default: every split).")
@MODEL_OPTION
@click.option("--json", "json_out", is_flag=True, help="Print the results as JSON.")
@PLUGIN_OPTION
@user_errors
def evaluate(run, data, splits, model, json_out, plugins):
    """Evaluate the model in RUN (a run file) on DATA (a dataset file).

    A run that held out --valid-fraction of the training rows sees DATA's training split
    as it did: 'train' (the rows it trained on) and 'valid' (the held-out rows).

    \b
    Example:
      fastfa evaluate fa.h5 mnist.h5 --split test
    """
    from fastfa.datasets import open_dataset
    from fastfa.fitting import evaluate_split
    from fastfa.runs import load_model
    from fastfa.validation import run_splits

    load_plugins(plugins)
    trainer, meta = load_model(run, model)
    selection = meta["selection"]
    results = {}
    with open_dataset(data) as ds:
        if ds.n_features != trainer.arch.sizes[0] or ds.n_outputs != trainer.arch.sizes[-1]:
            fail(
                f"{data}: {ds.n_features} features and {ds.n_outputs} outputs, but the model in {run} "
                f"expects {trainer.arch.sizes[0]} and {trainer.arch.sizes[-1]}"
            )
        if ds.task != trainer.task:
            fail(f"{data}: a {ds.task} dataset, but the model in {run} does {trainer.task}")
        available = run_splits(ds, selection.valid_rows, selection.train_rows)
        for name in splits or available:
            if name not in available:
                fail(f"{data}: no split {name!r} (splits: {', '.join(available)})")
            loss, error = evaluate_split(trainer, available[name])
            results[name] = {"loss": loss, "error": error, "rows": available[name].n_rows}
    if json_out:
        echo_json(
            {
                "run": run,
                "data": data,
                "task": trainer.task,
                "model": meta["model"],
                "epoch": meta["model_epoch"],
                "results": results,
            }
        )
        return
    if selection.best_params is not None:  # a run that selected a model on validation data
        click.echo(f"{meta['model']} model, epoch {meta['model_epoch']}")
    for name, r in results.items():
        line = f"{name:<6} rows {r['rows']:>7}  loss {r['loss']:.4f}"
        if trainer.task == "classification":
            line += f"  error {100 * r['error']:.2f}%  accuracy {100 * (1 - r['error']):.2f}%"
        click.echo(line)


@click.command(context_settings=CONTEXT)
@click.option("--json", "json_out", is_flag=True, help="Print the rules as JSON.")
@click.option("--plugin", "plugins", multiple=True, type=click.Path(dir_okay=False),
              help="A one-file rule plugin to load first; repeatable.")  # fmt: skip
@user_errors
def rules(json_out, plugins):
    """List the learning rules: name, summary, reference, devices, options, compiled plugin code.

    \b
    Examples:
      fastfa rules
      fastfa rules --plugin myrule.py
    """
    from fastfa.rules import available_rules, load_plugin_file

    check_inputs(plugins)
    for path in plugins:
        load_plugin_file(path)
    found = available_rules()
    rows = [
        {
            "name": r.name,
            "summary": r.summary,
            "reference": r.reference,
            "devices": list(r.devices),
            "options": dict(r.options),
            "compiled": [hook for hook in ("hidden_signal", "feedback_step") if getattr(r, hook) is not None],
        }
        for r in sorted(found.values(), key=lambda r: r.name)
    ]
    if json_out:
        echo_json(rows)
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['summary']}")
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "none"
        compiled = f"; compiled: {', '.join(r['compiled'])}" if r["compiled"] else ""
        click.echo(
            f"{'':<{width}}  {r['reference']}; devices: {', '.join(r['devices'])}; options: {opts}{compiled}"
        )


@click.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "json_out", is_flag=True, help="Print the description as JSON.")
@click.option(
    "--csv",
    "csv_out",
    is_flag=False,
    flag_value="-",
    default=None,
    type=click.Path(dir_okay=False, allow_dash=True),
    metavar="[PATH]",
    help="Write a run's history as CSV, one row per epoch, to PATH ('-' or no PATH: stdout).",
)
@click.option("--overwrite", is_flag=True, help="With --csv PATH: replace an existing PATH.")
@PLUGIN_OPTION
@user_errors
def info(file, json_out, csv_out, overwrite, plugins):
    """Describe FILE: a dataset (splits, shapes, attributes) or a run (model, settings, history).

    --csv writes a run's per-epoch history instead: epoch, lr, the train, valid and test
    losses and errors, seconds, and per hidden layer update_angle_1.., feedback_angle_1..,
    norm_ratio_1.. (the columns the run has).

    \b
    Examples:
      fastfa info mnist.h5
      fastfa info fa.h5
      fastfa info fa.h5 --csv history.csv
      fastfa info fa.h5 --csv - | column -s, -t
    """
    from fastfa.runs import is_run_file

    check_inputs([file])
    load_plugins(plugins)
    if csv_out is not None:
        if json_out:
            fail("--csv and --json: choose one")
        _write_history_csv(file, csv_out, overwrite)
        return
    desc = _describe_run(file) if is_run_file(file) else _describe_dataset(file)
    lines = desc.pop("lines")  # the text form only, not part of the JSON description
    if json_out:
        echo_json(desc)
        return
    for line in lines:
        click.echo(line)


#: Per-epoch scalar columns of ``info --csv``, in this order (those the run has).
CSV_SCALARS = (
    "epoch",
    "lr",
    "train_loss",
    "train_error",
    "valid_loss",
    "valid_error",
    "test_loss",
    "test_error",
    "seconds",
)
#: Per-hidden-layer columns: ``<key>_1 .. <key>_L``.
CSV_LAYERS = ("update_angle", "feedback_angle", "norm_ratio")


def history_table(history):
    """``(header, rows)``: a run's history as CSV cells, one row per epoch."""
    columns = []  # (name, key, layer or None)
    for key in CSV_SCALARS:
        if key in history:
            columns.append((key, key, None))
    for key in CSV_LAYERS:
        values = history.get(key) or []
        if values and isinstance(values[0], list):
            columns += [(f"{key}_{layer + 1}", key, layer) for layer in range(len(values[0]))]
        elif values:
            columns.append((key, key, None))
    if not columns:
        columns = [("epoch", "epoch", None)]
    n_rows = min((len(history.get(key, [])) for _, key, _ in columns), default=0)
    rows = []
    for i in range(n_rows):
        row = []
        for name, key, layer in columns:
            value = history[key][i] if layer is None else history[key][i][layer]
            row.append(str(int(value)) if name == "epoch" and value == value else repr(float(value)))
        rows.append(row)
    return [name for name, _, _ in columns], rows


def _write_history_csv(file, target, overwrite):
    import csv
    import io
    from pathlib import Path

    from fastfa.files import atomic_path, check_output
    from fastfa.runs import is_run_file, load_run

    if not Path(file).exists():
        fail(f"{file}: no such file")
    if target != "-":
        check_output(target, inputs=(file,))
    if not is_run_file(file):
        fail(f"{file}: not a run file; --csv writes the per-epoch history of a run")
    _trainer, history, _meta = load_run(file)
    header, rows = history_table(history)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    if target == "-":
        click.echo(text.getvalue(), nl=False)
        return
    path = Path(target)
    if path.is_dir():
        fail(f"{target} is a folder")
    if path.exists() and not overwrite:
        fail(f"{target} exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        fail(f"{target}: no folder {path.parent}")
    with atomic_path(path, suffix=".csv.tmp") as tmp, open(tmp, "w", newline="") as f:
        f.write(text.getvalue())
    click.echo(f"{file}: {len(rows)} epochs written to {target}", err=True)


def _describe_dataset(path):
    from fastfa.datasets import open_dataset

    with open_dataset(path) as ds:
        splits = {name: ds.split(name).n_rows for name in ds.splits}
        desc = {
            "kind": "dataset",
            "name": ds.name,
            "task": ds.task,
            "n_features": ds.n_features,
            "n_outputs": ds.n_outputs,
            "n_classes": ds.n_classes,
            # ds.x_scale is 1.0 for float inputs; report it only where it applies (uint8 inputs)
            "x_scale": ds.x_scale if any(str(ds.split(n).x_dtype) == "uint8" for n in ds.splits) else None,
            "source": ds.source,
            "splits": splits,
        }
        if ds.image_shape is not None:  # only for images: flat files describe themselves as before
            desc["image_shape"] = list(ds.image_shape)
    lines = [
        f"dataset {desc['name']!r} ({path})",
        f"  task      {desc['task']}" + (f", {desc['n_classes']} classes" if desc["n_classes"] else ""),
        f"  features  {desc['n_features']}" + (f" (x_scale {desc['x_scale']:g})" if desc["x_scale"] else ""),
    ]
    if "image_shape" in desc:
        lines.append(f"  images    {'x'.join(map(str, desc['image_shape']))}")
    lines += [f"  {name:<9} {rows} rows" for name, rows in splits.items()]
    if desc["source"]:
        lines.append(f"  source    {desc['source']}")
    desc["lines"] = lines
    return desc


def _describe_run(path):
    from fastfa.runs import load_run

    trainer, history, meta = load_run(path)
    config = trainer.config
    desc = {
        "kind": "run",
        "rule": config.rule,
        "sizes": list(trainer.arch.sizes),
        "task": trainer.task,
        "epoch": trainer.epoch,
        "epochs": config.epochs,
        "complete": meta["complete"],
        "dataset": meta["dataset"],
        "config": config.__dict__,
        "versions": meta["versions"],
        "history": history,
    }
    selection = meta["selection"]
    has_valid = "valid_loss" in history or selection.best_params is not None
    desc["best_epoch"] = selection.best_epoch if selection.best_params is not None else None
    desc["stopped_early"] = selection.stopped_early
    desc["final_test"] = selection.final_test or None
    sizes = config.layers or "-".join(str(s) for s in trainer.arch.sizes)
    state = "complete" if meta["complete"] else "in progress"
    lines = [
        f"run ({path}): rule {config.rule}, {sizes} {config.activation}, {trainer.task}",
        f"  epochs    {trainer.epoch}/{config.epochs} ({state}); seed {config.seed}; "
        f"{config.optimizer} lr {config.lr:g}, batch {config.batch_size}, {config.dtype}",
        f"  dataset   {meta['dataset']}",
    ]
    v = meta["versions"]
    if v:  # files from before versions were recorded have none
        libraries = ", ".join(f"{name} {v.get(name)}" for name in ("fastfa", "numba", "numpy", "python"))
        lines.append(f"  trained   on {v.get('device', 'cpu')}, {v.get('threads', '?')} threads; {libraries}")
    if history.get("epoch"):
        for key in ("train_loss", "train_error", "valid_loss", "valid_error", "test_loss", "test_error"):
            if key in history:
                values = history[key]
                scale, unit = (100, "%") if key.endswith("error") else (1, "")
                best = min(range(len(values)), key=lambda i: values[i])
                lines.append(
                    f"  {key:<11} last {scale * values[-1]:.4g}{unit}, best {scale * values[best]:.4g}{unit} "
                    f"(epoch {int(history['epoch'][best])})"
                )
        if has_valid:
            lines.append(_selection_line(selection, trainer.task, trainer.epoch))
        if selection.final_test:
            lines.append(_final_test_line(selection.final_test, trainer.task))
        epochs = history["epoch"]
        for key in ("update_angle", "feedback_angle", "norm_ratio"):
            if key in history and history[key]:
                first, last = (
                    ", ".join("nan" if v != v else f"{v:.3g}" for v in history[key][i]) for i in (0, -1)
                )
                span = f"epoch {int(epochs[0])} {first} -> epoch {int(epochs[-1])} {last}"
                lines.append(f"  {key:<14} per hidden layer: {span}")
    desc["lines"] = lines
    return desc


def _selection_line(selection, task, epoch):
    """The model a run with validation data selected, and whether it stopped early."""
    on = "validation error, then loss" if task == "classification" else "validation loss"
    if selection.best_params is None:
        return f"  selected  none yet (best of {on})"
    stop = f"stopped early at epoch {epoch}" if selection.stopped_early else "no early stop"
    return f"  selected  best epoch {selection.best_epoch} (lowest {on}); {stop}"


def _final_test_line(test, task):
    """The test split's figures for the selected model, evaluated once at the end."""
    line = f"  final test loss {test['loss']:.4g}"
    if task == "classification":
        line += f", error {100 * test['error']:.4g}%"
    rows = f", {test['rows']} rows" if "rows" in test else ""
    return line + f" ({test['model']} model, epoch {test['epoch']}{rows})"

"""``fastfa evaluate``, ``fastfa rules`` and ``fastfa info``: look at models, rules and files."""

from __future__ import annotations

import click

from fastfa.cli.options import CONTEXT, echo_json, fail, user_errors


@click.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(dir_okay=False))
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--split", "splits", multiple=True, help="Split(s) to evaluate (default: every split).")
@click.option(
    "--model",
    type=click.Choice(["best", "last"]),
    default="best",
    show_default=True,
    help="best: the best-validation epoch (the last when the run has no validation data); last: the last.",
)
@click.option("--json", "json_out", is_flag=True, help="Print the results as JSON.")
@user_errors
def evaluate(run, data, splits, model, json_out):
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
    """List the learning rules: name, summary, reference, devices, options.

    \b
    Examples:
      fastfa rules
      fastfa rules --plugin myrule.py
    """
    from fastfa.rules import available_rules, load_plugin_file

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
        click.echo(f"{'':<{width}}  {r['reference']}; devices: {', '.join(r['devices'])}; options: {opts}")


@click.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "json_out", is_flag=True, help="Print the description as JSON.")
@user_errors
def info(file, json_out):
    """Describe FILE: a dataset (splits, shapes, attributes) or a run (model, settings, history).

    \b
    Examples:
      fastfa info mnist.h5
      fastfa info fa.h5
    """
    from fastfa.runs import is_run_file

    desc = _describe_run(file) if is_run_file(file) else _describe_dataset(file)
    lines = desc.pop("lines")  # the text form only, not part of the JSON description
    if json_out:
        echo_json(desc)
        return
    for line in lines:
        click.echo(line)


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
    lines = [
        f"dataset {desc['name']!r} ({path})",
        f"  task      {desc['task']}" + (f", {desc['n_classes']} classes" if desc["n_classes"] else ""),
        f"  features  {desc['n_features']}" + (f" (x_scale {desc['x_scale']:g})" if desc["x_scale"] else ""),
    ]
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
    sizes = "-".join(str(s) for s in trainer.arch.sizes)
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
        for key in ("train_loss", "train_error", "test_loss", "test_error"):
            if key in history:
                values = history[key]
                scale, unit = (100, "%") if key.endswith("error") else (1, "")
                best = min(range(len(values)), key=lambda i: values[i])
                lines.append(
                    f"  {key:<11} last {scale * values[-1]:.4g}{unit}, best {scale * values[best]:.4g}{unit} "
                    f"(epoch {int(history['epoch'][best])})"
                )
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

"""``fastfa predict`` and ``fastfa export``: use a trained model outside training."""

from __future__ import annotations

import click

from fastfa.cli.options import CONTEXT, MODEL_OPTION, PLUGIN_OPTION, fail, load_plugins, user_errors


@click.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(dir_okay=False))
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(), help="Predictions: a .csv, .npy or .h5 file.")
@click.option("--proba", is_flag=True, help="Class probabilities instead of labels (classification).")
@click.option("--split", default="test", show_default=True, help="Split to predict when DATA is a dataset.")
@MODEL_OPTION
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@PLUGIN_OPTION
@user_errors
def predict(run, data, out, proba, split, model, overwrite, plugins):
    """Predict with the model in RUN on DATA: a dataset (.h5), a CSV of feature columns or an .npy.

    The run's standardisation is applied; rows are streamed in chunks. OUT holds one row per
    input row: the class label (its name when the dataset named the classes), the class
    probabilities with --proba, or the regression outputs.

    \b
    Examples:
      fastfa predict fa.h5 mnist.h5 -o labels.csv
      fastfa predict fa.h5 new_rows.npy -o proba.npy --proba
    """
    from fastfa.predict import check_output, open_inputs, write_predictions
    from fastfa.runs import load_model

    check_output(out, overwrite, inputs=(run, data, *plugins))
    load_plugins(plugins)
    trainer, _meta = load_model(run, model)
    if proba and trainer.task != "classification":
        fail("--proba needs a classification model; this one does regression")
    inputs = open_inputs(data, split)
    rows = write_predictions(trainer, inputs, out, proba=proba)
    click.echo(f"{rows} predictions written to {out}", err=True)


@click.command(context_settings=CONTEXT)
@click.argument("run", type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(), help="The archive to write (.npz).")
@MODEL_OPTION
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@PLUGIN_OPTION
@user_errors
def export(run, out, model, overwrite, plugins):
    """Export the model in RUN as a NumPy .npz archive: weights, biases, activations,
    standardisation, class names and feedback matrices (docs/models.md shows the forward pass).

    \b
    Example:
      fastfa export fa.h5 -o fa.npz
    """
    from fastfa.predict import check_output, export_npz
    from fastfa.runs import load_model

    if not str(out).lower().endswith(".npz"):
        fail(f"{out}: give a file name ending in .npz")
    check_output(out, overwrite, inputs=(run, *plugins))
    load_plugins(plugins)
    trainer, meta = load_model(run, model)
    export_npz(trainer, out, {"model": meta["model"], "epoch": meta["model_epoch"], "run": str(run)})
    click.echo(f"{meta['model']} model (epoch {meta['model_epoch']}) exported to {out}", err=True)

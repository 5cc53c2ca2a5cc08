"""``fastfa train``: train a network on an HDF5 dataset, with checkpoints and exact resume."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from fastfa.cli.options import (
    CONTEXT,
    check_inputs,
    echo_json,
    fail,
    parse_key_values,
    parse_rates,
    parse_shape,
    parse_sizes,
    user_errors,
)
from fastfa.cli.progress import EXIT_CODES, ProgressBar, StopFlag, format_epoch, format_final_test
from fastfa.files import check_output, hold
from fastfa.kernels import codes
from fastfa.layers import PRESETS
from fastfa.optim import SCHEDULES

# Options that define the run; on --resume they come from the run file.
RUN_OPTIONS = (
    "rule",
    "rule_opts",
    "hidden",
    "layers",
    "model",
    "image_shape",
    "activation",
    "output_activation",
    "loss",
    "init",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "beta1",
    "beta2",
    "epsilon",
    "schedule",
    "step_size",
    "gamma",
    "lr_min",
    "batch_size",
    "seed",
    "shuffle",
    "dtype",
    "milestones",
    "valid_fraction",
    "early_stopping",
    "standardize",
    "crop_padding",
    "flip",
    "dropout",
    "batch_norm",
    "chunk_rows",
)
# option name -> TrainConfig field, where they differ (--model is a named --layers)
OPTION_FIELDS = {"rule_opts": "rule_options", "model": "layers"}


def _set_threads(threads):
    """Use ``threads`` threads in BLAS and numba (before BLAS is first loaded)."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _check_output(out, inputs, resume):
    """The checks on --out that need no lock: a file (not a folder, FIFO or device) in an existing
    folder, and none of the command's ``inputs``."""
    path = Path(out)
    if path.is_dir():
        fail(f"{out}: is a directory; give a file name such as run.h5")
    check_output(out, inputs=inputs)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        fail(f"{out}: folder {parent} does not exist")
    if not resume and not os.access(parent, os.W_OK):
        fail(f"{out}: folder {parent} is not writable")
    # os.access says yes to root and on some read-only mounts; the lock file that hold() creates
    # next to the run file is the real test, made before any training.


@click.command(context_settings=CONTEXT)
@click.argument("data", required=False, type=click.Path(dir_okay=False))
@click.option("-r", "--rule", default="fa", show_default=True, help="Learning rule (see `fastfa rules`).")
@click.option(
    "--rule-opt",
    "rule_opts",
    multiple=True,
    callback=parse_key_values,
    metavar="KEY=VALUE",
    help="A rule option, e.g. feedback_scale=0.5 (repeatable).",
)
@click.option(
    "--hidden",
    default="1000",
    show_default=True,
    callback=parse_sizes,
    help="Hidden layer sizes, comma-separated (e.g. 800,800); empty for none.",
)
@click.option(
    "--layers",
    default="",
    metavar="LIST",
    help="The hidden layers as a list instead of --hidden: conv:C:K[:S[:P]] (C channels, KxK kernel, "
    "stride S, padding P), maxpool:K[:S], avgpool:K[:S], gap (global average pool), flatten, dense:N; "
    "e.g. conv:6:5,maxpool:2,conv:16:5,maxpool:2,dense:84. The output layer is added from the data. "
    "Conv and pooling layers need image data (fastfa data mnist --images) or --image-shape.",
)
@click.option(
    "--model",
    type=click.Choice(sorted(PRESETS)),
    default=None,
    help="A named layer list: " + "; ".join(f"{name} = {text}" for name, text in PRESETS.items()) + ".",
)
@click.option(
    "--image-shape",
    default=None,
    callback=parse_shape,
    metavar="CxHxW",
    help="Shape of each input image, for flat data with no recorded shape (default: the dataset's).",
)
@click.option("--activation", type=click.Choice(sorted(codes.ACTIVATIONS)), default="tanh", show_default=True)
@click.option(
    "--output-activation",
    type=click.Choice(sorted(codes.OUTPUT_ACTIVATIONS)),
    default=None,
    help="Default: softmax (classification) or identity (regression).",
)
@click.option(
    "--loss",
    type=click.Choice(sorted(codes.LOSSES)),
    default=None,
    help="Default: cross_entropy (classification) or squared_error (regression).",
)
@click.option(
    "--init",
    default="uniform",
    show_default=True,
    help="Weight init: uniform, glorot, he, zeros, or a number s for U[-s, s].",
)
@click.option(
    "--optimizer",
    type=click.Choice(sorted(codes.OPTIMIZERS)),
    default="sgd",
    show_default=True,
    help="sgd (--momentum, --nesterov), adam (--beta1, --beta2), or manhattan: Batch Manhattan, each "
    "parameter moves by --lr times the momentum recursion of its gradient's sign (Liao et al. 2016).",
)
@click.option("--lr", type=float, default=0.05, show_default=True, help="Learning rate.")
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--nesterov/--no-nesterov", default=False, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True, help="L2 penalty on weights.")
@click.option("--beta1", type=float, default=0.9, show_default=True, help="Adam.")
@click.option("--beta2", type=float, default=0.999, show_default=True, help="Adam.")
@click.option("--epsilon", type=float, default=1e-8, show_default=True, help="Adam.")
@click.option(
    "--schedule",
    type=click.Choice(SCHEDULES),
    default="constant",
    show_default=True,
    help="Learning-rate schedule per epoch.",
)
@click.option("--step-size", type=int, default=10, show_default=True, help="Epochs between step decays.")
@click.option(
    "--milestones",
    default="",
    callback=parse_sizes,
    metavar="E1,E2,...",
    help="Epochs after which the multistep schedule multiplies the rate by --gamma, e.g. 50,75.",
)
@click.option("--gamma", type=float, default=0.1, show_default=True, help="Step-decay factor.")
@click.option(
    "--lr-min", type=float, default=0.0, show_default=True, help="Final rate of the cosine schedule."
)
@click.option("-e", "--epochs", type=int, default=10, show_default=True)
@click.option(
    "--valid-fraction",
    type=float,
    default=None,
    help="Hold out this fraction of the training rows (drawn from --seed) for validation: it selects "
    "the best epoch, and the test split is reported once, for that model, at the end. Default: the "
    "dataset's valid split if it has one, else none (then each epoch reports test figures as "
    "learning curves, and nothing is selected).",
)
@click.option(
    "--early-stopping",
    type=int,
    default=None,
    metavar="N",
    help="Stop after N epochs without a better validation error (needs validation data).",
)
@click.option(
    "--standardize",
    type=click.Choice(["auto", "on", "channel", "off"]),
    default="auto",
    show_default=True,
    help="Standardise each feature with the mean and deviation of the training rows, kept in the run "
    "file and applied by evaluate, predict and export. auto: yes for float inputs (tabular data), no "
    "for uint8 inputs with x_scale (images such as MNIST, which train exactly as before). channel: one "
    "mean and deviation per image channel over all its pixels, as image models are usually fed.",
)
@click.option(
    "--crop-padding",
    type=int,
    default=0,
    show_default=True,
    metavar="PIXELS",
    help="Augment training images: pad each with PIXELS zeros on every side and crop it back at a random "
    "offset, drawn per batch from the seed (4 for CIFAR, as BioTorch). Evaluation never augments.",
)
@click.option("--flip/--no-flip", default=False, show_default=True,
              help="Augment training images: mirror half of them left to right.")  # fmt: skip
@click.option(
    "--dropout",
    default="",
    callback=parse_rates,
    metavar="RATE[,RATE...]",
    help="Drop each hidden unit in training with this probability (one rate, or one per hidden layer; "
    "masks drawn from the seed and the update number, so resume stays exact). On a layer list: the "
    "layers with weights.",
)
@click.option(
    "--batch-norm/--no-batch-norm",
    default=False,
    show_default=True,
    help="Batch normalisation of every hidden layer's pre-activation (as +bn on each layer of --layers): "
    "batch statistics in training, running ones in evaluation; every rule's signal passes through it.",
)
@click.option("-b", "--batch-size", type=int, default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--shuffle/--no-shuffle", default=True, show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--threads", type=int, default=None, help="Threads for BLAS and numba (default: all cores).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the batches run (cuda: an NVIDIA GPU, pip install 'fastfa[cuda]').")  # fmt: skip
@click.option("--plugin", "plugins", multiple=True, type=click.Path(dir_okay=False),
              help="A one-file rule plugin (a .py defining a Rule) to load first; repeatable.")  # fmt: skip
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=True),
    default=None,
    help="Run file to write (checkpointed at every epoch).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--resume", is_flag=True, help="Continue the run in --out (its settings are used).")
@click.option("--in-memory", is_flag=True, help="Read the training split into memory first.")
@click.option(
    "--chunk-rows",
    type=int,
    default=None,
    help="Rows read from the file at a time, the block-shuffle unit (default: 128 MiB of inputs).",
)
@click.option("--json", "json_out", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No per-epoch lines.")
@click.pass_context
@user_errors
def train(ctx, data, **opts):
    """Train a network on DATA (an HDF5 dataset; default: the bundled digits, or on
    --resume the dataset the run was trained on).

    \b
    Examples:
      fastfa train                                  # fa on the bundled digits
      fastfa train mnist.h5 --rule fa --hidden 1000 --epochs 20 -o fa.h5
      fastfa train mnist.h5 -o fa.h5 --resume       # continue an interrupted run
      fastfa train data.h5 --valid-fraction 0.1 --early-stopping 5 -o run.h5
      fastfa train mnist32.h5 --model lenet-mnist --activation relu -o lenet.h5
    """
    from fastfa.datasets import default_dataset_path
    from fastfa.rules import load_plugin_file
    from fastfa.session import Run

    check_inputs(opts["plugins"])
    for path in opts["plugins"]:
        load_plugin_file(path)
    if opts["device"] == "cpu" and not (opts["layers"] or opts["model"] or opts["batch_norm"]):
        from fastfa import first_run  # a dense network: its later kernels compile in a second process

        first_run.start_if_cold(opts["dtype"])

    if opts["threads"] is not None:
        if opts["threads"] < 1:
            fail(f"--threads must be a positive integer, got {opts['threads']}")
        _set_threads(opts["threads"])
    if opts["chunk_rows"] is not None and opts["chunk_rows"] < 1:
        fail(f"--chunk-rows must be a positive integer, got {opts['chunk_rows']}")
    out = opts["out"]
    _check_selection_options(opts)
    if opts["layers"] and opts["model"]:
        fail("--layers and --model both give the layer list; use one")
    given = {
        name
        for name in RUN_OPTIONS
        if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)
    }
    if "hidden" in given and given & {"layers", "model"}:
        fail("--hidden and --layers/--model both describe the hidden layers; use one")
    if opts["resume"] and out is None:
        fail("--resume needs --out RUN.h5, the run to continue")
    if out is not None:  # on --resume, fit() checks the dataset the run file names
        dataset = data or (None if opts["resume"] else default_dataset_path())
        _check_output(out, (dataset, *opts["plugins"]), opts["resume"])
    with hold(out, "run file") if out is not None else contextlib.nullcontext():
        if opts["resume"]:
            epochs_given = ctx.get_parameter_source("epochs") != click.core.ParameterSource.DEFAULT
            run = Run.resume(out, data, opts["epochs"] if epochs_given else None)
            _check_unchanged(run, given, opts)
        else:
            if out is not None and Path(out).exists() and not opts["overwrite"]:
                fail(f"{out}: already exists; pass --overwrite to replace it or --resume to continue it")
            config = _config(opts)
            run = Run.fresh(config, data, out, opts["chunk_rows"])
        _train(ctx, run, out, opts)


def _train(ctx, run, out, opts):
    """Train ``run`` (its output file held), printing as the options ask."""
    from fastfa.fitting import Interrupted
    from fastfa.session import fit

    quiet, json_out = opts["quiet"], opts["json_out"]
    emit = (lambda line: click.echo(line, err=True)) if json_out else click.echo
    show_bar = sys.stderr.isatty() and not quiet

    def make_bar(run, n_rows):
        return ProgressBar(n_rows, run.trainer.epoch + 1, run.epochs, show_bar)

    def on_start(run):
        from fastfa import kernel_cache

        if not quiet and not run.complete and not kernel_cache.is_cached(run.trainer):
            click.echo(kernel_cache.NOTICE, err=True)
        if run.selection.stopped_early:
            click.echo(f"{out}: already complete (stopped early at epoch {run.trainer.epoch})", err=True)
        elif run.complete:
            click.echo(f"{out}: already complete ({run.trainer.epoch}/{run.epochs} epochs); "
                       "pass --epochs N to train further", err=True)  # fmt: skip

    def on_epoch(run, record):
        if not quiet:
            emit(format_epoch({**record, "task": run.trainer.task}, run.epochs))
            if run.selection.stopped_early:
                emit(f"early stopping: no better validation figure for {run.config.early_stopping} epochs")
            if run.complete and run.selection.final_test:
                emit(format_final_test(run.selection.final_test, run.trainer.task))

    def warn(message):
        click.echo(f"Warning: {message}", err=True)

    with StopFlag() as stop:
        try:
            fit(
                run,
                in_memory=opts["in_memory"],
                device=opts["device"],
                should_stop=stop,
                make_report=make_bar,
                on_start=on_start,
                on_epoch=on_epoch,
                warn=warn,
            )
        except Interrupted:
            where = f"epoch {run.trainer.epoch + 1}, {run.progress.rows_done}/{run.train_rows} rows"
            if out:
                click.echo(
                    f"Interrupted: checkpoint at {where} saved to {out}; continue with --out {out} --resume",
                    err=True,
                )
            else:
                click.echo(f"Interrupted at {where} (no --out, nothing saved)", err=True)
            ctx.exit(EXIT_CODES[stop.signum])
    if json_out:
        echo_json(
            {
                "config": run.trainer.config.__dict__,
                "dataset": run.dataset,
                "out": out,
                "final": run.final(),
                "history": run.history,
                "sizes": list(run.trainer.arch.sizes),
            }
        )


def _check_selection_options(opts):
    fraction, patience = opts["valid_fraction"], opts["early_stopping"]
    if fraction is not None and not 0 < fraction < 1:
        fail(f"--valid-fraction must lie strictly between 0 and 1, got {fraction:g}")
    if patience is not None and patience < 1:
        fail(f"--early-stopping must be a positive number of epochs, got {patience}")


def _config(opts):
    """The :class:`~fastfa.config.TrainConfig` the options describe."""
    from fastfa.config import TrainConfig

    names = set(RUN_OPTIONS) - {
        "chunk_rows",
        "init",
        "valid_fraction",
        "early_stopping",
        "model",
        "image_shape",
    }
    settings = {OPTION_FIELDS.get(name, name): opts[name] for name in names}
    settings["layers"] = opts["model"] or opts["layers"]
    return TrainConfig(
        **settings,
        image_shape=opts["image_shape"] or (),
        init=_number_or_name(opts["init"]),
        epochs=opts["epochs"],
        valid_fraction=opts["valid_fraction"] or 0.0,
        early_stopping=opts["early_stopping"] or 0,
    )


def _check_unchanged(run, given, opts):
    """Fail when a run option given with --resume differs from the run file's; equal ones are fine."""
    from fastfa.rules import get_rule

    requested = _config({**opts, "epochs": run.config.epochs})
    stored = run.config
    changed = []
    for name in sorted(given):
        if name == "chunk_rows":
            old, new = run.chunk_rows, opts["chunk_rows"]
        elif name == "rule_opts":
            resolve = get_rule(stored.rule).resolve_options
            old, new = resolve(stored.rule_options), resolve(requested.rule_options)
        else:
            field = OPTION_FIELDS.get(name, name)
            old, new = getattr(stored, field), getattr(requested, field)
        if old != new:
            changed.append(f"--{name.replace('_', '-')} (run file: {_show(old)}, given: {_show(new)})")
    if changed:
        fail(f"{', '.join(changed)} cannot change when resuming; drop it to use the run file's settings")


def _show(value):
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number_or_name(text):
    try:
        return float(text)
    except ValueError:
        return text

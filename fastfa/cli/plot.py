"""``fastfa plot``: learning curves and alignment angles of run files, as a PNG."""

from __future__ import annotations

from pathlib import Path

import click

from fastfa.cli.options import CONTEXT, check_inputs, fail, user_errors


@click.command(context_settings=CONTEXT)
@click.argument("runs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--title", default=None, help="Figure title.")
@user_errors
def plot(runs, out, title):
    """Plot RUNS (run files): loss, error, and the alignment angles per hidden layer.

    One colour per rule; several seeds of a rule are drawn as their mean with a band
    from the lowest to the highest. Needs matplotlib: pip install 'fastfa[plot]'.

    \b
    Example:
      fastfa plot fa.h5 bp.h5 -o mnist.png
    """
    from fastfa.files import check_output
    from fastfa.plots import plot_runs, pyplot

    pyplot()  # a clear error before any file is read when matplotlib is missing
    check_inputs(runs)
    if Path(out).is_dir():
        fail(f"{out}: is a directory; give a file name such as curves.png")
    check_output(out, inputs=runs)
    parent = Path(out).parent
    if str(parent) and not parent.is_dir():
        fail(f"{out}: folder {parent} does not exist")
    plot_runs(runs, out, title)
    click.echo(f"wrote {out}")

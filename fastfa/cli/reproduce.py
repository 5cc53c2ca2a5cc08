"""``fastfa reproduce``: rerun a paper's headline result, next to the published numbers."""

from __future__ import annotations

from pathlib import Path

import click

from fastfa.cli.options import CONTEXT, fail, user_errors
from fastfa.reproduce.experiments import EXPERIMENTS


@click.command(context_settings=CONTEXT)
@click.argument("name", type=click.Choice(list(EXPERIMENTS)))
@click.option(
    "--seeds", type=int, default=None, help="Seeds per rule and network (default: the experiment's)."
)
@click.option("--epochs", type=int, default=None, help="Epochs per run (default: the experiment's).")
@click.option("--quick", is_flag=True, help="A small variant that checks only the direction of each result.")
@click.option("-o", "--out", type=click.Path(file_okay=False), default=None,
              help="Folder for runs, results.md and figures (default: runs/NAME[-quick]).")  # fmt: skip
@click.option("--data", type=click.Path(dir_okay=False), default=None, help="MNIST as a fastfa dataset file.")
@click.option("--mnist-dir", type=click.Path(file_okay=False), default=None,
              help="Folder with MNIST's four IDX files, converted into the output folder.")  # fmt: skip
@click.option("-w", "--workers", type=int, default=None, help="Runs at a time (default: one per core).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@user_errors
def reproduce(name, seeds, epochs, quick, out, data, mnist_dir, workers, quiet):
    """Rerun experiment NAME: one run file per rule and seed, a table next to the published
    numbers (results.md), the paper's claims checked, and PNG figures.

    Exits with status 1 when a claim does not hold.

    \b
    Examples:
      fastfa reproduce lillicrap-linear
      fastfa reproduce lillicrap-mnist --data mnist.h5 --seeds 3
      fastfa reproduce nokland-depth --mnist-dir ../mnist --quick
    """
    from fastfa.reproduce import reproduce as run

    for option, value in (("--seeds", seeds), ("--epochs", epochs), ("--workers", workers)):
        if value is not None and value < 1:
            fail(f"{option} must be a positive integer, got {value}")
    out = Path(out) if out else Path("runs") / (name + ("-quick" if quick else ""))
    markdown, claims, _ = run(name, out, seeds=seeds, epochs=epochs, quick=quick, data=data,
                              mnist_dir=mnist_dir, workers=workers, display=not quiet)  # fmt: skip
    click.echo(markdown, nl=False)
    failed = [claim for claim, ok in claims if not ok]
    if failed:
        fail(f"{len(failed)} claim(s) do not hold: {failed[0]}")

"""``fastfa sweep``: many runs over a grid of settings, on a local pool or a Dask cluster."""

from __future__ import annotations

from pathlib import Path

import click

from fastfa.cli.options import CONTEXT, fail, user_errors


@click.command(context_settings=CONTEXT)
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the run files and summary (default: the spec's name beside it).")  # fmt: skip
@click.option("-w", "--workers", type=int, default=None,
              help="Runs at a time (default: cores / threads per run).")  # fmt: skip
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Dask: 'local' starts a LocalCluster, tcp://HOST:PORT uses a running one "
                   "(needs fastfa[dask]). Default: a local pool of processes.")  # fmt: skip
@click.option("-t", "--threads-per-run", type=int, default=None,
              help="Threads of each run (default: the spec's threads_per_run, else 1).")  # fmt: skip
@click.option("--retry-failed", is_flag=True, help="Run again the runs that failed before.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Print the summary of the sweep in this folder and exit.")  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@user_errors
def sweep(spec, out, workers, scheduler, threads_per_run, retry_failed, report_dir, quiet):
    """Train every point of the grid in SPEC (TOML); rerun to resume.

    Each run is a normal run file in the output folder, named by its settings.
    Finished runs are skipped, interrupted ones resume from their last epoch, a
    failing run is recorded and the others go on. The summary (summary.md,
    summary.h5) gives mean +- std over seeds of the final metrics.

    \b
    Examples:
      fastfa sweep grid.toml                      # local pool, one run per core
      fastfa sweep grid.toml --scheduler local    # a Dask LocalCluster
      fastfa sweep grid.toml --scheduler tcp://10.0.0.5:8786 -o /shared/runs/grid
      fastfa sweep --report grid                  # print the summary again
    """
    from fastfa.sweep import load_spec, run_sweep, write_summary
    from fastfa.sweep.engines import sweep_folder

    if report_dir is not None:
        if spec is not None:
            fail("give either SPEC or --report DIR, not both")
        click.echo(write_summary(report_dir), nl=False)
        return
    if spec is None:
        fail("missing SPEC, a TOML sweep spec (or --report DIR)")
    for name, value in (("--workers", workers), ("--threads-per-run", threads_per_run)):
        if value is not None and value < 1:
            fail(f"{name} must be a positive integer, got {value}")
    parsed = load_spec(spec)
    out = Path(out) if out else Path(spec).with_suffix("")
    with sweep_folder(out):  # held until the summary is written; removed again if nothing ran
        outcomes = run_sweep(
            parsed,
            out,
            workers=workers,
            scheduler=scheduler,
            threads=threads_per_run,
            retry_failed=retry_failed,
            display=not quiet,
        )
        click.echo(write_summary(out), nl=False)
    failed = [o for o in outcomes if o["status"] == "failed"]
    if failed:
        fail(f"{len(failed)} of {len(outcomes)} runs failed; see {out / 'summary.md'}")

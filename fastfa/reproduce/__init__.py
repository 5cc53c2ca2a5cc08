"""``fastfa reproduce``: rerun a paper's headline result in one command.

:data:`~fastfa.reproduce.experiments.EXPERIMENTS` lists what can be reproduced;
:func:`reproduce` trains the runs (as a sweep), then writes ``results.md`` (the table next to
the published numbers, the validation error at the last learning-rate milestone and at the
end for runs selected on validation data, and the paper's claims checked) and the figures.
"""

from __future__ import annotations

from pathlib import Path

from fastfa.reproduce.experiments import EXPERIMENTS
from fastfa.reproduce.runner import get_experiment, run_experiment

__all__ = ["EXPERIMENTS", "reproduce"]


def reproduce(name, out_dir, *, seeds=None, epochs=None, quick=False, data=None, mnist_dir=None, workers=None,
              display=True):  # fmt: skip
    """Run experiment ``name`` into ``out_dir``; returns ``(markdown, checks, figure paths)``.

    ``checks`` is a list of ``(claim, holds)``. Figures are skipped (with a line saying so
    in the Markdown) when matplotlib is not installed.
    """
    from fastfa.reproduce import report

    exp = get_experiment(name)
    out_dir = Path(out_dir)
    tasks, dataset = run_experiment(exp, out_dir, seeds=seeds, epochs=epochs, quick=quick, data=data,
                                    mnist_dir=mnist_dir, workers=workers, display=display)  # fmt: skip
    runs = report.load_runs(exp, tasks, dataset)
    res = report.results(exp, runs)
    claims = report.checks(exp, res, runs, quick)
    try:
        with_data = report.open_dataset(dataset)
        with with_data as ds:
            per_epoch = ds.split("train").n_rows
        paths = report.figures(exp, runs, out_dir, per_epoch)
        figure_lines = [f"![{p.stem}]({p.name})" for p in paths]
    except ValueError as exc:  # matplotlib missing
        paths, figure_lines = [], [f"(figures skipped: {exc})"]
    epochs_run = max(int(r["history"]["epoch"][-1]) for r in runs)
    lines = [
        f"## {exp.name}{' (quick)' if quick else ''}",
        "",
        exp.title + ".",
        "",
        f"Reference: {exp.reference}. Data: `{Path(dataset).name}`. {epochs_run} epochs.",
        "",
        exp.note,
        "",
        report.table(exp, res),
        *filter(None, [report.convergence(runs, tasks[0].settings.get("milestones") or [])]),
        "Claims:",
        "",
        *[f"- {'PASS' if ok else 'FAIL'}: {claim}" for claim, ok in claims],
        "",
        *figure_lines,
        "",
    ]
    markdown = "\n".join(lines)
    (out_dir / "results.md").write_text(markdown)
    return markdown, claims, paths

"""A sweep's results: one row per setting, mean and spread over seeds of the final metrics.

:func:`collect` reads what is on disk -- the run files and failure records named
in ``DIR/sweep.json`` -- so a report can be made again at any time, during or
after a sweep. :func:`write_summary` writes ``DIR/summary.h5`` (every run, and
every group of runs that differ only in their seed) and ``DIR/summary.md``, both
atomically.

The final metrics are the last epoch's, except for runs with validation data
(``valid_fraction`` or a dataset's ``valid`` split), which select a model: their
``valid_*`` figures are those of the selected (best) epoch, and their ``test_*``
figures the selected model's on the test split, evaluated once at the end (the run
file's ``final_test``), since such runs record no per-epoch test curves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fastfa.files import FileSafetyError, atomic_text, check_regular
from fastfa.runs import RunFileError, atomic_h5, read_outcome
from fastfa.sweep.worker import read_failure

GRID_FILE = "sweep.json"
SUMMARY_FILES = ("summary.h5", "summary.md")
METRICS = ("train_loss", "train_error", "valid_loss", "valid_error", "test_loss", "test_error")
#: Metrics summary.h5 always has (NaN where absent); the validation ones only when a run has them.
ALWAYS = ("train_loss", "train_error", "test_loss", "test_error")
SELECTED_NOTE = (
    "valid_*: the best-validation epoch's figures; test_* of runs with validation data: that "
    "epoch's model, evaluated once on the test split (such runs record no per-epoch test curves)."
)


def write_grid(out_dir, tasks, *, source, dataset, base, axes):
    """Record the expanded grid in ``DIR/sweep.json`` (what ``--report`` reads).

    ``source`` names where the grid came from (a spec file, an experiment); ``axes``
    maps each axis to its values, in the order of the run names.
    """
    grid = {
        "spec": source,
        "dataset": dataset,
        "base": base,
        "axes": axes,
        "runs": [{"name": t.name, "point": t.point} for t in tasks],
    }
    atomic_text(Path(out_dir) / GRID_FILE, json.dumps(grid, indent=1, default=str))


def read_grid(out_dir):
    path = Path(out_dir) / GRID_FILE
    try:
        check_regular(path)
        return json.loads(path.read_text())
    except FileSafetyError:
        raise
    except FileNotFoundError:
        raise ValueError(f"{out_dir}: not a sweep folder (no {GRID_FILE})") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None


def collect(out_dir):
    """Every run of the sweep in ``out_dir``: name, point, status, final metrics (:func:`final_metrics`),
    error, and ``selected`` (whether the run selected its model on validation data)."""
    grid = read_grid(out_dir)
    rows = []
    for run in grid["runs"]:
        path = Path(out_dir) / f"{run['name']}.h5"
        row = {"name": run["name"], "point": run["point"], "status": "pending", "final": {}, "error": ""}
        failure = read_failure(path)
        if failure is not None:
            row.update(status="failed", error=failure["error"])
        elif path.exists():
            try:
                outcome = read_outcome(path)
            except RunFileError as exc:
                row.update(status="failed", error=str(exc))
            else:
                row["final"] = final_metrics(outcome["history"], outcome["final_test"], outcome["best_epoch"])
                row["selected"] = "valid_loss" in outcome["history"]
                row["status"] = "done" if outcome["complete"] else "partial"
        rows.append(row)
    return grid, rows


def final_metrics(history, final_test=None, best_epoch=None):
    """A run's final figures of :data:`METRICS` from its ``history`` and model selection.

    The last epoch's, except: ``valid_*`` are those of the selected epoch (``final_test``'s, else
    ``best_epoch``) when the history has it, and ``test_*`` come from ``final_test`` when the history
    has no test curves.
    """
    final = {k: v[-1] for k, v in history.items() if k in METRICS and len(v)}
    final_test = final_test or {}
    epoch = final_test.get("epoch", best_epoch)
    if "valid_loss" in history and epoch is not None and epoch in list(history.get("epoch", [])):
        index = list(history["epoch"]).index(epoch)
        final.update({k: history[k][index] for k in ("valid_loss", "valid_error") if k in history})
    if "test_loss" not in history and "test_error" not in history and final_test:
        final.update(test_loss=final_test["loss"], test_error=final_test["error"])
    return final


def group_rows(grid, rows):
    """Rows that differ only in ``seed``, merged: counts and mean/std of each final metric."""
    axes = [axis for axis in grid["axes"] if axis != "seed"]
    groups = {}
    for row in rows:
        key = json.dumps([row["point"].get(axis) for axis in axes], default=str)
        groups.setdefault(key, []).append(row)
    out = []
    for key, members in groups.items():
        done = [r for r in members if r["status"] == "done"]
        stats = {}
        for metric in METRICS:
            values = np.array([r["final"][metric] for r in done if metric in r["final"]], dtype=float)
            if values.size:
                std = values.std(ddof=1) if values.size > 1 else 0.0
                stats[metric] = (float(values.mean()), float(std))
        out.append(
            {
                "setting": dict(zip(axes, json.loads(key), strict=True)),
                "runs": len(members),
                "done": len(done),
                "failed": sum(r["status"] == "failed" for r in members),
                "stats": stats,
            }
        )
    return axes, out


def markdown_table(grid, rows):
    """The grouped results as a Markdown table (errors in percent; mean +- std over seeds)."""
    axes, groups = group_rows(grid, rows)
    metrics = [m for m in METRICS if any(m in g["stats"] for g in groups)]
    header = [*axes, "runs done", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in groups:
        cells = [_cell(g["setting"][axis]) for axis in axes]
        cells.append(f"{g['done']}/{g['runs']}" + (f" ({g['failed']} failed)" if g["failed"] else ""))
        for metric in metrics:
            if metric not in g["stats"]:
                cells.append("-")
                continue
            mean, std = g["stats"][metric]
            scale, unit = (100, "%") if metric.endswith("error") else (1, "")
            cells.append(f"{scale * mean:.2f}{unit} ± {scale * std:.2f}{unit}")
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.get("selected") and r["status"] == "done" for r in rows):
        lines += ["", SELECTED_NOTE]
    failures = [r for r in rows if r["status"] == "failed"]
    if failures:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {r['name']}: {r['error']}" for r in failures]
    return "\n".join(lines) + "\n"


def _cell(value):
    if isinstance(value, list):
        return "-".join(str(v) for v in value) or "none"
    return str(value)


def write_summary(out_dir):
    """Write ``summary.h5`` and ``summary.md`` for the sweep in ``out_dir``; returns the Markdown."""
    out_dir = Path(out_dir)
    grid, rows = collect(out_dir)
    table = markdown_table(grid, rows)
    axes, groups = group_rows(grid, rows)

    def write(f):
        f.attrs["format"] = "fastfa-sweep-summary"
        f.attrs["grid"] = json.dumps(grid, sort_keys=True, default=str)
        runs = f.create_group("runs")
        runs.create_dataset("name", data=[r["name"] for r in rows], dtype=h5_str())
        runs.create_dataset("status", data=[r["status"] for r in rows], dtype=h5_str())
        runs.create_dataset("error", data=[r["error"] for r in rows], dtype=h5_str())
        runs.create_dataset("point", data=[json.dumps(r["point"], default=str) for r in rows], dtype=h5_str())
        metrics = [m for m in METRICS if m in ALWAYS or any(m in r["final"] for r in rows)]
        for metric in metrics:
            runs.create_dataset(metric, data=[r["final"].get(metric, np.nan) for r in rows])
        grp = f.create_group("groups")
        grp.create_dataset("setting", data=[json.dumps(g["setting"]) for g in groups], dtype=h5_str())
        for key in ("runs", "done", "failed"):
            grp.create_dataset(key, data=[g[key] for g in groups])
        for metric in metrics:
            grp.create_dataset(f"{metric}_mean", data=[g["stats"].get(metric, (np.nan,))[0] for g in groups])
            grp.create_dataset(
                f"{metric}_std", data=[g["stats"].get(metric, (np.nan, np.nan))[1] for g in groups]
            )

    atomic_h5(out_dir / "summary.h5", write)
    atomic_text(out_dir / "summary.md", table)
    return table


def h5_str():
    import h5py

    return h5py.string_dtype()

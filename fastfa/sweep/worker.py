"""Train one run of a sweep into its run file: the function every engine calls.

A worker process (local pool or Dask) calls :func:`run_task` with a
:class:`~fastfa.sweep.spec.RunTask`. The run file is written atomically after
every epoch, so a worker killed mid-run leaves the last finished epoch behind and
the next attempt resumes from it. A run that cannot succeed -- a bad setting, a
dataset the worker cannot read, divergence -- is recorded in ``NAME.failed.json``
next to where its run file would be, and reported instead of raised, so the rest
of the sweep goes on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from fastfa.files import OutputBusyError, atomic_text, hold, is_regular

FAILED_SUFFIX = ".failed.json"


def failure_path(out):
    """Where the failure record of the run file ``out`` goes."""
    out = Path(out)
    return out.with_name(out.stem + FAILED_SUFFIX)


def run_task(task):
    """Train ``task`` to its last epoch (resuming its run file if one exists).

    Returns a dict: ``name``, ``status`` ("done" or "failed"), ``final`` (the
    last epoch's metrics), ``error`` (one line), ``seconds`` and ``pid``.
    """
    from fastfa.config import TrainConfig
    from fastfa.session import Run, fit
    from fastfa.threads import use_threads

    started = time.perf_counter()
    use_threads(task.threads)
    outcome = {"name": task.name, "status": "done", "final": {}, "error": "", "pid": os.getpid()}
    try:
        with hold(task.out, "run file"):  # another process writing this run: fail now, record nothing
            if Path(task.out).exists():
                run = Run.resume(task.out, task.dataset)
                check_same_settings(run.config, TrainConfig(**task.settings), task.out)
            else:
                run = Run.fresh(TrainConfig(**task.settings), task.dataset, task.out)
            fit(run, in_memory=task.in_memory, record_start=task.record_start)
            outcome["final"] = run.final()
            failure_path(task.out).unlink(missing_ok=True)
    except OutputBusyError as exc:
        outcome.update(status="failed", error=str(exc))
    except (ValueError, TypeError, KeyError, OSError) as exc:  # the library's user errors
        message = " ".join(str(exc.args[0] if exc.args else exc).split())
        outcome.update(status="failed", error=message)
        record_failure(task, message)
    outcome["seconds"] = time.perf_counter() - started
    return outcome


def check_same_settings(found, wanted, out):
    """Raise ``ValueError`` when the run file ``out`` holds a run of other settings than ``wanted``.

    A rerun resumes what it finds; after a spec or an experiment changes, the old file
    must not pass for the new run.
    """
    differ = [
        f"{f.name} {getattr(found, f.name)!r} (wanted {getattr(wanted, f.name)!r})"
        for f in dataclasses.fields(wanted)
        if getattr(found, f.name) != getattr(wanted, f.name)
    ]
    if differ:
        raise ValueError(
            f"{out} holds a run with other settings: {'; '.join(differ)}; move it away or write elsewhere"
        )


def record_failure(task, message):
    """Write ``NAME.failed.json`` (atomically) with the run's settings and error."""
    record = {"name": task.name, "settings": task.settings, "point": task.point, "error": message}
    atomic_text(failure_path(task.out), json.dumps(record, sort_keys=True, default=str))


def read_failure(out):
    """The failure record of run file ``out``, or ``None``."""
    path = failure_path(out)
    if not is_regular(path):  # missing, or a FIFO that would block the reader
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

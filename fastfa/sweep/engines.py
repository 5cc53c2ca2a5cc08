"""Run a sweep's tasks: a local pool of processes, or a Dask distributed cluster.

Both engines call :func:`fastfa.sweep.worker.run_task` in long-lived worker
processes, each run with ``threads`` threads (BLAS and numba), so a run's result
does not depend on the engine or on which worker ran it.

- **local** (default, no extra dependency): ``workers`` processes started with
  ``spawn``. A worker that dies (killed, out of memory) breaks the pool; the runs
  it held are submitted again to a fresh pool and resume from their last saved
  epoch, up to :data:`MAX_ATTEMPTS` times.
- **dask** (``pip install fastfa[dask]``): ``scheduler="local"`` starts a
  ``LocalCluster`` of ``workers`` processes; ``scheduler="tcp://HOST:PORT"``
  submits to a running cluster, whose workers must have fastfa installed and see
  the dataset and the output folder at the same paths. Dask itself reschedules
  the runs of a worker that dies.

Before anything is submitted, runs whose file is complete are skipped, and so are
runs with a failure record unless ``retry_failed``.

A sweep holds its folder (:func:`sweep_folder`: the lock of ``DIR/sweep.json``) while it runs,
so a second sweep into the same folder fails at once; each run holds its run file. A sweep that
fails before any run leaves no folder it created.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from fastfa.config import TrainConfig
from fastfa.files import check_output, check_regular, output_folder
from fastfa.runs import RunFileError, read_outcome
from fastfa.sweep.summary import GRID_FILE, SUMMARY_FILES, write_grid
from fastfa.sweep.worker import check_same_settings, failure_path, read_failure, record_failure, run_task

MAX_ATTEMPTS = 3
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def plan(tasks, retry_failed=False):
    """Split ``tasks`` into ``(to_run, finished)``; ``finished`` holds outcomes of runs not to redo."""
    to_run, finished = [], []
    for task in tasks:
        status = _existing_status(task)
        if status is None or (status["status"] == "failed" and retry_failed):
            to_run.append(task)
        else:
            finished.append(status)
    return to_run, finished


def _existing_status(task):
    failure = read_failure(task.out)
    if failure is not None:
        return {"name": task.name, "status": "failed", "final": {}, "error": failure["error"], "skipped": 1}
    if not Path(task.out).exists():
        return None
    try:
        outcome = read_outcome(task.out)
    except RunFileError:
        return None  # not a run file we can continue: train it again
    try:  # a rerun after the spec changed must not take an old run for the new one
        check_same_settings(TrainConfig(**outcome["config"]), TrainConfig(**task.settings), task.out)
    except ValueError as exc:
        record_failure(task, str(exc))  # so the summary lists it as failed, not as the new run
        return {"name": task.name, "status": "failed", "final": {}, "error": str(exc), "skipped": 1}
    if not outcome["complete"]:
        return None  # a checkpoint: resume it
    final = {key: values[-1] for key, values in outcome["history"].items()}
    return {"name": task.name, "status": "done", "final": final, "error": "", "skipped": 1}


@contextlib.contextmanager
def thread_environment(threads):
    """Thread-count variables for worker processes started inside the block."""
    saved = {var: os.environ.get(var) for var in THREAD_VARIABLES}
    os.environ.update({var: str(threads) for var in THREAD_VARIABLES})
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def run_local(tasks, workers, threads, report):
    """Run ``tasks`` on a pool of ``workers`` processes; ``report(outcome)`` as each ends."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    attempts = dict.fromkeys((t.name for t in tasks), 0)
    pending = list(tasks)
    while pending:
        with thread_environment(threads):
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            futures = {pool.submit(run_task, task): task for task in pending}
            pending = []
            try:
                for future in as_completed(futures):
                    task = futures[future]
                    try:
                        report(future.result())
                    except BrokenProcessPool:
                        attempts[task.name] += 1
                        if attempts[task.name] < MAX_ATTEMPTS:
                            pending.append(task)
                        else:
                            report(_died(task, attempts[task.name]))
                    except Exception as exc:  # noqa: BLE001 (an unexpected error inside the run)
                        report(_crashed(task, exc))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)


def run_dask(tasks, scheduler, workers, threads, report):
    """Run ``tasks`` on a Dask cluster (``"local"`` starts one); ``report(outcome)`` as each ends."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ValueError("--scheduler needs Dask distributed: pip install 'fastfa[dask]'") from None
    import logging
    import uuid

    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            with thread_environment(threads):
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        silence_logs=logging.ERROR,
                    )
                )
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout="5s"))
            except (OSError, TimeoutError) as exc:
                raise ValueError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from None
        sweep_id = uuid.uuid4().hex[:8]
        futures = {
            client.submit(run_task, task, key=f"fastfa-{sweep_id}-{task.name}", pure=False): task
            for task in tasks
        }
        for future in as_completed(futures):
            task = futures[future]
            try:
                report(future.result())
            except Exception as exc:  # KilledWorker: the run took down its workers too often
                report(_died(task, MAX_ATTEMPTS, exc))


def _crashed(task, exc):
    """Record a run that raised something other than the library's user errors, in one line."""
    text = " ".join(str(exc).split())
    message = f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
    record_failure(task, message)
    return {"name": task.name, "status": "failed", "final": {}, "error": message}


def _died(task, attempts, exc=None):
    why = f" ({exc.__class__.__name__})" if exc is not None else ""
    message = f"its worker process died {attempts} times{why}"
    record_failure(task, message)
    return {"name": task.name, "status": "failed", "final": {}, "error": message}


class Display:
    """Runs done / running / failed: a status line on a terminal, one line per finished run otherwise."""

    def __init__(self, total, workers, stream=None, enabled=True):
        self.total, self.workers, self.enabled = total, workers, enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = self.failed = 0
        self.started = time.perf_counter()

    def __call__(self, outcome):
        if outcome["status"] == "done":
            self.done += 1
        else:
            self.failed += 1
        if not self.enabled:
            return
        ended = self.done + self.failed
        what = "failed: " + outcome["error"] if outcome["status"] == "failed" else "done"
        if outcome.get("skipped"):
            what += " (earlier)"
        line = f"[{ended}/{self.total}] {outcome['name']} {what}"
        if self.tty:
            self.stream.write("\r\033[K" + line + "\n" + self.status())
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def status(self):
        running = min(self.workers, self.total - self.done - self.failed)
        elapsed = time.perf_counter() - self.started
        counts = f"{self.done} done, {running} running, {self.failed} failed of {self.total}"
        return f"runs: {counts} ({elapsed:.0f} s)"

    def close(self):
        if self.enabled:
            self.stream.write(("\r\033[K" if self.tty else "") + self.status() + "\n")
            self.stream.flush()


def sweep_folder(out_dir):
    """Hold the sweep folder ``out_dir`` for the block (creating it; a second writer fails at once,
    naming the holder); a folder it created is removed again if the block fails before writing
    anything in it (:func:`fastfa.files.output_folder`). Reentrant."""
    return output_folder(out_dir, GRID_FILE)


def check_outputs(tasks, out_dir, inputs):
    """Refuse a sweep whose outputs -- the grid, the summary, run files, failure records -- include
    one of its ``inputs`` (the spec, the dataset) under any name, or a FIFO or device."""
    out_dir = Path(out_dir)
    outputs = [out_dir / name for name in (GRID_FILE, *SUMMARY_FILES)]
    for task in tasks:
        outputs += [Path(task.out), failure_path(task.out)]
    for path in outputs:
        check_output(path, inputs=inputs)


def run_sweep(spec, out_dir, *, workers=None, scheduler=None, threads=None, retry_failed=False, display=True):
    """Run every grid point of ``spec`` not finished yet; returns the outcomes of all of them.

    ``workers`` defaults to the number of cores divided by ``threads``. Everything is checked
    before the folder is created, and the folder is held (:func:`sweep_folder`) while the runs go.
    """
    out_dir = Path(out_dir)
    threads = threads or spec.threads_per_run
    tasks = spec.tasks(out_dir, threads)
    if scheduler in (None, "local"):
        if not Path(spec.dataset).exists():
            raise ValueError(f"{spec.dataset}: no such dataset (named in {spec.path})")
        check_regular(spec.dataset)
    check_outputs(tasks, out_dir, inputs=(spec.path, spec.dataset))
    with sweep_folder(out_dir):
        write_grid(out_dir, tasks, source=spec.path, dataset=spec.dataset, base=spec.base, axes=spec.axes)
        return run_tasks(
            tasks, workers=workers, scheduler=scheduler, retry_failed=retry_failed, display=display
        )


def run_tasks(tasks, *, workers=None, scheduler=None, retry_failed=False, display=True):
    """Run the :class:`~fastfa.sweep.spec.RunTask` list ``tasks`` (all with the same thread count)."""
    threads = max((t.threads for t in tasks), default=1)
    workers = workers or max(1, (os.cpu_count() or 1) // threads)
    to_run, finished = plan(tasks, retry_failed)
    show = Display(len(tasks), workers, enabled=display)
    outcomes = {}

    def report(outcome):
        outcomes[outcome["name"]] = outcome
        show(outcome)

    for outcome in finished:
        report(outcome)
    try:
        if to_run and scheduler is None:
            run_local(to_run, workers, threads, report)
        elif to_run:
            run_dask(to_run, scheduler, workers, threads, report)
    finally:
        show.close()
    return [outcomes[task.name] for task in tasks if task.name in outcomes]

"""What ``fastfa train`` shows while it trains, and how it stops on SIGINT/SIGTERM: the epoch
lines, the final test line of a model selected on validation data, the progress bar, and the
flag that turns a signal into a stop between two slices (a checkpoint, then exit 130/143)."""

from __future__ import annotations

import signal
import time

import click

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopFlag:
    """Records SIGINT/SIGTERM instead of dying, so training stops between two slices."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __call__(self):
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        for signum in EXIT_CODES:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False


def format_epoch(record, epochs):
    """One epoch's line: training loss and error, validation and test figures where the run has
    them, the alignment angles where it measures them, and the epoch's seconds."""
    parts = [f"epoch {record['epoch']:>3}/{epochs}", f"train loss {record['train_loss']:.4f}"]
    if "train_error" in record and record.get("task") != "regression":
        parts.append(f"err {100 * record['train_error']:.2f}%")
    for split in ("valid", "test"):
        if f"{split}_loss" in record:
            parts.append(f"| {split} loss {record[f'{split}_loss']:.4f}")
            if record.get("task") != "regression":
                parts.append(f"err {100 * record[f'{split}_error']:.2f}%")
    if record.get("update_angle"):
        fmt = lambda values: ",".join("nan" if v != v else f"{v:.0f}" for v in values)  # noqa: E731
        parts.append(f"| angle upd {fmt(record['update_angle'])} fb {fmt(record['feedback_angle'])}")
    parts.append(f"| {record['seconds']:.2f}s")
    return "  ".join(parts)


class ProgressBar:
    """A one-line progress display on stderr (only when stderr is a terminal)."""

    def __init__(self, total, epoch, epochs, enabled):
        self.total, self.epoch, self.epochs, self.enabled = total, epoch, epochs, enabled
        self.started = time.perf_counter()

    def __call__(self, rows_done, loss_sum):
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        rate = rows_done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - rows_done) / rate if rate > 0 else 0.0
        width = 30
        filled = int(width * rows_done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        click.echo(
            f"\repoch {self.epoch}/{self.epochs} [{bar}] loss {loss_sum / max(rows_done, 1):.4f} "
            f"{rate:,.0f} samples/s ETA {eta:4.0f}s",
            err=True,
            nl=False,
        )

    def close(self):
        if self.enabled:
            click.echo("\r" + " " * 100 + "\r", err=True, nl=False)


def format_final_test(test, task):
    """The once-only test line of a run that selected its model on validation data."""
    line = f"test   loss {test['loss']:.4f}"
    if task != "regression":
        line += f"  err {100 * test['error']:.2f}%"
    return line + f"  ({test['model']} model, epoch {test['epoch']}; selected on validation data)"

"""One run, from a dataset to a run file: the loop `fastfa train` and sweep workers share.

A :class:`Run` is a new configuration or a run file to continue. :func:`fit`
opens the dataset, trains epoch after epoch, records each epoch's metrics in the
history and, when the run has an output file, saves it atomically after every
epoch. A stop request between two slices of rows saves a mid-epoch checkpoint
from which :meth:`Run.resume` continues bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastfa.config import TrainConfig
from fastfa.datasets import default_dataset_path, open_dataset
from fastfa.fitting import (
    Interrupted,
    Progress,
    default_chunk_rows,
    epoch_record,
    initial_record,
    probe_batch,
    train_epoch,
)
from fastfa.runs import load_run, save_run
from fastfa.train import Trainer


class Diverged(ValueError):
    """The training loss became NaN or infinite; the run file keeps the last good epoch."""


@dataclass
class Run:
    """A run to train: its configuration or trainer, history, position and files.

    Attributes
    ----------
    config : TrainConfig
    trainer : Trainer or None
        ``None`` for a new run until :func:`fit` has read the dataset's shape.
    history : dict of list
        One entry per finished epoch for each metric of :func:`~fastfa.fitting.epoch_record`.
    progress : Progress
        Position inside an unfinished epoch.
    dataset : str
        Path of the HDF5 dataset.
    out : str or None
        Run file written after every epoch (``None``: nothing is saved).
    chunk_rows : int or None
        Rows read at a time (the block-shuffle unit); ``None`` for the default.
    """

    config: TrainConfig
    dataset: str
    out: str | None = None
    chunk_rows: int | None = None
    trainer: Trainer | None = None
    history: dict = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)
    train_rows: int = 0  # rows of the training split, once fit has opened the dataset

    @classmethod
    def fresh(cls, config, dataset=None, out=None, chunk_rows=None):
        """A new run of ``config`` on ``dataset`` (default: the bundled digits)."""
        return cls(config, str(dataset or default_dataset_path()), out, chunk_rows)

    @classmethod
    def resume(cls, out, dataset=None, epochs=None):
        """The run saved in ``out``, to continue on ``dataset`` (default: the one it was trained on).

        ``epochs`` replaces the configured number of epochs. Raises
        :class:`~fastfa.runs.RunFileError` when ``out`` is not a readable run file.
        """
        trainer, history, meta = load_run(out)
        if epochs is not None:
            trainer.config = trainer.config.replace(epochs=epochs)
        dataset = dataset or meta["dataset"] or default_dataset_path()
        return cls(
            trainer.config,
            str(dataset),
            str(out),
            meta["chunk_rows"] or None,
            trainer,
            history,
            Progress.from_attrs(meta["progress"]),
        )

    @property
    def epochs(self):
        return self.config.epochs

    @property
    def complete(self):
        """Whether every configured epoch is done."""
        return self.trainer is not None and self.trainer.epoch >= self.epochs

    def final(self):
        """The last epoch's metrics (empty before the first epoch ends)."""
        return {key: values[-1] for key, values in self.history.items()}

    def save(self, progress=None):
        if self.out:
            save_run(
                self.out,
                self.trainer,
                self.history,
                dataset=self.dataset,
                chunk_rows=self.chunk_rows or 0,
                progress=progress,
                complete=self.complete,
            )


def fit(run, *, in_memory=False, record_start=False, device="cpu", should_stop=None, make_report=None,
        on_start=None, on_epoch=None):  # fmt: skip
    """Train ``run`` to its last epoch; returns it.

    Parameters
    ----------
    in_memory : bool
        Read the training split into memory first (same result as streaming).
    device : {"cpu", "cuda"}
        Where the batches run (:meth:`~fastfa.train.Trainer.use_device`).
    record_start : bool
        Begin a new run's history with epoch 0, the untrained network
        (:func:`~fastfa.fitting.initial_record`), for curves that start at the beginning.
    should_stop : callable, optional
        Checked between slices of rows; when it returns true the run saves a
        mid-epoch checkpoint (if it has an output file) and :class:`Interrupted` is raised.
    on_start : callable, optional
        ``on_start(run)`` once the dataset is open and fits the run, before training.
    make_report : callable, optional
        ``make_report(run, n_rows)`` returns the per-slice ``report(rows_done, loss_sum)``
        of an epoch, or an object with that call and a ``close()`` method.
    on_epoch : callable, optional
        ``on_epoch(run, record)`` after each finished (and saved) epoch.

    Raises
    ------
    Interrupted, Diverged
        As above; :class:`~fastfa.datasets.DatasetError` or ``ValueError`` for
        data that do not fit the run.
    """
    with open_dataset(run.dataset) as ds:
        shape = (ds.n_features, ds.n_outputs, ds.task)
        if run.trainer is None:
            run.trainer = Trainer(run.config, ds.n_features, ds.n_outputs, ds.task)
        trainer = run.trainer
        if shape != (trainer.arch.sizes[0], trainer.arch.sizes[-1], trainer.task):
            raise ValueError(
                f"{run.dataset}: {ds.task} data with {ds.n_features} features and {ds.n_outputs} outputs "
                f"do not fit the run's {trainer.task} model {trainer.arch.sizes}"
            )
        if trainer.device != device:
            trainer.use_device(device)
        run.chunk_rows = run.chunk_rows or default_chunk_rows(ds.n_features, trainer.dtype)
        train_split = ds.split("train")
        if in_memory:
            train_split = train_split.in_memory(trainer.dtype)
        test_split = ds.split("test") if "test" in ds.splits else None
        probe = probe_batch(trainer, train_split)
        run.train_rows = train_split.n_rows
        if on_start is not None:
            on_start(run)
        if record_start and trainer.epoch == 0 and not run.history and run.progress.rows_done == 0:
            for key, value in initial_record(trainer, train_split, test_split, probe).items():
                run.history[key] = [value]
            run.save()
        while trainer.epoch < run.epochs:
            report = make_report(run, train_split.n_rows) if make_report else None
            try:
                train_epoch(
                    trainer,
                    train_split,
                    run.progress,
                    chunk_rows=run.chunk_rows,
                    should_stop=should_stop,
                    report=report,
                )
            except Interrupted:
                run.save(progress=run.progress.to_attrs())
                raise
            finally:
                if hasattr(report, "close"):
                    report.close()
            record = epoch_record(trainer, run.progress, test_split, probe)
            if not np.isfinite(record["train_loss"]):
                kept = f" ({run.out} keeps the last good epoch)" if run.out and trainer.epoch > 1 else ""
                loss = record["train_loss"]
                raise Diverged(f"training diverged in epoch {trainer.epoch} (loss {loss}); lower --lr{kept}")
            for key, value in record.items():
                run.history.setdefault(key, []).append(value)
            run.progress = Progress()
            run.save()
            if on_epoch is not None:
                on_epoch(run, record)
    return run

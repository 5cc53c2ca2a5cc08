"""One run, from a dataset to a run file: the loop `fastfa train` and sweep workers share.

A :class:`Run` is a new configuration or a run file to continue. :func:`fit`
opens the dataset, trains epoch after epoch, records each epoch's metrics in the
history and, when the run has an output file, saves it atomically after every
epoch, holding the file's lock meanwhile (:func:`fastfa.files.hold`: a second writer
fails at once). A stop request between two slices of rows saves a mid-epoch checkpoint
from which :meth:`Run.resume` continues bit for bit.

Model selection (docs/selection.md): with validation data -- ``valid_fraction`` of the
training rows, or the dataset's ``valid`` split -- each epoch records the validation
figures, the run keeps the parameters of the best epoch (lowest validation error, ties
broken by loss; lowest loss for regression), stops early after ``early_stopping`` epochs
without a better one, and evaluates the test split once, at the end, for the selected
model. Without validation data nothing is selected, and each epoch records the test
figures as learning curves, as the papers plot them.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from fastfa.config import TrainConfig
from fastfa.datasets import default_dataset_path, open_dataset
from fastfa.files import check_output, hold
from fastfa.fitting import (
    Interrupted,
    Progress,
    default_chunk_rows,
    epoch_record,
    evaluate_split,
    initial_record,
    probe_batch,
    train_epoch,
)
from fastfa.limits import check_config
from fastfa.rules import PluginError
from fastfa.runs import Selection, load_run, save_run
from fastfa.standardize import channel_stats, feature_stats, unscaled_warning, wants_standardization
from fastfa.train import Trainer
from fastfa.validation import holdout_rows, run_splits


class Diverged(ValueError):
    """The training loss became NaN or infinite, or blew up (:func:`blowup`); the run file keeps
    the last good epoch."""


#: A classification run whose epoch's training loss exceeds this multiple of the chance-level loss
#: (:func:`chance_loss`) has diverged: its outputs are saturated and mostly wrong.
BLOWUP_CLASSIFICATION = 8.0
#: The same for regression, whose squared error has no ceiling: orders of magnitude above chance.
BLOWUP_REGRESSION = 1000.0


def chance_loss(trainer, probe=None):
    """The loss per row of guessing: uniform class probabilities for classification (``ln K`` for
    softmax cross-entropy, ``K ln 2`` for logistic outputs, ``(1 - 1/K) / 2`` for squared error);
    for regression predicting the mean target (half the summed variance of the probe rows'
    targets, ``probe = (x, y)``)."""
    arch, k = trainer.arch, trainer.arch.sizes[-1]
    if trainer.task == "classification":
        if arch.loss == "cross_entropy":
            return k * math.log(2) if arch.output_activation == "logistic" or k == 1 else math.log(k)
        return 0.5 * (1 - 1 / max(k, 2))
    y = np.asarray(probe[1], dtype=np.float64) if probe is not None else np.zeros((0, k))
    if y.ndim == 1:
        y = y[:, None]
    spread = 0.5 * float(np.sum(np.var(y, axis=0))) if len(y) > 1 else 0.0
    return max(spread, 1e-12 * (1.0 + float(np.mean(y * y)) if y.size else 1.0))


def blowup(record, trainer, probe=None):
    """Why an epoch's ``record`` shows divergence, or ``None``: a train loss that is NaN or
    infinite, or above :data:`BLOWUP_CLASSIFICATION` (classification) or
    :data:`BLOWUP_REGRESSION` (regression) times :func:`chance_loss`."""
    loss = record["train_loss"]
    if not np.isfinite(loss):
        return f"loss {loss}"
    chance = chance_loss(trainer, probe)
    factor = BLOWUP_CLASSIFICATION if trainer.task == "classification" else BLOWUP_REGRESSION
    if loss > factor * chance:
        return f"train loss {loss:.4g}, over {factor:g} times the {chance:.4g} of guessing"
    return None


def selection_key(history, index, task):
    """How good epoch ``history[..][index]`` is on validation data: smaller is better.

    Classification compares the error rate, then the loss; regression the loss.
    """
    loss = history["valid_loss"][index]
    return (history["valid_error"][index], loss) if task == "classification" else (loss,)


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
    selection : Selection
        Validation rows, the best epoch's parameters, early stopping and the final test figures.
    """

    config: TrainConfig
    dataset: str
    out: str | None = None
    chunk_rows: int | None = None
    trainer: Trainer | None = None
    history: dict = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)
    train_rows: int = 0  # rows of the training split, once fit has opened the dataset
    selection: Selection = field(default_factory=Selection)

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
            selection=meta["selection"],
        )

    @property
    def epochs(self):
        return self.config.epochs

    @property
    def complete(self):
        """Whether every configured epoch is done, or early stopping ended the run."""
        return self.trainer is not None and (
            self.trainer.epoch >= self.epochs or self.selection.stopped_early
        )

    def final(self):
        """The last epoch's metrics (empty before the first epoch ends), and the final test figures."""
        final = {key: values[-1] for key, values in self.history.items()}
        test = self.selection.final_test
        if test:
            final.update({"test_loss": test["loss"], "test_error": test["error"]})
            final.update(selected_model=test["model"], selected_epoch=test["epoch"])
        return final

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
                selection=self.selection,
            )

    # ------------------------------------------------------------- selection

    def splits(self, ds):
        """The dataset's splits as this run sees them (:func:`~fastfa.validation.run_splits`),
        drawing the validation rows of a new run with ``valid_fraction``."""
        selection, fraction = self.selection, self.config.valid_fraction
        if fraction > 0 and selection.valid_rows is None:
            n_rows = ds.split("train").n_rows
            selection.valid_rows = holdout_rows(n_rows, fraction, self.config.seed)
            selection.train_rows = n_rows
        return run_splits(ds, selection.valid_rows, selection.train_rows)

    def note_epoch(self, record):
        """Keep the best epoch's parameters and decide early stopping, after ``record`` joined the history."""
        if "valid_loss" not in record:
            return
        selection, task = self.selection, self.trainer.task
        index = len(self.history["epoch"]) - 1
        if selection.best_params is not None:
            best = self.history["epoch"].index(selection.best_epoch)
            if not selection_key(self.history, index, task) < selection_key(self.history, best, task):
                patience = self.config.early_stopping
                if patience and record["epoch"] - selection.best_epoch >= patience:
                    selection.stopped_early = True
                return
        selection.best_params = self.trainer.params.copy()
        selection.best_epoch = int(record["epoch"])

    def evaluate_selected(self, split):
        """Loss and error of the selected model (best epoch if any, else the last) on ``split``,
        recorded as :attr:`Selection.final_test`."""
        selection, trainer = self.selection, self.trainer
        last = trainer.params.copy()
        model, epoch = (
            ("last", trainer.epoch) if selection.best_params is None else ("best", selection.best_epoch)
        )
        try:
            if model == "best":
                trainer.params[...] = selection.best_params
            loss, error = evaluate_split(trainer, split)
        finally:
            trainer.params[...] = last
        selection.final_test = {
            "model": model,
            "epoch": epoch,
            "loss": loss,
            "error": error,
            "rows": split.n_rows,
        }
        return selection.final_test


def _with_image_shape(config, ds):
    """``config`` with the dataset's image shape when its layer list or its augmentation needs one
    and it gives none."""
    if not (config.layers or config.augments) or config.image_shape or ds.image_shape is None:
        return config
    return config.replace(image_shape=tuple(ds.image_shape))


def _standardize_new_run(run, train_split, warn):
    """Give a new run's trainer the training rows' feature statistics, when its setting asks for them;
    warn (``warn(message)``) when it does not and the inputs look unscaled."""
    trainer = run.trainer
    if run.config.standardize == "channel":
        channels = run.config.image_shape[0] if run.config.image_shape else 1
        trainer.standardization = channel_stats(train_split, channels)
    elif wants_standardization(run.config.standardize, train_split.x_dtype):
        trainer.standardization = feature_stats(train_split)
    elif train_split.x_dtype != np.uint8:
        x, _ = train_split.read(0, min(train_split.n_rows, 4096), dtype="float64")
        message = unscaled_warning(x)
        if message:
            warn(message)


def fit(run, *, in_memory=False, record_start=False, device="cpu", should_stop=None, make_report=None,
        on_start=None, on_epoch=None, warn=None):  # fmt: skip
    """Train ``run`` to its last epoch (or until early stopping ends it); returns it.

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
    warn : callable, optional
        ``warn(message)`` for advice about the data (default: :func:`warnings.warn`).

    Raises
    ------
    Interrupted, Diverged
        As above; :class:`~fastfa.datasets.DatasetError` or ``ValueError`` for
        data that do not fit the run; :class:`~fastfa.files.FileSafetyError` when the
        output file is the dataset, or another process is writing it.
    """
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    if run.out:
        check_output(run.out, inputs=(run.dataset,))
    writing = hold(run.out, "run file") if run.out else contextlib.nullcontext()
    with writing, open_dataset(run.dataset) as ds:
        shape = (ds.n_features, ds.n_outputs, ds.task)
        new = run.trainer is None
        if new:
            run.config = _with_image_shape(run.config, ds)
            outputs = f"n_classes = {ds.n_outputs}" if ds.task == "classification" else "targets"
            check_config(run.config, ds.n_features, ds.n_outputs, f"{run.dataset} ({outputs})")
            run.trainer = Trainer(run.config, ds.n_features, ds.n_outputs, ds.task)
        trainer = run.trainer
        if shape != (trainer.arch.sizes[0], trainer.arch.sizes[-1], trainer.task):
            raise ValueError(
                f"{run.dataset}: {ds.task} data with {ds.n_features} features and {ds.n_outputs} outputs "
                f"do not fit the run's {trainer.task} model {trainer.arch.sizes}"
            )
        splits = run.splits(ds)
        train_split, valid_split, test_split = (splits.get(name) for name in ("train", "valid", "test"))
        if run.config.early_stopping and valid_split is None:
            raise ValueError(
                "--early-stopping needs validation data: --valid-fraction F, or a dataset "
                "with a 'valid' split"
            )
        if new:
            _standardize_new_run(run, train_split, warn)
            trainer.class_names = ds.classes if ds.task == "classification" else None
        if trainer.device != device:
            trainer.use_device(device)
        run.chunk_rows = run.chunk_rows or default_chunk_rows(ds.n_features, trainer.dtype)
        if in_memory:
            train_split = train_split.in_memory(trainer.dtype)
        curves = [valid_split] if valid_split is not None else [test_split] if test_split is not None else []
        probe = probe_batch(trainer, train_split)
        run.train_rows = train_split.n_rows
        if on_start is not None:
            on_start(run)
        if record_start and trainer.epoch == 0 and not run.history and run.progress.rows_done == 0:
            for key, value in initial_record(trainer, train_split, curves, probe).items():
                run.history[key] = [value]
            run.save()
        while not run.complete:
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
            except PluginError as exc:
                kept = f"; {run.out} keeps its last checkpoint" if run.out and trainer.epoch else ""
                raise PluginError(f"{exc}{kept}") from None
            finally:
                if hasattr(report, "close"):
                    report.close()
            record = epoch_record(trainer, run.progress, curves, probe)
            why = blowup(record, trainer, probe)
            if why:
                kept = f" ({run.out} keeps the last good epoch)" if run.out and trainer.epoch > 1 else ""
                advice = f"lower --lr or the --init scale{kept}"
                raise Diverged(f"training diverged in epoch {trainer.epoch} ({why}); {advice}")
            for key, value in record.items():
                run.history.setdefault(key, []).append(value)
            run.note_epoch(record)
            run.progress = Progress()
            if run.complete and valid_split is not None and test_split is not None:
                run.evaluate_selected(test_split)
            run.save()
            if on_epoch is not None:
                on_epoch(run, record)
    return run

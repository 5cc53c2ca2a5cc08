"""Run files: a trained model, everything needed to resume it exactly, and its history.

Layout of a run file (HDF5, DESIGN.md section 3)::

    /                 attrs: format="fastfa-run", format_version, config (JSON),
                      task, sizes, step, epoch, rng_state (JSON), complete,
                      progress (JSON: position inside an unfinished epoch), chunk_rows,
                      dataset, versions (JSON: fastfa, numpy, numba, h5py, python),
                      created, updated
    /model/W{l}       forward weights, shape (n_l, n_{l+1})
    /model/b{l}       biases (a batch-normalised layer's: its shift beta)
    /model/bn{l}      batch norm of layer l, if any: (3, C) scales gamma, running means, variances
    /feedback/B{l}    feedback matrices in paper orientation (n_src, n_l), if any
    /feedback/M{l}    magnitudes |B0| of sign-concordant rules, if any
    /optimizer/state  (2, n_params): SGD carried momentum mu*v, or Adam moments
    /history/<metric> one value per epoch (angles: epochs x hidden layers)
    /best/params      flat parameters of the best-validation epoch (attrs: epoch), when the
                      run has validation data
    /validation/rows  training-split rows held out for validation (attrs: train_rows, the
                      split's size), with --valid-fraction
    /standardize/mean, /standardize/std
                      per-feature statistics of the training rows, when inputs are standardised

Root attributes ``stopped_early`` and ``final_test`` (JSON: the test split's figures for the
selected model, evaluated once at the end) come with validation data. Files without the
optional groups (older ones included) load as runs without validation or standardisation.

Files are written atomically (:func:`fastfa.files.atomic_path`): a temporary file in the same
folder, then ``os.replace``, so an interrupted write never leaves a corrupt run file, and
readers never see one. Whoever writes a run file holds its lock (:func:`fastfa.files.hold`).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from fastfa.config import TrainConfig
from fastfa.files import (
    FileSafetyError,
    atomic_path,
    check_regular,
    hdf5_in_memory,
    is_regular,
    write_problem,
)
from fastfa.limits import LimitError, check_config
from fastfa.rules import PluginError, available_rules
from fastfa.train import Trainer

FORMAT = "fastfa-run"
FORMAT_VERSION = 1


class RunFileError(ValueError):
    """A run file is missing, unreadable, or not a fastfa run."""


def versions(device="cpu"):
    """Versions of fastfa and the libraries that shape its numerics, the kernels' thread count and
    the engine that trained last (``device``: ``"cpu"``, or ``"cuda (fused)"`` and the like).

    Results agree across thread counts and engines to float32 rounding; bit for bit they need
    the same engine and thread count.
    """
    import numba

    from fastfa import __version__

    return {
        "fastfa": __version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "h5py": h5py.__version__,
        "python": platform.python_version(),
        "threads": numba.get_num_threads(),
        "device": device,
    }


def atomic_h5(path, write):
    """Call ``write(h5file)`` on a temporary file, then move it to ``path`` (:func:`atomic_path`)."""
    try:
        with atomic_path(path) as tmp, hdf5_in_memory(tmp) as f:
            write(f)
    except OSError as exc:
        if isinstance(exc, FileSafetyError):
            raise
        raise FileSafetyError(
            f"{path}: cannot write ({write_problem(exc)}); an earlier version of it, if any, is kept"
        ) from None


def save_run(path, trainer, history, *, dataset="", complete=False, progress=None, chunk_rows=0,
             selection=None):  # fmt: skip
    """Write ``trainer``'s full state and ``history`` (dict of lists) to ``path`` atomically.

    ``progress`` (a dict) records a position inside an unfinished epoch, and
    ``chunk_rows`` the block-shuffle unit, for an exact resume. ``selection``
    (:class:`Selection`) holds the validation rows, the best epoch's parameters and
    the final test figures.
    """
    selection = selection or Selection()
    state = trainer.state_dict()

    def write(f):
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["config"] = state["config"]
        f.attrs["task"] = state["task"]
        f.attrs["sizes"] = state["sizes"]
        f.attrs["step"] = state["step"]
        f.attrs["epoch"] = state["epoch"]
        f.attrs["rng_state"] = json.dumps(state["rng_state"])
        f.attrs["complete"] = bool(complete)
        f.attrs["dataset"] = str(dataset)
        f.attrs["progress"] = json.dumps(progress or {})
        f.attrs["chunk_rows"] = int(chunk_rows)
        f.attrs["versions"] = json.dumps(versions(trainer.device_description()))
        f.attrs["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if trainer.class_names is not None:
            f.attrs["classes"] = json.dumps(list(trainer.class_names))
        model = f.create_group("model")
        for layer, (w, b) in enumerate(zip(trainer.weights, trainer.biases)):
            model.create_dataset(f"W{layer}", data=w)
            model.create_dataset(f"b{layer}", data=b)
        for layer, block in norm_blocks(trainer).items():
            model.create_dataset(f"bn{layer}", data=block)
        fb = f.create_group("feedback")
        fb.attrs["rule"] = trainer.rule.name
        for layer, b in enumerate(trainer.feedback_matrices):
            fb.create_dataset(f"B{layer}", data=b)
        if trainer.magnitude.size:
            for layer, m in enumerate(trainer.feedback_views(trainer.magnitude)):
                fb.create_dataset(f"M{layer}", data=m)
        f.create_group("optimizer").create_dataset("state", data=state["optimizer_state"])
        if trainer.standardization is not None:
            group = f.create_group("standardize")
            group.create_dataset("mean", data=trainer.standardization[0])
            group.create_dataset("std", data=trainer.standardization[1])
        selection.write(f)
        hist = f.create_group("history")
        for key, values in history.items():
            hist.create_dataset(key, data=np.asarray(values, dtype=np.float64))

    atomic_h5(path, write)


@dataclass
class Selection:
    """What a run with validation data adds to its file: which rows validate, the best
    epoch's parameters, whether it stopped early, and the test figures of the selected model.

    Attributes
    ----------
    valid_rows : ndarray of int64 or None
        Training-split rows held out by ``--valid-fraction`` (``None``: none held out).
    train_rows : int
        Rows of the training split the holdout was drawn from (0 without one).
    best_params : ndarray or None
        Flat parameters of the best-validation epoch.
    best_epoch : int
        That epoch (0: none yet).
    stopped_early : bool
    final_test : dict
        ``{"model": "best" | "last", "epoch": ..., "loss": ..., "error": ..., "rows": ...}``
        once the run has ended and has a test split (empty otherwise).
    """

    valid_rows: np.ndarray | None = None
    train_rows: int = 0
    best_params: np.ndarray | None = None
    best_epoch: int = 0
    stopped_early: bool = False
    final_test: dict = field(default_factory=dict)

    def write(self, f):
        f.attrs["stopped_early"] = bool(self.stopped_early)
        f.attrs["final_test"] = json.dumps(self.final_test)
        if self.valid_rows is not None:
            group = f.create_group("validation")
            group.attrs["train_rows"] = int(self.train_rows)
            group.create_dataset("rows", data=self.valid_rows)
        if self.best_params is not None:
            group = f.create_group("best")
            group.attrs["epoch"] = int(self.best_epoch)
            group.create_dataset("params", data=self.best_params)

    @classmethod
    def read(cls, f, params_shape, path):
        found = cls(stopped_early=bool(f.attrs.get("stopped_early", False)))
        found.final_test = json.loads(f.attrs.get("final_test", "{}"))
        if "validation" in f:
            found.train_rows = int(f["validation"].attrs["train_rows"])
            found.valid_rows = np.asarray(f["validation/rows"][()], dtype=np.int64)
            rows = found.valid_rows
            if rows.ndim != 1 or (rows.size and (rows[0] < 0 or rows[-1] >= found.train_rows)):
                raise RunFileError(f"{path}: validation rows do not fit a split of {found.train_rows} rows")
        if "best" in f:
            found.best_epoch = int(f["best"].attrs["epoch"])
            found.best_params = f["best/params"][()]
            if found.best_params.shape != params_shape:
                raise RunFileError(f"{path}: best/params has shape {found.best_params.shape}")
        return found


def _read(path):
    path = Path(path)
    if not path.exists():
        raise RunFileError(f"{path}: no such file")
    try:
        check_regular(path)
    except FileSafetyError as exc:
        raise RunFileError(str(exc)) from None
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise RunFileError(f"{path}: not a readable HDF5 file ({exc.__class__.__name__})") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise RunFileError(f"{path}: not a fastfa run file (no format='{FORMAT}' attribute)")
    from fastfa.datasets.containment import check_contained
    from fastfa.datasets.reader import DatasetError

    try:  # nothing read from other files: the checks datasets get (links, external storage, virtual)
        check_contained(path, f)
    except (DatasetError, KeyError, RuntimeError, OSError) as exc:
        f.close()
        if isinstance(exc, DatasetError):
            raise RunFileError(str(exc)) from None
        raise RunFileError(f"{path}: corrupt or incomplete run file ({type(exc).__name__}: {exc})") from None
    return f


def is_run_file(path):
    """Whether ``path`` is an HDF5 file with the run-file format marker (a regular file)."""
    if not is_regular(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False


def _fill(view, f, name, path):
    data = f[name][()]
    if data.shape != view.shape:
        raise RunFileError(f"{path}: {name} has shape {data.shape}, expected {view.shape}")
    view[...] = data


def _integer(path, name, value, low=0, high=None):
    """A root attribute that must be an integer in ``low .. high``."""
    value = np.asarray(value)
    integer = value.shape == () and value.dtype.kind in "iu"
    if not integer or value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f"{low} or more"
        raise RunFileError(f"{path}: {name} is {_short(value)}, not an integer {bound}")
    return int(value)


def _short(value):
    text = " ".join(str(value.tolist() if hasattr(value, "tolist") else value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _json_object(path, name, text):
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        raise RunFileError(f"{path}: corrupt or incomplete run file ({name} is not valid JSON)") from None
    if not isinstance(value, dict):
        raise RunFileError(f"{path}: corrupt or incomplete run file ({name} is not a JSON object)")
    return value


def _config(path, attrs):
    """The run's configuration and layer sizes, checked against each other and against the memory
    they imply before anything is allocated (:func:`fastfa.limits.check_config`)."""
    sizes = np.asarray(attrs["sizes"])
    if sizes.ndim != 1 or sizes.size < 2 or sizes.dtype.kind not in "iu" or (sizes < 1).any():
        raise RunFileError(f"{path}: sizes {_short(sizes)} are not two or more positive integers")
    sizes = [int(s) for s in sizes]
    task = str(attrs["task"])
    if task not in ("classification", "regression"):
        raise RunFileError(f"{path}: task {task!r} is neither classification nor regression")
    text = attrs["config"]
    rule = _json_object(path, "config", text).get("rule")
    if isinstance(rule, str) and rule not in available_rules():
        raise RunFileError(
            f"{path}: made with rule {rule!r}, which no loaded plugin defines; pass --plugin FILE, "
            "the plugin that defines it"
        )
    try:
        config = TrainConfig.from_json(text)
    except (TypeError, ValueError) as exc:
        raise RunFileError(
            f"{path}: corrupt or incomplete run file (config: {' '.join(str(exc).split())})"
        ) from None
    if not config.layers and list(config.hidden) != sizes[1:-1]:
        raise RunFileError(f"{path}: layer sizes {sizes} do not match its configuration")
    check_config(config, sizes[0], sizes[-1], str(path))
    return config, sizes, task


def norm_blocks(trainer):
    """``{l: (3, C) view}`` of the batch-normalised layers' scales and running statistics."""
    return {} if trainer.arch.is_dense else trainer.arch.norm_blocks(trainer.params)


def _check_finite(path, trainer):
    """Every parameter, feedback and optimiser value must be finite (a diverged run is never saved)."""
    groups = [("model/W", trainer.weights), ("model/b", trainer.biases)]
    blocks = norm_blocks(trainer)
    groups.append(
        ("model/bn", [blocks.get(layer, np.zeros(0)) for layer in range(max(blocks, default=-1) + 1)])
    )
    groups.append(("feedback/B", trainer.feedback_matrices))
    for prefix, views in groups:
        for layer, view in enumerate(views):
            if not np.isfinite(view).all():
                raise RunFileError(f"{path}: {prefix}{layer} holds NaN or infinite values")
    if not np.isfinite(trainer.state).all():
        raise RunFileError(f"{path}: optimizer/state holds NaN or infinite values")


def _progress(path, attrs, chunk_rows):
    from fastfa.fitting import Progress

    progress = _json_object(path, "progress", attrs.get("progress", "{}"))
    for key, default in Progress().__dict__.items():
        if key not in progress:
            continue
        value = progress[key]
        kind = (int,) if isinstance(default, int) else (int, float)
        low = -1 if key == "epoch_seed" else 0
        if isinstance(value, bool) or not isinstance(value, kind) or not value >= low:
            raise RunFileError(f"{path}: progress {key} is {_short(value)}, not a number {low} or more")
        if isinstance(value, float) and not np.isfinite(value):
            raise RunFileError(f"{path}: progress {key} is {value}")
    return progress


def _check_history(path, history, epoch):
    lengths = {len(values) for values in history.values()}
    if len(lengths) > 1:
        raise RunFileError(f"{path}: history metrics have different lengths ({sorted(lengths)})")
    epochs = history.get("epoch", [])
    last = int(epochs[-1]) if epochs and np.isfinite(epochs[-1]) else 0
    if last != epoch:
        raise RunFileError(f"{path}: epoch is {epoch} but its history ends at epoch {last}")


def load_run(path):
    """Rebuild the :class:`~fastfa.train.Trainer` of a run file and its history.

    Returns
    -------
    trainer : Trainer
    history : dict of list
    meta : dict
        ``dataset``, ``complete``, ``versions``, ``updated``, ``progress``
        (position inside an unfinished epoch) and ``chunk_rows`` from the root
        attributes, and ``selection`` (:class:`Selection`).

    Raises
    ------
    RunFileError
        When the file is missing, unreadable, not a run, or inconsistent.
    """
    f = _read(path)
    try:
        with f:
            attrs = f.attrs
            config, sizes, task = _config(path, attrs)
            step = _integer(path, "step", attrs["step"])
            epoch = _integer(path, "epoch", attrs["epoch"], high=config.epochs)
            chunk_rows = _integer(path, "chunk_rows", attrs.get("chunk_rows", 0))
            progress = _progress(path, attrs, chunk_rows)
            rng_state = _json_object(path, "rng_state", attrs["rng_state"])
            trainer = Trainer(config, sizes[0], sizes[-1], task)
            if list(trainer.arch.sizes) != sizes:
                raise RunFileError(f"{path}: layer sizes {sizes} do not match its configuration")
            for layer, (w, b) in enumerate(zip(trainer.weights, trainer.biases)):
                _fill(w, f, f"model/W{layer}", path)
                _fill(b, f, f"model/b{layer}", path)
            for layer, block in norm_blocks(trainer).items():
                _fill(block, f, f"model/bn{layer}", path)
                if np.any(block[2] < 0):
                    raise RunFileError(f"{path}: model/bn{layer} holds a negative running variance")
            for layer, view in enumerate(trainer.feedback_matrices):
                _fill(view, f, f"feedback/B{layer}", path)
            if trainer.magnitude.size:
                for layer, view in enumerate(trainer.feedback_views(trainer.magnitude)):
                    _fill(view, f, f"feedback/M{layer}", path)
            _fill(trainer.state, f, "optimizer/state", path)
            _check_finite(path, trainer)
            trainer.step, trainer.epoch = step, epoch
            try:
                trainer.rng.bit_generator.state = rng_state
            except (TypeError, ValueError, KeyError, OverflowError):
                raise RunFileError(f"{path}: rng_state is not a PCG64 generator state") from None
            if "standardize" in f:
                mean, std = (np.asarray(f[f"standardize/{k}"][()], dtype=np.float64) for k in ("mean", "std"))
                if mean.shape != (sizes[0],) or std.shape != (sizes[0],) or not np.all(std > 0):
                    raise RunFileError(f"{path}: standardisation statistics do not fit {sizes[0]} features")
                trainer.standardization = (mean, std)
            selection = Selection.read(f, trainer.params.shape, path)
            if "classes" in attrs:
                trainer.class_names = tuple(str(c) for c in json.loads(attrs["classes"]))
                if len(trainer.class_names) != sizes[-1]:
                    names = len(trainer.class_names)
                    raise RunFileError(f"{path}: {names} class names for {sizes[-1]} outputs")
            history = {key: f[f"history/{key}"][()].tolist() for key in f["history"]}
            _check_history(path, history, epoch)
            if selection.best_params is not None and not np.isfinite(selection.best_params).all():
                raise RunFileError(f"{path}: best/params holds NaN or infinite values")
            if not 0 <= selection.best_epoch <= epoch:
                raise RunFileError(f"{path}: best epoch {selection.best_epoch} is not one of its 0..{epoch}")
            meta = {
                "dataset": str(attrs.get("dataset", "")),
                "complete": bool(attrs.get("complete", False)),
                "versions": json.loads(attrs.get("versions", "{}")),
                "updated": str(attrs.get("updated", "")),
                "progress": progress,
                "chunk_rows": chunk_rows,
                "selection": selection,
            }
    except RunFileError:
        raise
    except (KeyError, ValueError, TypeError, OSError) as exc:
        if isinstance(exc, (LimitError, PluginError)):  # one line of their own
            raise
        raise RunFileError(f"{path}: corrupt or incomplete run file ({type(exc).__name__}: {exc})") from None
    return trainer, history, meta


def read_outcome(path):
    """The light part of a run file: ``complete``, ``epoch``, ``config`` (a dict), ``history``,
    ``final_test`` (the selected model's test figures, :class:`Selection`; empty without
    validation data) and ``best_epoch`` (``None`` without validation data).

    Reads no weights; raises :class:`RunFileError` like :func:`load_run`.
    """
    try:
        with _read(path) as f:
            outcome = {
                "complete": bool(f.attrs.get("complete", False)),
                "epoch": int(f.attrs["epoch"]),
                "config": json.loads(f.attrs["config"]),
                "history": {key: f[f"history/{key}"][()].tolist() for key in f["history"]},
                "final_test": json.loads(f.attrs.get("final_test", "{}")),
                "best_epoch": int(f["best"].attrs["epoch"]) if "best" in f else None,
            }
    except RunFileError:
        raise
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise RunFileError(f"{path}: corrupt or incomplete run file ({type(exc).__name__}: {exc})") from None
    if not isinstance(outcome["final_test"], dict):
        raise RunFileError(f"{path}: final_test is not a JSON object")
    return outcome


MODELS = ("best", "last")


def load_model(path, model="best"):
    """The trained model of a run file, for evaluation and prediction.

    ``model="best"`` (the default) gives the parameters of the best-validation epoch
    when the run has validation data, else the last epoch's; ``"last"`` always the last.
    Returns ``(trainer, meta)`` as :func:`load_run`, with ``meta["model"]`` and
    ``meta["model_epoch"]`` saying which parameters the trainer holds.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    trainer, _history, meta = load_run(path)
    selection = meta["selection"]
    if model == "best" and selection.best_params is not None:
        trainer.params[...] = selection.best_params
        meta["model"], meta["model_epoch"] = "best", selection.best_epoch
    else:
        meta["model"], meta["model_epoch"] = "last", trainer.epoch
    return trainer, meta

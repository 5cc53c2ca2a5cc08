"""Run files: a trained model, everything needed to resume it exactly, and its history.

Layout of a run file (HDF5, DESIGN.md section 3)::

    /                 attrs: format="fastfa-run", format_version, config (JSON),
                      task, sizes, step, epoch, rng_state (JSON), complete,
                      progress (JSON: position inside an unfinished epoch), chunk_rows,
                      dataset, versions (JSON: fastfa, numpy, numba, h5py, python),
                      created, updated
    /model/W{l}       forward weights, shape (n_l, n_{l+1})
    /model/b{l}       biases
    /feedback/B{l}    feedback matrices in paper orientation (n_src, n_l), if any
    /feedback/M{l}    magnitudes |B0| of sign-concordant rules, if any
    /optimizer/state  (2, n_params): SGD carried momentum mu*v, or Adam moments
    /history/<metric> one value per epoch (angles: epochs x hidden layers)

Files are written atomically: a temporary file in the same folder, then
``os.replace``, so an interrupted write never leaves a corrupt run file.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from fastfa.config import TrainConfig
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
    """Call ``write(h5file)`` on a temporary file, then move it to ``path``.

    The temporary file is removed if ``write`` raises; ``path`` is then untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_run(path, trainer, history, *, dataset="", complete=False, progress=None, chunk_rows=0):
    """Write ``trainer``'s full state and ``history`` (dict of lists) to ``path`` atomically.

    ``progress`` (a dict) records a position inside an unfinished epoch, and
    ``chunk_rows`` the block-shuffle unit, for an exact resume.
    """
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
        model = f.create_group("model")
        for layer, (w, b) in enumerate(zip(trainer.weights, trainer.biases)):
            model.create_dataset(f"W{layer}", data=w)
            model.create_dataset(f"b{layer}", data=b)
        fb = f.create_group("feedback")
        fb.attrs["rule"] = trainer.rule.name
        for layer, b in enumerate(trainer.feedback_matrices):
            fb.create_dataset(f"B{layer}", data=b)
        if trainer.magnitude.size:
            for layer, m in enumerate(trainer.feedback_views(trainer.magnitude)):
                fb.create_dataset(f"M{layer}", data=m)
        f.create_group("optimizer").create_dataset("state", data=state["optimizer_state"])
        hist = f.create_group("history")
        for key, values in history.items():
            hist.create_dataset(key, data=np.asarray(values, dtype=np.float64))

    atomic_h5(path, write)


def _read(path):
    path = Path(path)
    if not path.exists():
        raise RunFileError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise RunFileError(f"{path}: not a readable HDF5 file ({exc.__class__.__name__})") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise RunFileError(f"{path}: not a fastfa run file (no format='{FORMAT}' attribute)")
    return f


def is_run_file(path):
    """Whether ``path`` is an HDF5 file with the run-file format marker."""
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


def load_run(path):
    """Rebuild the :class:`~fastfa.train.Trainer` of a run file and its history.

    Returns
    -------
    trainer : Trainer
    history : dict of list
    meta : dict
        ``dataset``, ``complete``, ``versions``, ``updated``, ``progress``
        (position inside an unfinished epoch) and ``chunk_rows`` from the root
        attributes.

    Raises
    ------
    RunFileError
        When the file is missing, unreadable, not a run, or inconsistent.
    """
    f = _read(path)
    try:
        with f:
            attrs = f.attrs
            sizes = [int(s) for s in attrs["sizes"]]
            config = TrainConfig.from_json(attrs["config"])
            trainer = Trainer(config, sizes[0], sizes[-1], str(attrs["task"]))
            if list(trainer.arch.sizes) != sizes:
                raise RunFileError(f"{path}: layer sizes {sizes} do not match its configuration")
            for layer, (w, b) in enumerate(zip(trainer.weights, trainer.biases)):
                _fill(w, f, f"model/W{layer}", path)
                _fill(b, f, f"model/b{layer}", path)
            for layer, view in enumerate(trainer.feedback_matrices):
                _fill(view, f, f"feedback/B{layer}", path)
            if trainer.magnitude.size:
                for layer, view in enumerate(trainer.feedback_views(trainer.magnitude)):
                    _fill(view, f, f"feedback/M{layer}", path)
            _fill(trainer.state, f, "optimizer/state", path)
            trainer.step = int(attrs["step"])
            trainer.epoch = int(attrs["epoch"])
            trainer.rng.bit_generator.state = json.loads(attrs["rng_state"])
            history = {key: f[f"history/{key}"][()].tolist() for key in f["history"]}
            meta = {
                "dataset": str(attrs.get("dataset", "")),
                "complete": bool(attrs.get("complete", False)),
                "versions": json.loads(attrs.get("versions", "{}")),
                "updated": str(attrs.get("updated", "")),
                "progress": json.loads(attrs.get("progress", "{}")),
                "chunk_rows": int(attrs.get("chunk_rows", 0)),
            }
    except RunFileError:
        raise
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise RunFileError(f"{path}: corrupt or incomplete run file ({type(exc).__name__}: {exc})") from None
    return trainer, history, meta


def read_outcome(path):
    """The light part of a run file: ``complete``, ``epoch``, ``config`` (a dict) and ``history``.

    Reads no weights; raises :class:`RunFileError` like :func:`load_run`.
    """
    with _read(path) as f:
        return {
            "complete": bool(f.attrs.get("complete", False)),
            "epoch": int(f.attrs["epoch"]),
            "config": json.loads(f.attrs["config"]),
            "history": {key: f[f"history/{key}"][()].tolist() for key in f["history"]},
        }

"""A trained model on new rows: ``fastfa predict`` and ``fastfa export``.

Inputs (:func:`open_inputs`) are a fastfa dataset (one of its splits), a CSV of feature
columns (an optional header line is recognised), or a 2-D ``.npy`` array; they are read in
chunks of :func:`~fastfa.fitting.default_chunk_rows` rows, and each chunk is checked (feature
count, finite values) before the model sees it. Datasets and ``.npy`` arrays are streamed from
the file, so one larger than memory works (an ``.npy`` header declaring more bytes than the file
holds is refused first); a CSV's text is read once, as ``fastfa data csv`` reads it: gzip
decompressed block by block and refused past a third of the memory budget
(:mod:`fastfa.limits`), a damaged gzip stream one line.
The model applies the run's standardisation itself (:meth:`fastfa.train.Trainer.scale_inputs`),
and predicts in the run's dtype with the kernel ``fastfa evaluate`` uses, chunk for chunk,
so ``predict``'s labels give exactly ``evaluate``'s error rate.

Outputs (:func:`write_predictions`) are ``.csv``, ``.npy`` or ``.h5``, written atomically
(a temporary file, then a rename): class labels (class names in a CSV when the dataset named
them), class probabilities with ``proba=True``, or regression outputs.

:func:`export_npz` writes the model as plain arrays for NumPy (:func:`numpy_forward`).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
from pathlib import Path

import h5py
import numpy as np

from fastfa import files
from fastfa.datasets.csvfile import _is_number, _read_text
from fastfa.files import atomic_path, check_regular
from fastfa.fitting import default_chunk_rows
from fastfa.kernels.batch_norm import EPSILON
from fastfa.layers import layers_text

OUTPUT_SUFFIXES = (".csv", ".npy", ".h5")
EXPORT_FORMAT = "fastfa-model"
EXPORT_VERSION = 1


def _suffix(path):
    name = str(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


class Inputs:
    """Rows to predict from one file, read in chunks of ``float`` arrays.

    Attributes
    ----------
    path : str
    n_rows, n_features : int
    """

    def __init__(self, path, n_rows, n_features, read):
        self.path, self.n_rows, self.n_features, self._read = str(path), n_rows, n_features, read

    def chunks(self, rows, dtype):
        """Yield ``(start, x)`` for consecutive chunks of at most ``rows`` rows, checked finite."""
        for start, x in self._read(rows, np.dtype(dtype)):
            bad = ~np.isfinite(x)
            if bad.any():
                row, col = np.argwhere(bad)[0]
                raise ValueError(
                    f"{self.path}: row {start + row + 1}, feature {col + 1} is {x[row, col]}; "
                    "every feature must be a finite number"
                )
            yield start, x


def open_inputs(path, split="test"):
    """:class:`Inputs` from a dataset's ``split`` (``.h5``), a CSV (``.csv``, ``.txt``, gzipped
    too) or a 2-D ``.npy`` array. Raises ``ValueError`` with one line for anything else."""
    path = str(path)
    check_regular(path)
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    suffix = _suffix(path)
    if suffix in (".h5", ".hdf5"):
        return _dataset_inputs(path, split)
    if suffix == ".npy":
        return _npy_inputs(path)
    if suffix in (".csv", ".txt", ".tsv"):
        return _csv_inputs(path)
    raise ValueError(
        f"{path}: unknown input type {suffix or '(none)'}; give a .h5 dataset, a .csv or an .npy"
    )


def _dataset_inputs(path, split):
    from fastfa.datasets import open_dataset

    with open_dataset(path) as ds:
        part = ds.split(split)
        n_rows, n_features = part.n_rows, part.n_features

    def read(rows, dtype):
        with open_dataset(path) as ds:
            part = ds.split(split)
            for start in range(0, n_rows, rows):
                yield start, part.read(start, min(start + rows, n_rows), dtype=dtype)[0]

    return Inputs(f"{path} (split {split})", n_rows, n_features, read)


def _check_npy_size(path):
    """Check an ``.npy`` file's declared shape against the bytes it holds and a chunk of its rows
    against the memory budget, before numpy maps or allocates anything."""
    from fastfa.datasets.npz import _member_header
    from fastfa.limits import check_memory, format_bytes

    try:
        with open(path, "rb") as f:
            found = _member_header(f)
            offset = f.tell()
    except (OSError, ValueError, EOFError):
        return  # numpy.load says what is wrong
    if found is None or found[1].hasobject:
        return
    shape, dtype = found
    declared, present = math.prod(shape) * dtype.itemsize, max(os.path.getsize(path) - offset, 0)
    if declared > present:
        raise ValueError(f"{path}: declares shape {shape} of {dtype} ({format_bytes(declared)}) but holds "
                         f"{format_bytes(present)}")  # fmt: skip
    if len(shape) == 2:  # a chunk as stored and converted
        width = max(shape[1], 1)
        rows = default_chunk_rows(width, np.float64)
        check_memory(2 * rows * width * 8, f"{path}: rows of {shape[1]} values")


def _npy_inputs(path):
    _check_npy_size(path)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from None
    if array.ndim != 2 or array.dtype.kind not in "iuf":
        raise ValueError(f"{path}: expected a 2-D numeric array, got shape {array.shape} of {array.dtype}")

    def read(rows, dtype):
        for start in range(0, len(array), rows):
            yield start, np.asarray(array[start : start + rows], dtype=dtype)

    return Inputs(path, array.shape[0], array.shape[1], read)


def _csv_layout(path, text):
    """``(delimiter, header, n_rows, n_features)`` of a CSV of feature columns (its ``text``)."""
    with io.StringIO(text, newline="") as f:
        lines = (line for line in f if line.strip())
        first = next(lines, None)
        if first is None:
            raise ValueError(f"{path}: no rows")
        delimiter = next((d for d in (",", "\t", ";") if d in first), None)
        fields = first.split(delimiter)
        header = not all(_is_number(v) for v in fields)
        n_rows = sum(1 for _ in lines) + (0 if header else 1)
    return delimiter, header, n_rows, len(fields)


def _csv_inputs(path):
    text = _read_text(path)  # read once, as `fastfa data csv` does: bounded, gzip errors one line
    delimiter, header, n_rows, n_features = _csv_layout(path, text)

    def read(rows, dtype):
        with io.StringIO(text, newline="") as f:
            lines = (line for line in f if line.strip())
            if header:
                next(lines)
            start = 0
            while block := list(itertools.islice(lines, rows)):
                try:
                    x = np.loadtxt(block, delimiter=delimiter, dtype=dtype, ndmin=2)
                except ValueError as exc:
                    message = " ".join(str(exc).split())
                    raise ValueError(f"{path}: rows {start + 1}..{start + len(block)}: {message}") from None
                if x.shape[1] != n_features:
                    raise ValueError(f"{path}: rows do not all have {n_features} columns")
                yield start, x
                start += len(block)

    return Inputs(path, n_rows, n_features, read)


def check_output(out, overwrite, inputs=()):
    """Refuse an output path that exists (without ``overwrite``), is a folder, has an unknown type
    or is one of the ``inputs``; check its folder is writable."""
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"{out}: is a directory; give a file name")
    files.check_output(out, inputs)  # a FIFO or device, or one of the inputs under any name
    if path.exists() and not overwrite:
        raise ValueError(f"{out}: already exists; pass --overwrite to replace it")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"{out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{out}: folder {parent} is not writable")


def predict_chunks(trainer, inputs, proba=False):
    """Yield ``(start, values)``: class indices (int64), probabilities, or regression outputs."""
    if inputs.n_features != trainer.arch.sizes[0]:
        raise ValueError(
            f"{inputs.path}: {inputs.n_features} features, but the model expects {trainer.arch.sizes[0]}"
        )
    rows = default_chunk_rows(inputs.n_features, trainer.dtype)
    for start, x in inputs.chunks(rows, trainer.dtype):
        out = trainer.predict_outputs(x)
        if trainer.task == "classification" and not proba:
            out = np.argmax(out, axis=1).astype(np.int64)
        yield start, out


def _columns(trainer, proba):
    names = trainer.class_names or tuple(str(k) for k in range(trainer.arch.sizes[-1]))
    if trainer.task == "regression":
        return [f"y{k}" for k in range(trainer.arch.sizes[-1])]
    return [f"p_{name}" for name in names] if proba else ["label"]


def write_predictions(trainer, inputs, out, *, proba=False):
    """Predict every row of ``inputs`` and write the result to ``out`` (.csv, .npy or .h5) atomically.

    Returns the number of rows written.
    """
    kind = _suffix(out)
    if kind not in OUTPUT_SUFFIXES or str(out).lower().endswith(".gz"):
        raise ValueError(f"{out}: unknown output type; give a .csv, .npy or .h5 file")
    labels = trainer.task == "classification" and not proba
    width = trainer.arch.sizes[-1]
    shape = (inputs.n_rows,) if labels else (inputs.n_rows, width)
    dtype = np.int64 if labels else trainer.dtype
    names = np.asarray(trainer.class_names) if labels and trainer.class_names else None
    # about 20 characters per value as CSV text; .npy and .h5 hold the values themselves
    files.check_space(out, int(np.prod(shape)) * (20 if kind == ".csv" else np.dtype(dtype).itemsize))
    with atomic_path(out, suffix=kind) as tmp:
        if kind == ".npy":
            target = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            for start, values in predict_chunks(trainer, inputs, proba):
                target[start : start + len(values)] = values
            target.flush()
            del target
        elif kind == ".h5":
            with h5py.File(tmp, "w") as f:
                target = f.create_dataset("label" if labels else "y", shape=shape, dtype=dtype)
                f.attrs["columns"] = json.dumps(_columns(trainer, proba))
                if trainer.class_names:
                    f.attrs["classes"] = json.dumps(list(trainer.class_names))
                for start, values in predict_chunks(trainer, inputs, proba):
                    target[start : start + len(values)] = values
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(",".join(_columns(trainer, proba)) + "\n")
                for _start, values in predict_chunks(trainer, inputs, proba):
                    if names is not None:
                        f.writelines(f"{name}\n" for name in names[values])
                    else:
                        np.savetxt(
                            f, values.reshape(len(values), -1), delimiter=",", fmt="%d" if labels else "%.9g"
                        )
    return inputs.n_rows


def export_npz(trainer, out, meta=None):
    """Write the model in ``trainer`` as a NumPy ``.npz`` archive (atomically).

    Keys: ``W0 .. W{L-1}`` (``n_l x n_{l+1}``; conv kernels ``C_out x C_in x k x k``), ``b0 ..``,
    ``B0 ..`` (feedback in paper orientation, one per hidden layer, when the rule has them),
    ``bn{l}`` (a batch-normalised layer's scales, running means and running variances, ``3 x C``),
    ``layers`` and ``image_shape`` (conv networks: every layer, the output layer and an implied
    flatten included, in :mod:`fastfa.layers` text, and the inputs' ``(C, H, W)``), ``mean`` and ``std``
    (standardisation, when the run has it), ``sizes``, ``activation`` (hidden layers),
    ``output_activation``, ``loss``, ``task``, ``rule``, ``classes`` (class names, or their
    indices), ``config`` (the run's settings as JSON), ``format`` and ``format_version``.
    :func:`numpy_forward` is the forward pass over these arrays.
    """
    arch = trainer.arch
    arrays = {
        "format": np.array(EXPORT_FORMAT),
        "format_version": np.array(EXPORT_VERSION),
        "sizes": np.asarray(arch.sizes, dtype=np.int64),
        "activation": np.array(arch.activation),
        "output_activation": np.array(arch.output_activation),
        "loss": np.array(arch.loss),
        "task": np.array(trainer.task),
        "rule": np.array(trainer.rule.name),
        "config": np.array(trainer.config.to_json()),
        "model": np.array(json.dumps(meta or {})),
    }
    if trainer.task == "classification":
        arrays["classes"] = np.array(trainer.class_names or [str(k) for k in range(arch.sizes[-1])])
    for layer, (w, b) in enumerate(zip(trainer.weights, trainer.biases)):
        arrays[f"W{layer}"], arrays[f"b{layer}"] = np.array(w), np.array(b)
    for layer, fb in enumerate(trainer.feedback_matrices):
        arrays[f"B{layer}"] = np.array(fb)
    if trainer.standardization is not None:
        arrays["mean"], arrays["std"] = trainer.standardization
    if not arch.is_dense:  # the layer list and the input images' shape (C, H, W)
        arrays["layers"] = np.array(layers_text(arch.plan.layers))
        arrays["image_shape"] = np.asarray(arch.plan.shapes[0], dtype=np.int64)
        for layer, block in arch.norm_blocks(trainer.params).items():
            arrays[f"bn{layer}"] = np.array(block)
    with atomic_path(out, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


ACTIVATIONS = {
    "identity": lambda a: a,
    "tanh": np.tanh,
    "logistic": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "relu": lambda a: np.maximum(a, 0.0),
}


def numpy_forward(model, x):
    """The network's outputs for ``x`` from an exported archive, in plain NumPy.

    ``h_0 = (x - mean) / std`` (when standardised), ``h_l = f(h_{l-1} W_l + b_l)``, with
    softmax (row-wise, max subtracted) on the output when ``output_activation`` is softmax.
    Conv networks (an archive with ``layers``) go through :func:`numpy_layers`. This is the
    code docs/models.md shows; tests check it against ``fastfa predict``.
    """
    h = np.asarray(x, dtype=np.float64)
    if "mean" in model:
        h = (h - model["mean"]) / model["std"]
    if "layers" in model:
        return numpy_layers(model, h)
    n_layers = len(model["sizes"]) - 1
    for layer in range(n_layers):
        a = h @ model[f"W{layer}"].astype(np.float64) + model[f"b{layer}"].astype(np.float64)
        h = _activation(model, a, last=layer == n_layers - 1)
    return h


def _activation(model, a, last):
    """The hidden activation, or the output one (softmax row-wise, max subtracted) when ``last``."""
    name = str(model["output_activation"] if last else model["activation"])
    if name == "softmax":
        e = np.exp(a - a.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return ACTIVATIONS[name](a)


def numpy_layers(model, h):
    """A conv network's forward pass in plain NumPy, layer by layer as ``model["layers"]`` lists them.

    conv ``C:K:S:P``: ``a[n, o, y, x] = b[o] + sum_{c,i,j} W[o, c, i, j] x_pad[n, c, y S + i, x S + j]``
    (PyTorch's ``Conv2d``), then the hidden activation; ``maxpool``/``avgpool`` ``K:S``: the max or
    mean of each ``K x K`` window; ``gap``: the mean of each map; ``flatten``; ``dense``. A layer
    with batch norm (``+bn``, arrays ``bn{l}``) computes ``a`` without ``b``, then
    ``gamma (a - running mean) / sqrt(running variance + 1e-5) + b`` per channel before its activation.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    from fastfa.layers import parse_layers

    layers = parse_layers(str(model["layers"]))
    h = h.reshape(len(h), *(int(s) for s in model["image_shape"]))
    index = 0
    for position, layer in enumerate(layers):
        last = position == len(layers) - 1
        if layer.kind in ("conv", "dense"):
            w, b = model[f"W{index}"].astype(np.float64), model[f"b{index}"].astype(np.float64)
            norm = model[f"bn{index}"].astype(np.float64) if layer.norm else None
            index += 1
        if layer.kind == "conv":
            p, s = layer.padding, layer.stride
            padded = np.pad(h, ((0, 0), (0, 0), (p, p), (p, p)))
            windows = sliding_window_view(padded, (layer.kernel, layer.kernel), axis=(2, 3))[:, :, ::s, ::s]
            a = np.einsum("ncyxij,ocij->noyx", windows, w)
            h = _activation(model, _shift(a, b, norm, (slice(None), None, None)), last)
        elif layer.kind in ("maxpool", "avgpool"):
            windows = sliding_window_view(h, (layer.kernel, layer.kernel), axis=(2, 3))[
                :, :, :: layer.stride, :: layer.stride
            ]
            h = windows.max(axis=(4, 5)) if layer.kind == "maxpool" else windows.mean(axis=(4, 5))
        elif layer.kind == "gap":
            h = h.mean(axis=(2, 3), keepdims=True)
        elif layer.kind == "flatten":
            h = h.reshape(len(h), -1)
        else:
            h = _activation(model, _shift(h.reshape(len(h), -1) @ w, b, norm, (slice(None),)), last)
    return h


def _shift(a, b, norm, channel):
    """``a + b``, or with batch norm (``norm``: scales, running means, running variances)
    ``gamma (a - mean) / sqrt(var + eps) + b``; ``channel`` indexes a per-channel vector into ``a``."""
    if norm is None:
        return a + b[channel]
    gamma, mean, var = norm
    return gamma[channel] * (a - mean[channel]) / np.sqrt(var[channel] + EPSILON) + b[channel]

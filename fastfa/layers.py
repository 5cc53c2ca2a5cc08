"""Layer lists: the hidden part of a network as convolution, pooling and dense layers.

A network is its input, a list of hidden layers and an output layer. The output layer
is always dense, with one unit per class or target, and is not written in the list;
``--hidden 800,800`` is the list ``dense:800,dense:800``. Text form (``--layers``), one
comma-separated item per layer:

================================  =====================================================
``conv:C:K[:S[:P]]``              2-D convolution to ``C`` channels, ``K x K`` kernel,
                                  stride ``S`` (1), zero padding ``P`` (0), then the
                                  hidden activation
``maxpool:K[:S]``                 ``K x K`` max-pooling, stride ``S`` (default ``K``)
``avgpool:K[:S]``                 ``K x K`` average pooling, stride ``S`` (default ``K``)
``gap``                           global average pooling (one value per channel)
``flatten``                       images to vectors (implied before the first dense layer)
``dense:N``                       ``N`` units, then the hidden activation
``...+bn``                        after ``conv`` or ``dense``: batch normalisation of the
                                  layer's pre-activation, before its activation
                                  (:mod:`fastfa.kernels.batch_norm`)
================================  =====================================================

Images are ``C x H x W`` (channels first, as PyTorch and the kernels of
:mod:`fastfa.kernels.conv`). A convolution's output side is
``(H + 2P - K) // S + 1``, a pooling window's ``(H - K) // S + 1`` (windows that fit
entirely, PyTorch's ``ceil_mode=False``). Named presets (:data:`PRESETS`) hold the
networks of published benchmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

#: Layer kinds, in the order the help lists them.
KINDS = ("conv", "maxpool", "avgpool", "gap", "flatten", "dense")
SPATIAL = ("conv", "maxpool", "avgpool", "gap")  # need an image at their input
WITH_PARAMS = ("conv", "dense")

#: Networks of published benchmarks: BioTorch's LeNets (Sanfiz and Akrout 2021;
#: ../shared/reference/convnet-benchmarks.md). The output layer (10 classes) is added from the data.
PRESETS = {
    "lenet-mnist": "conv:6:5,maxpool:2,conv:16:5,maxpool:2,conv:120:5,dense:84",
    "lenet-cifar": "conv:32:3,maxpool:2,conv:64:3,maxpool:2,conv:128:3,gap,dense:256",
}
#: The image each preset was defined for (MNIST padded to 32 x 32; CIFAR-10).
PRESET_INPUTS = {"lenet-mnist": (1, 32, 32), "lenet-cifar": (3, 32, 32)}

_FIELDS = {  # kind: (names of its numbers, how many may be left out)
    "conv": (("channels", "kernel", "stride", "padding"), 2),
    "maxpool": (("kernel", "stride"), 1),
    "avgpool": (("kernel", "stride"), 1),
    "gap": ((), 0),
    "flatten": ((), 0),
    "dense": (("units",), 0),
}


class LayerError(ValueError):
    """A layer list that cannot be parsed or whose shapes do not chain; the message is one line."""


@dataclass(frozen=True)
class Layer:
    """One hidden layer.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    size : int
        Output channels (conv) or units (dense); 0 for the others.
    kernel : int
        Kernel side (conv) or window side (pooling); 0 for the others.
    stride : int
        Step between windows (conv: 1; pooling: the window side).
    padding : int
        Zero padding on every side (conv only).
    norm : bool
        Batch normalisation of the pre-activation (conv and dense only; text suffix ``+bn``):
        the layer's bias is then the shift ``beta`` after the normalisation, and a scale
        ``gamma`` per channel (conv) or unit (dense) joins the parameters.
    """

    kind: str
    size: int = 0
    kernel: int = 0
    stride: int = 1
    padding: int = 0
    norm: bool = False

    @property
    def has_params(self):
        return self.kind in WITH_PARAMS

    @property
    def spatial(self):
        return self.kind in SPATIAL

    def text(self):
        """The canonical text form, e.g. ``conv:6:5``, ``dense:100+bn`` or ``maxpool:3:2``."""
        return self._base_text() + ("+bn" if self.norm else "")

    def _base_text(self):
        if self.kind == "conv":
            tail = [self.stride, self.padding] if self.padding else [self.stride] if self.stride != 1 else []
            return ":".join(map(str, ["conv", self.size, self.kernel, *tail]))
        if self.kind in ("maxpool", "avgpool"):
            tail = [] if self.stride == self.kernel else [self.stride]
            return ":".join(map(str, [self.kind, self.kernel, *tail]))
        if self.kind == "dense":
            return f"dense:{self.size}"
        return self.kind

    def output_shape(self, shape):
        """The shape this layer gives for an input of ``shape`` (``(C, H, W)`` or ``(D,)``).

        Raises
        ------
        LayerError
            When the layer needs an image and gets a vector, or its window does not fit.
        """
        if self.kind == "dense":
            return (self.size,)
        if self.kind == "flatten":
            return (math.prod(shape),)
        if len(shape) != 3:
            raise LayerError(
                f"{self.text()} needs an image (C x H x W) at its input, but gets a vector of {shape[0]}"
            )
        c, h, w = shape
        if self.kind == "gap":
            if h != w:
                raise LayerError(f"gap averages square maps, but its input is {h}x{w}")
            return (c, 1, 1)
        reach = self.kernel - 2 * self.padding
        if reach > min(h, w):
            padded = f" (with padding {self.padding})" if self.padding else ""
            raise LayerError(
                f"{self.text()} has a {self.kernel}x{self.kernel} window over a {h}x{w} input{padded}: "
                "the window is larger than its input"
            )
        side = lambda n: (n + 2 * self.padding - self.kernel) // self.stride + 1  # noqa: E731
        return (self.size if self.kind == "conv" else c, side(h), side(w))

    def n_params(self, shape):
        """Weights plus biases (and batch norm's scales) for an input of ``shape`` (0 for pooling
        and flatten)."""
        scales = self.size if self.norm else 0
        if self.kind == "conv":
            return self.size * (shape[0] * self.kernel * self.kernel + 1) + scales
        if self.kind == "dense":
            return self.size * (math.prod(shape) + 1) + scales
        return 0


def _parse_item(item):
    """One :class:`Layer` from its text form."""
    base, plus, suffix = item.strip().partition("+")
    layer = _parse_base(base)
    if not plus:
        return layer
    if suffix.strip().lower() != "bn":
        raise LayerError(f"layer {item.strip()!r}: the only suffix is +bn (batch normalisation)")
    if not layer.has_params:
        raise LayerError(f"layer {item.strip()!r}: batch normalisation (+bn) needs a conv or dense layer")
    return replace(layer, norm=True)


def _parse_base(item):
    """One :class:`Layer` from its text form without a suffix."""
    kind, *numbers = item.strip().split(":")
    kind = kind.strip().lower()
    if kind == "avgpool" and numbers == ["global"]:
        kind, numbers = "gap", []
    if kind not in _FIELDS:
        raise LayerError(f"unknown layer kind {kind!r} in {item.strip()!r}; choose one of {', '.join(KINDS)}")
    names, optional = _FIELDS[kind]
    if not len(names) - optional <= len(numbers) <= len(names):
        required, extra = names[: len(names) - optional], names[len(names) - optional :]
        usage = ":".join([kind, *(n.upper() for n in required)])
        usage += "".join(f"[:{n.upper()}" for n in extra) + "]" * len(extra)
        raise LayerError(f"layer {item.strip()!r} does not read as {usage}")
    values = {}
    for name, text in zip(names, numbers):
        try:
            value = int(text)
        except ValueError:
            value = None
        low = 0 if name == "padding" else 1
        if value is None or value < low:
            what = "a non-negative" if low == 0 else "a positive"
            raise LayerError(f"layer {item.strip()!r}: {name} must be {what} integer, got {text!r}")
        values[name] = value
    if kind == "conv":
        return Layer(
            "conv", values["channels"], values["kernel"], values.get("stride", 1), values.get("padding", 0)
        )
    if kind in ("maxpool", "avgpool"):
        return Layer(kind, 0, values["kernel"], values.get("stride", values["kernel"]))
    if kind == "dense":
        return Layer("dense", values["units"])
    return Layer(kind)


def parse_layers(text):
    """The layers of a ``--layers`` text or a preset name.

    Parameters
    ----------
    text : str
        Comma-separated layers (see the module notes) or a key of :data:`PRESETS`.

    Returns
    -------
    tuple of Layer
    """
    text = PRESETS.get(text.strip(), text)
    items = [item for item in text.split(",")]
    if not text.strip() or any(not item.strip() for item in items):
        raise LayerError(f"empty layer in {text!r}; write layers as e.g. conv:6:5,maxpool:2,dense:84")
    return tuple(_parse_item(item) for item in items)


def layers_text(layers):
    """Inverse of :func:`parse_layers`: the canonical comma-separated text."""
    return ",".join(layer.text() for layer in layers)


def dense_layers(hidden, norm=False):
    """The layer list of a dense network with hidden sizes ``hidden`` (each batch-normalised
    with ``norm``)."""
    return tuple(Layer("dense", int(n), norm=norm) for n in hidden)


def with_batch_norm(layers):
    """``layers`` with batch normalisation on every conv and dense layer (``--batch-norm``)."""
    return tuple(replace(layer, norm=True) if layer.has_params else layer for layer in layers)


def dense_sizes(layers):
    """Hidden sizes when every layer is dense without batch norm, else ``None``."""
    if all(layer.kind == "dense" and not layer.norm for layer in layers):
        return tuple(layer.size for layer in layers)
    return None


def parse_image_shape(text):
    """``"1x28x28"`` (or ``"28x28"``, one channel) as ``(C, H, W)``."""
    parts = text.lower().replace(" ", "").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise LayerError(f"image shape must read as CxHxW or HxW with positive sizes, got {text!r}")
    return shape


@dataclass(frozen=True)
class Plan:
    """A layer list checked against its input: every layer's input and output shape.

    ``layers`` ends with the dense output layer; an explicit or implied ``flatten`` stands
    before the first dense layer that follows an image.
    """

    layers: tuple
    shapes: tuple  # shapes[0] is the input's, shapes[i + 1] the output of layers[i]

    @property
    def n_params(self):
        return sum(layer.n_params(shape) for layer, shape in zip(self.layers, self.shapes))

    def describe(self):
        """One line per layer: its text, its output shape and its parameter count."""
        lines = [f"input {'x'.join(map(str, self.shapes[0]))}"]
        for layer, shape_in, shape_out in zip(self.layers, self.shapes, self.shapes[1:]):
            n = layer.n_params(shape_in)
            lines.append(f"{layer.text():<16} -> {'x'.join(map(str, shape_out)):<10} {n:>9,} parameters")
        return "\n".join(lines)


def plan_network(layers, n_inputs, n_outputs, image_shape=None):
    """Check that ``layers`` chain from the input to ``n_outputs`` outputs.

    Parameters
    ----------
    layers : sequence of Layer
        The hidden layers (:func:`parse_layers`).
    n_inputs : int
        Features per row of the data.
    n_outputs : int
        Units of the output layer (classes or targets).
    image_shape : tuple of int, optional
        ``(C, H, W)`` of the inputs (from the dataset or given by the user); needed when
        the list has conv or pooling layers. ``C * H * W`` must equal ``n_inputs``.

    Returns
    -------
    Plan

    Raises
    ------
    LayerError
        One line naming the layer (1-based) whose shape does not fit.
    """
    if image_shape is not None:
        image_shape = tuple(int(s) for s in image_shape)
        if math.prod(image_shape) != n_inputs:
            shown = "x".join(map(str, image_shape))
            values = math.prod(image_shape)
            raise LayerError(
                f"image shape {shown} has {values} values, but the data have {n_inputs} features"
            )
    spatial = [layer for layer in layers if layer.spatial]
    if spatial and image_shape is None:
        raise LayerError(
            f"{spatial[0].text()} needs image inputs, but the data are flat ({n_inputs} features, no "
            "image shape); write images with `fastfa data mnist --images`, or give their shape (e.g. 1x28x28)"
        )
    shape = image_shape if image_shape is not None and spatial else (n_inputs,)
    planned, shapes = [], [shape]
    for index, layer in enumerate([*layers, Layer("dense", int(n_outputs))], start=1):
        if layer.kind == "dense" and len(shape) == 3:
            planned.append(Layer("flatten"))
            shape = (math.prod(shape),)
            shapes.append(shape)
        try:
            shape = layer.output_shape(shape)
        except LayerError as exc:
            where = "the output layer" if index > len(layers) else f"layer {index}"
            raise LayerError(f"{where}: {exc}") from None
        if layer.kind == "flatten" and len(shapes[-1]) == 1:
            continue  # flattening a vector: nothing to do
        planned.append(layer)
        shapes.append(shape)
    return Plan(tuple(planned), tuple(shapes))


@dataclass(frozen=True)
class Table:
    """A :class:`Plan` as the compiled kernels take it (:mod:`fastfa.kernels.layers`).

    Attributes
    ----------
    ltab : numpy.ndarray
        int64, one row per layer (flatten dropped), columns ``L_*`` of :mod:`fastfa.kernels.codes`.
    n_weights, n_params, n_feedback : int
        Sizes of the weight part of the parameter buffer, of the whole buffer and of the
        feedback buffer. The buffer is ``[W..., b..., N...]``: weights, biases, then for each
        batch-normalised layer a block ``N`` of ``3 C`` entries: the scales ``gamma``, the running
        means and the running variances (:mod:`fastfa.kernels.batch_norm`). No gradient reaches
        the running statistics (their gradient entries stay zero, so no optimiser moves them);
        keeping them in the buffer makes best-epoch snapshots, run files, resumes and the CUDA
        engines' copies carry them with the parameters.
    n_norm : int
        Entries of the batch-norm scratch: ``4 C`` per normalised layer.
    out_size, arg_size : int
        Per-sample entries of the activation (and delta) buffers and of the argmax buffer.
    """

    ltab: object
    n_weights: int
    n_params: int
    n_feedback: int
    out_size: int
    arg_size: int
    n_norm: int = 0  # entries of the batch-norm scratch (4 per normalised channel)

    def buffers(self, batch, dtype, threads=1):
        """Workspaces for batches of up to ``batch`` rows, allocated once per trainer.

        Returns a dict: ``hidden`` and ``deltas`` (activations and signals of every layer),
        ``indices`` (max-pool argmaxes), ``zeros`` (a zero vector as long as the largest layer
        output), ``workspace`` (the conv kernels' scratch for ``threads`` threads) and ``averages``
        (None when no layer average-pools, else an empty marker array) and ``sparse`` (None unless
        the first layer is dense, the only one with a sparse-input path; the trainer also passes
        None for rows that cannot be sparse, :func:`fastfa.workspace.sparse_marker`): the passes of
        :mod:`fastfa.kernels.layers` leave the code a None marks out of the compile; then ``ops``,
        the conv and pooling kernels as function pointers (:mod:`fastfa.kernels.layer_ops`). In the
        order the passes take them.
        """
        import numpy as np

        from fastfa.kernels import codes
        from fastfa.kernels.conv import conv_workspace_size
        from fastfa.kernels.layer_ops import layer_ops

        scratch = 1
        for row in self.ltab:
            if row[codes.L_KIND] == codes.KIND_CONV:
                x_shape = (batch, int(row[codes.L_C_IN]), int(row[codes.L_H_IN]), int(row[codes.L_W_IN]))
                k = int(row[codes.L_KERNEL])
                w_shape = (int(row[codes.L_C_OUT]), x_shape[1], k, k)
                need = conv_workspace_size(
                    x_shape, w_shape, int(row[codes.L_STRIDE]), int(row[codes.L_PAD]), threads
                )
                scratch = max(scratch, int(need))
        averages = codes.KIND_AVGPOOL in self.ltab[:, codes.L_KIND]
        kinds = [name for name, code in codes.KINDS.items() if code in self.ltab[:, codes.L_KIND]]
        return {
            "hidden": np.zeros(batch * self.out_size, dtype=dtype),
            "deltas": np.zeros(batch * self.out_size, dtype=dtype),
            "indices": np.zeros(max(1, batch * self.arg_size), dtype=np.int64),
            "zeros": np.zeros(int(self.ltab[:, codes.L_OUT_SIZE].max()), dtype=dtype),
            "workspace": np.zeros(scratch, dtype=dtype),
            "averages": np.zeros(0, dtype=dtype) if averages else None,
            "sparse": np.zeros(0, dtype=np.int8) if self.ltab[0, codes.L_KIND] == codes.KIND_DENSE else None,
            "ops": layer_ops(dtype, kinds),
        }

    def weight_shapes(self):
        """Shape of each parametric layer's weights, in buffer order."""
        from fastfa.kernels import codes

        shapes = []
        for row in self.ltab:
            if row[codes.L_KIND] == codes.KIND_DENSE:
                shapes.append((int(row[codes.L_IN_SIZE]), int(row[codes.L_OUT_SIZE])))
            elif row[codes.L_KIND] == codes.KIND_CONV:
                k = int(row[codes.L_KERNEL])
                shapes.append((int(row[codes.L_C_OUT]), int(row[codes.L_C_IN]), k, k))
        return shapes


def layer_table(plan, activation, output_activation, signal):
    """The :class:`Table` of a :class:`Plan`.

    Parameters
    ----------
    plan : Plan
    activation, output_activation : int
        Activation codes (:mod:`fastfa.kernels.codes`) of the hidden layers with weights and
        of the output layer; pooling layers have none.
    signal : int
        The rule's ``SIGNAL_*`` code: it decides which layers own feedback. Layerwise rules
        keep one kernel of ``W_l``'s shape for every layer with weights above the first;
        direct rules one ``size_l x n_out`` matrix ``D_l`` for every hidden layer with weights.
    """
    import numpy as np

    from fastfa.kernels import codes as c

    layers = [(layer, shape) for layer, shape in zip(plan.layers, plan.shapes) if layer.kind != "flatten"]
    rows = np.zeros((len(layers), c.N_LFIELDS), dtype=np.int64)
    weights = [
        layer.n_params(shape) - _bias_count(layer, shape) * (2 if layer.norm else 1)
        for layer, shape in layers
    ]
    n_weights = sum(weights)
    n_out = plan.shapes[-1][0]
    g_off = n_weights + sum(_bias_count(layer, shape) for layer, shape in layers)
    w_off, b_off, fb_off, out_off, arg_off, norm_off = 0, n_weights, 0, 0, 0, 0
    for index, (layer, shape_in) in enumerate(layers):
        row = rows[index]
        shape_out = layer.output_shape(shape_in)
        image_in = shape_in if len(shape_in) == 3 else (1, 1, shape_in[0])
        image_out = shape_out if len(shape_out) == 3 else (shape_out[0], 1, 1)
        kind = "avgpool" if layer.kind == "gap" else layer.kind
        row[c.L_KIND] = c.KINDS[kind]
        last = index == len(layers) - 1
        row[c.L_ACT] = output_activation if last else activation if layer.has_params else c.IDENTITY
        row[c.L_C_IN : c.L_W_IN + 1] = image_in
        row[c.L_C_OUT : c.L_W_OUT + 1] = image_out
        row[c.L_KERNEL] = shape_in[1] if layer.kind == "gap" else layer.kernel
        row[c.L_STRIDE] = 1 if layer.kind == "gap" else layer.stride
        row[c.L_PAD] = layer.padding
        row[c.L_IN_SIZE] = math.prod(shape_in)
        row[c.L_OUT_SIZE] = math.prod(shape_out)
        row[c.L_OUT_OFF] = out_off
        out_off += math.prod(shape_out)
        row[c.L_W_OFF] = row[c.L_B_OFF] = row[c.L_FB_OFF] = row[c.L_ARG_OFF] = -1
        row[c.L_NORM_OFF] = row[c.L_G_OFF] = -1
        if layer.norm:
            row[c.L_NORM_OFF], row[c.L_G_OFF] = norm_off, g_off
            norm_off += 4 * layer.size
            g_off += 3 * layer.size
        if layer.has_params:
            row[c.L_W_OFF], row[c.L_B_OFF] = w_off, b_off
            w_off += weights[index]
            b_off += _bias_count(layer, shape_in)
            below = w_off > weights[index]  # a layer with weights comes before this one
            if signal == c.SIGNAL_LAYERWISE and below:
                row[c.L_FB_OFF] = fb_off
                fb_off += weights[index]
            elif signal in (c.SIGNAL_DIRECT, c.SIGNAL_DIRECT_SIGN, c.SIGNAL_TARGET) and not last:
                row[c.L_FB_OFF] = fb_off
                fb_off += math.prod(shape_out) * n_out
        if layer.kind == "maxpool":
            row[c.L_ARG_OFF] = arg_off
            arg_off += math.prod(shape_out)
    return Table(rows, n_weights, g_off, fb_off, out_off, arg_off, norm_off)


def _bias_count(layer, shape):
    return layer.size if layer.has_params else 0

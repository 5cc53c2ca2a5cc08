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
================================  =====================================================

Images are ``C x H x W`` (channels first, as PyTorch and the kernels of
:mod:`fastfa.kernels.conv`). A convolution's output side is
``(H + 2P - K) // S + 1``, a pooling window's ``(H - K) // S + 1`` (windows that fit
entirely, PyTorch's ``ceil_mode=False``). Named presets (:data:`PRESETS`) hold the
networks of published benchmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    """

    kind: str
    size: int = 0
    kernel: int = 0
    stride: int = 1
    padding: int = 0

    @property
    def has_params(self):
        return self.kind in WITH_PARAMS

    @property
    def spatial(self):
        return self.kind in SPATIAL

    def text(self):
        """The canonical text form, e.g. ``conv:6:5`` or ``maxpool:3:2``."""
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
        """Weights plus biases for an input of ``shape`` (0 for pooling and flatten)."""
        if self.kind == "conv":
            return self.size * (shape[0] * self.kernel * self.kernel + 1)
        if self.kind == "dense":
            return self.size * (math.prod(shape) + 1)
        return 0


def _parse_item(item):
    """One :class:`Layer` from its text form."""
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


def dense_layers(hidden):
    """The layer list of a dense network with hidden sizes ``hidden``."""
    return tuple(Layer("dense", int(n)) for n in hidden)


def dense_sizes(layers):
    """Hidden sizes when every layer is dense, else ``None``."""
    if all(layer.kind == "dense" for layer in layers):
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

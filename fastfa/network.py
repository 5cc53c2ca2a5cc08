"""Dense networks: layer sizes, activations, the flat parameter buffer and initialisers.

A network with layer sizes ``(n_0, ..., n_L)`` has weights ``W_l`` of shape
``(n_l, n_{l+1})`` and biases ``b_l`` of length ``n_{l+1}``, all stored in one
flat buffer ``[W_0, ..., W_{L-1}, b_0, ..., b_{L-1}]`` (see
:mod:`fastfa.kernels.cpu`). The arrays users see (``coefs_``,
``intercepts_``) are views into that buffer.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from fastfa.kernels import codes
from fastfa.layers import layer_table, parse_layers, plan_network

INIT_SCHEMES = ("uniform", "glorot", "he", "zeros")


def check_init(init):
    """Validate an initialiser name or a positive float scale; return it unchanged."""
    if isinstance(init, str):
        if init not in INIT_SCHEMES:
            raise ValueError(
                f"unknown init {init!r}; choose one of {', '.join(INIT_SCHEMES)} or a positive number"
            )
        return init
    if isinstance(init, numbers.Real) and not isinstance(init, bool) and np.isfinite(init) and init > 0:
        return float(init)
    raise ValueError(f"init must be one of {', '.join(INIT_SCHEMES)} or a positive number, got {init!r}")


def init_matrix(rng, shape, scheme, fan_in, fan_out):
    """Draw a float64 matrix of ``shape`` from an initialisation scheme.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
    scheme : str or float
        ``"uniform"``: U[-1/sqrt(fan_in), 1/sqrt(fan_in)] (LeCun et al. 1998);
        ``"glorot"``: U[-r, r] with r = sqrt(6 / (fan_in + fan_out)) (Glorot and
        Bengio 2010); ``"he"``: N(0, 2 / fan_in) (He et al. 2015); ``"zeros"``;
        a positive float ``s``: U[-s, s] (the explicit scale of Lillicrap et al.).
    fan_in, fan_out : int
        Fan-in and fan-out of the forward layer the matrix belongs to.
    """
    if scheme == "zeros":
        return np.zeros(shape)
    if scheme == "he":
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    return rng.uniform(-1.0, 1.0, size=shape) * init_bound(scheme, fan_in, fan_out)


def init_bound(scheme, fan_in, fan_out):
    """Half-width of the uniform scheme (for ``"he"``, the bound of equal variance)."""
    if isinstance(scheme, float):
        return scheme
    if scheme == "uniform":
        return 1.0 / np.sqrt(fan_in)
    if scheme == "glorot":
        return np.sqrt(6.0 / (fan_in + fan_out))
    if scheme == "he":
        return np.sqrt(6.0 / fan_in)
    return 0.0


def check_activations(activation, output_activation, loss):
    """Raise ``ValueError`` unless the hidden and output activations and the loss go together."""
    if activation not in codes.ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(codes.ACTIVATIONS)}")
    if output_activation not in codes.OUTPUT_ACTIVATIONS:
        raise ValueError(
            f"unknown output activation {output_activation!r}; "
            f"choose one of {', '.join(codes.OUTPUT_ACTIVATIONS)}"
        )
    if loss not in codes.LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(codes.LOSSES)}")
    if loss == "cross_entropy" and output_activation not in ("softmax", "logistic"):
        raise ValueError("cross_entropy needs a softmax or logistic output activation")
    if loss == "squared_error" and output_activation == "softmax":
        raise ValueError("squared_error with a softmax output is not supported; use logistic or identity")


@dataclass(frozen=True)
class Architecture:
    """Shape and nonlinearities of a dense network.

    Parameters
    ----------
    sizes : tuple of int
        ``(n_inputs, hidden..., n_outputs)``; at least two entries, all positive.
    activation : str
        Hidden nonlinearity: identity, tanh, logistic or relu.
    output_activation : str
        softmax, logistic, identity, tanh or relu.
    loss : str
        ``cross_entropy`` (softmax or logistic outputs) or ``squared_error``.
    """

    sizes: tuple
    activation: str = "tanh"
    output_activation: str = "softmax"
    loss: str = "cross_entropy"

    is_dense = True  # every layer dense: the dense kernels (and CUDA) train it

    def __post_init__(self):
        sizes = tuple(int(s) for s in self.sizes)
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(f"layer sizes must be two or more positive integers, got {self.sizes!r}")
        object.__setattr__(self, "sizes", sizes)
        check_activations(self.activation, self.output_activation, self.loss)

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    @property
    def n_weights(self):
        return sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def n_params(self):
        return self.n_weights + sum(self.sizes[1:])

    def codes(self):
        """Activation codes per layer, as the kernels take them."""
        hidden = [codes.ACTIVATIONS[self.activation]] * (self.n_layers - 1)
        return np.array(hidden + [codes.OUTPUT_ACTIVATIONS[self.output_activation]], dtype=np.int64)

    def weights(self, params):
        """Views ``W_l`` (shape ``(n_l, n_{l+1})``) into a flat parameter buffer."""
        out, off = [], 0
        for a, b in zip(self.sizes[:-1], self.sizes[1:]):
            out.append(params[off : off + a * b].reshape(a, b))
            off += a * b
        return out

    def biases(self, params):
        """Views ``b_l`` into a flat parameter buffer."""
        out, off = [], self.n_weights
        for b in self.sizes[1:]:
            out.append(params[off : off + b])
            off += b
        return out

    def init_params(self, rng, init, dtype):
        """A new flat parameter buffer: weights from ``init``, biases zero."""
        params = np.zeros(self.n_params, dtype=dtype)
        for w in self.weights(params):
            w[...] = init_matrix(rng, w.shape, init, fan_in=w.shape[0], fan_out=w.shape[1])
        return params


class LayerNetwork:
    """A network given as a layer list (:mod:`fastfa.layers`): conv, pooling and dense layers.

    The counterpart of :class:`Architecture` for :mod:`fastfa.kernels.layers`, with the same
    attributes the trainer and run files use: ``sizes`` is ``(n_inputs, size of every layer's
    output...)``, the last being the number of outputs; :meth:`weights` gives ``W_l`` of shape
    ``(n_in, n_out)`` for dense layers and ``(C_out, C_in, k, k)`` for convolutions.

    Parameters
    ----------
    layers : str
        Canonical layer text (:attr:`fastfa.config.TrainConfig.layers`).
    image_shape : tuple of int
        ``(C, H, W)`` of the inputs.
    n_inputs, n_outputs : int
    activation, output_activation, loss : str
        As for :class:`Architecture`.
    signal : str
        The rule's signal (:data:`fastfa.kernels.codes.SIGNALS`): it decides which layers own
        feedback (:func:`fastfa.layers.layer_table`).
    """

    is_dense = False

    def __init__(self, layers, image_shape, n_inputs, n_outputs, activation, output_activation, loss, signal):
        check_activations(activation, output_activation, loss)
        self.layers = layers
        self.activation, self.output_activation, self.loss = activation, output_activation, loss
        self.plan = plan_network(parse_layers(layers), n_inputs, n_outputs, image_shape or None)
        self.table = layer_table(
            self.plan,
            codes.ACTIVATIONS[activation],
            codes.OUTPUT_ACTIVATIONS[output_activation],
            codes.SIGNALS[signal],
        )
        ltab = self.table.ltab
        self.sizes = (int(n_inputs), *(int(n) for n in ltab[:, codes.L_OUT_SIZE]))
        self.n_layers = len(ltab)
        self.n_weights, self.n_params = self.table.n_weights, self.table.n_params

    def codes(self):
        """Activation codes per layer (identity for pooling), as the kernels take them."""
        return self.table.ltab[:, codes.L_ACT].copy()

    def param_layers(self):
        """``(row, weight shape, fan_in, fan_out)`` of every layer with weights, in buffer order."""
        out = []
        for row, shape in zip(self.table.ltab, self.table.weight_shapes()):
            fans = (
                (shape[0], shape[1])
                if len(shape) == 2
                else (shape[1] * shape[2] ** 2, shape[0] * shape[2] ** 2)
            )
            out.append((row, shape, *fans))
        return out

    def weights(self, params):
        """Views ``W_l`` into a flat parameter buffer, one per layer with weights."""
        rows = [row for row in self.table.ltab if row[codes.L_W_OFF] >= 0]
        return [
            params[row[codes.L_W_OFF] : row[codes.L_W_OFF] + int(np.prod(shape))].reshape(shape)
            for row, shape in zip(rows, self.table.weight_shapes())
        ]

    def biases(self, params):
        """Views ``b_l`` (``n_out`` entries for dense layers, ``C_out`` for conv)."""
        rows = [row for row in self.table.ltab if row[codes.L_W_OFF] >= 0]
        return [params[row[codes.L_B_OFF] : row[codes.L_B_OFF] + shape[0 if len(shape) == 4 else 1]]
                for row, shape in zip(rows, self.table.weight_shapes())]  # fmt: skip

    @property
    def has_norm(self):
        """Whether any layer batch-normalises (:mod:`fastfa.kernels.batch_norm`)."""
        return self.table.n_norm > 0

    def norm_blocks(self, params):
        """``{l: view}`` for every batch-normalised layer ``l`` (counted as :meth:`weights` counts):
        a ``3 x C`` view of its scales ``gamma``, running means and running variances."""
        rows = [row for row in self.table.ltab if row[codes.L_W_OFF] >= 0]
        return {
            index: params[row[codes.L_G_OFF] : row[codes.L_G_OFF] + 3 * row[codes.L_C_OUT]].reshape(3, -1)
            for index, row in enumerate(rows)
            if row[codes.L_G_OFF] >= 0
        }

    def init_params(self, rng, init, dtype):
        """A new flat parameter buffer: weights from ``init`` with each layer's fans
        (conv: ``C_in k^2`` and ``C_out k^2``, as PyTorch counts them), biases zero; batch norm's
        scales and running variances one, its running means zero."""
        params = np.zeros(self.n_params, dtype=dtype)
        for w, (_, shape, fan_in, fan_out) in zip(self.weights(params), self.param_layers()):
            w[...] = init_matrix(rng, shape, init, fan_in=fan_in, fan_out=fan_out)
        for block in self.norm_blocks(params).values():
            block[0] = block[2] = 1.0
        return params

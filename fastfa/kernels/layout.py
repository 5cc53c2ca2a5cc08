"""Views into the flat buffers of a dense network: weights, biases, feedback and activations.

Layout as described in :mod:`fastfa.kernels.cpu`.
"""

from fastfa.kernels.base import kernel
from fastfa.kernels.codes import SIGNAL_BACKPROP, SIGNAL_LAYERWISE

# --------------------------------------------------------------------------- layout


@kernel
def n_weights(sizes):
    """Number of weight entries, sum_l sizes[l] * sizes[l+1]."""
    n = 0
    for layer in range(sizes.size - 1):
        n += sizes[layer] * sizes[layer + 1]
    return n


@kernel
def weight_view(params, sizes, layer):
    """``W_layer`` as a C-ordered ``(sizes[layer], sizes[layer+1])`` view of ``params``."""
    off = 0
    for k in range(layer):
        off += sizes[k] * sizes[k + 1]
    size = sizes[layer] * sizes[layer + 1]
    return params[off : off + size].reshape((sizes[layer], sizes[layer + 1]))


@kernel
def bias_view(params, sizes, layer):
    """``b_layer`` as a view of ``params`` (biases follow all the weights)."""
    off = n_weights(sizes)
    for k in range(1, layer + 1):
        off += sizes[k]
    return params[off : off + sizes[layer + 1]]


@kernel
def feedback_cols(sizes, signal, layer):
    """``n_src`` of hidden layer ``layer``: width of the signal it receives."""
    if signal == SIGNAL_LAYERWISE or signal == SIGNAL_BACKPROP:
        return sizes[layer + 2]
    return sizes[sizes.size - 1]


@kernel
def feedback_view(feedback, sizes, signal, layer):
    """``F_layer`` (forward orientation, ``(sizes[layer+1], n_src)``) inside ``feedback``."""
    off = 0
    for k in range(layer):
        off += sizes[k + 1] * feedback_cols(sizes, signal, k)
    cols = feedback_cols(sizes, signal, layer)
    return feedback[off : off + sizes[layer + 1] * cols].reshape((sizes[layer + 1], cols))


@kernel
def activation_view(buffer, sizes, layer, m):
    """Rows ``0..m`` of layer ``layer``'s ``(capacity, sizes[layer+1])`` slot in ``buffer``.

    The capacity (the most rows a workspace holds) is ``buffer.size // sum(sizes[1:])``.
    """
    total = 0
    for k in range(1, sizes.size):
        total += sizes[k]
    capacity = buffer.size // total
    off = 0
    for k in range(1, layer + 1):
        off += capacity * sizes[k]
    return buffer[off : off + m * sizes[layer + 1]].reshape((m, sizes[layer + 1]))

"""Views into the buffers of a layer-table network: activation blocks, weights, kernels, biases.

The layer table and the buffers are described in :mod:`fastfa.kernels.layers`.
"""

from fastfa.kernels.base import (
    kernel,
)
from fastfa.kernels.codes import (
    KIND_CONV,
    KIND_DENSE,
    L_ARG_OFF,
    L_B_OFF,
    L_C_IN,
    L_C_OUT,
    L_FB_OFF,
    L_G_OFF,
    L_H_IN,
    L_H_OUT,
    L_IN_SIZE,
    L_KERNEL,
    L_KIND,
    L_NORM_OFF,
    L_OUT_OFF,
    L_OUT_SIZE,
    L_PAD,
    L_W_IN,
    L_W_OUT,
)


@kernel
def output_rows(buffer, ltab, layer, m):
    """Layer ``layer``'s block of an activation buffer as ``m x size``."""
    start = m * ltab[layer, L_OUT_OFF]
    return buffer[start : start + m * ltab[layer, L_OUT_SIZE]].reshape((m, ltab[layer, L_OUT_SIZE]))


@kernel
def output_images(buffer, ltab, layer, m):
    """Layer ``layer``'s block of an activation buffer as ``m x C x H x W``."""
    start = m * ltab[layer, L_OUT_OFF]
    size = ltab[layer, L_OUT_SIZE]
    return buffer[start : start + m * size].reshape(
        (m, ltab[layer, L_C_OUT], ltab[layer, L_H_OUT], ltab[layer, L_W_OUT])
    )


@kernel
def as_input_images(rows, ltab, layer):
    """The rows a layer reads (``m x size``, C-contiguous) as ``m x C_in x H_in x W_in``."""
    return rows.reshape((rows.shape[0], ltab[layer, L_C_IN], ltab[layer, L_H_IN], ltab[layer, L_W_IN]))


@kernel
def input_rows(x, hidden, ltab, layer, m):
    """What layer ``layer`` reads: ``x`` for the first layer, else the block of the layer below."""
    if layer == 0:
        return x
    return output_rows(hidden, ltab, layer - 1, m)


@kernel
def argmax_images(indices, ltab, layer, m):
    """A max-pool layer's argmax block as ``m x C x H_out x W_out``."""
    start = m * ltab[layer, L_ARG_OFF]
    size = ltab[layer, L_OUT_SIZE]
    return indices[start : start + m * size].reshape(
        (m, ltab[layer, L_C_OUT], ltab[layer, L_H_OUT], ltab[layer, L_W_OUT])
    )


@kernel
def dense_matrix(buffer, ltab, layer, offset):
    """``buffer[offset:]`` as a dense layer's ``n_in x n_out`` weight matrix."""
    n_in, n_out = ltab[layer, L_IN_SIZE], ltab[layer, L_OUT_SIZE]
    return buffer[offset : offset + n_in * n_out].reshape((n_in, n_out))


@kernel
def conv_kernel(buffer, ltab, layer, offset):
    """``buffer[offset:]`` as a convolution's ``C_out x C_in x k x k`` kernel."""
    c_out, c_in, k = ltab[layer, L_C_OUT], ltab[layer, L_C_IN], ltab[layer, L_KERNEL]
    return buffer[offset : offset + c_out * c_in * k * k].reshape((c_out, c_in, k, k))


@kernel
def kernel_matrix(buffer, ltab, layer, offset):
    """``buffer[offset:]`` as a convolution's kernel flattened to ``C_out x (C_in k k)``."""
    c_out, c_in, k = ltab[layer, L_C_OUT], ltab[layer, L_C_IN], ltab[layer, L_KERNEL]
    return buffer[offset : offset + c_out * c_in * k * k].reshape((c_out, c_in * k * k))


@kernel
def covers_input(ltab, layer):
    """A convolution whose one window covers its whole input (no padding; output ``C_out x 1 x 1``).

    It is a dense layer with the weight matrix ``W.reshape(C_out, C_in k k)^T``: the engine runs
    it as one GEMM over the batch instead of one matrix-vector product per sample (LeNet's conv3).
    """
    return (
        ltab[layer, L_PAD] == 0
        and ltab[layer, L_KERNEL] == ltab[layer, L_H_IN]
        and ltab[layer, L_KERNEL] == ltab[layer, L_W_IN]
    )


@kernel
def layer_bias(buffer, ltab, layer):
    """A layer's bias (``n_out`` entries for dense, ``C_out`` for conv)."""
    start = ltab[layer, L_B_OFF]
    n = ltab[layer, L_OUT_SIZE] if ltab[layer, L_KIND] == KIND_DENSE else ltab[layer, L_C_OUT]
    return buffer[start : start + n]


@kernel
def direct_matrix(feedback, ltab, layer, n_out):
    """A hidden layer's direct feedback ``D_l`` (``size x n_out``; the paper's ``B`` is its transpose)."""
    start = ltab[layer, L_FB_OFF]
    size = ltab[layer, L_OUT_SIZE]
    return feedback[start : start + size * n_out].reshape((size, n_out))


@kernel
def has_params(ltab, layer):
    return ltab[layer, L_KIND] == KIND_DENSE or ltab[layer, L_KIND] == KIND_CONV


@kernel
def weight_count(ltab, layer):
    """Entries of a layer's weight matrix or kernel (0 for pooling)."""
    kind = ltab[layer, L_KIND]
    if kind == KIND_DENSE:
        return ltab[layer, L_IN_SIZE] * ltab[layer, L_OUT_SIZE]
    if kind == KIND_CONV:
        k = ltab[layer, L_KERNEL]
        return ltab[layer, L_C_OUT] * ltab[layer, L_C_IN] * k * k
    return 0


@kernel
def has_norm(ltab, layer):
    """Whether layer ``layer`` batch-normalises its pre-activation (:mod:`fastfa.kernels.batch_norm`)."""
    return ltab[layer, L_NORM_OFF] >= 0


@kernel
def channel_blocks(buffer, ltab, layer, m):
    """Layer ``layer``'s block of an activation buffer as ``m x C x S`` (``S = H W``; dense: 1)."""
    start = m * ltab[layer, L_OUT_OFF]
    c = ltab[layer, L_C_OUT]
    return buffer[start : start + m * ltab[layer, L_OUT_SIZE]].reshape((m, c, ltab[layer, L_OUT_SIZE] // c))


@kernel
def norm_scale(buffer, ltab, layer):
    """A batch-normalised layer's scales ``gamma`` (one per channel or unit) in a parameter buffer."""
    start = ltab[layer, L_G_OFF]
    return buffer[start : start + ltab[layer, L_C_OUT]]


@kernel
def norm_running(params, ltab, layer):
    """A batch-normalised layer's running means and variances (``2 C`` entries after its scales)."""
    start = ltab[layer, L_G_OFF] + ltab[layer, L_C_OUT]
    return params[start : start + 2 * ltab[layer, L_C_OUT]]


@kernel
def norm_batch(batch, ltab, layer):
    """A batch-normalised layer's scratch block (``4 C`` entries: mean, inverse deviation, the
    shift's and the scale's gradients)."""
    start = ltab[layer, L_NORM_OFF]
    return batch[start : start + 4 * ltab[layer, L_C_OUT]]

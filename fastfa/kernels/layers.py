"""CPU kernels for networks given as a layer table: dense, convolution and pooling layers.

A network's layers are the rows of an int64 *layer table* ``ltab`` (columns
``L_*`` of :mod:`fastfa.kernels.codes`, built by :func:`fastfa.layers.layer_table`).
Layer ``l`` maps the output of layer ``l - 1`` (the input ``x`` for ``l = 0``) to
its own output:

- dense:    ``h_l = f(h_{l-1} W_l + b_l)``, ``W_l`` of shape ``(n_in, n_out)``;
- conv:     ``h_l = f(conv(h_{l-1}, W_l) + b_l)``, ``W_l`` of shape ``(C_out, C_in, k, k)``
  (:func:`fastfa.kernels.conv.conv_forward`);
- maxpool / avgpool: ``k x k`` windows with a stride, no activation and no parameters
  (global average pooling is the window that covers the whole map).

Buffers follow :mod:`fastfa.kernels.cpu`: the parameters are one flat buffer
``[W_0, ..., b_0, ...]`` over the layers that have them (for a dense network exactly
the dense engine's layout), every layer's activations for a batch of ``m`` rows are
the block ``hidden[m * off : m * (off + size)]`` (``off = ltab[l, L_OUT_OFF]``),
read as ``m x size`` or as ``m x C x H x W`` (NCHW: the same memory), and the deltas
mirror them in ``deltas``. Flatten is not a layer here: an image block already is its
matrix.

The learning signal ``delta_l`` (``dLoss/da_l`` for a layer with weights, the signal
at the output of a pooling layer):

- output: ``delta_L = e / m`` (:func:`~fastfa.kernels.cpu.output_error`);
- backprop and layerwise rules send it down layer by layer: through a dense layer
  ``delta_{l-1} = delta_l K_l^T``, through a convolution the transposed convolution
  of ``delta_l`` with ``K_l`` (:func:`~fastfa.kernels.conv.conv_backward_input`), where
  ``K_l`` is ``W_l`` (bp) or the layer's feedback of ``W_l``'s shape (fa, usf, frsf,
  brsf, kp, wm; DESIGN.md section 7); through a pooling layer its own backward (there
  is no weight to transport); then ``* f'(a_{l-1})`` when layer ``l - 1`` has an activation;
- direct rules send the output error (its sign, the negated target) to every hidden
  layer with weights through a fixed matrix ``D_l`` over the layer's whole output,
  ``delta_l = (e D_l^T) * f'(a_l)`` (Nøkland 2016), as the dense kernels do.

Weight gradients are shared by every rule: ``h_{l-1}^T delta_l`` (dense) or the
correlation of the layer's input with ``delta_l`` (conv,
:func:`~fastfa.kernels.conv.conv_weight_grad`), biases the sums of ``delta_l``.
"""

import numpy as np

from fastfa.kernels.base import (
    inlined_kernel,
    kernel,
)
from fastfa.kernels.batch_norm import normalise, normalise_backward
from fastfa.kernels.codes import (
    I_CLASSIFICATION,
    I_LOSS,
    I_SEED,
    I_SIGNAL,
    I_THREADS,
    IDENTITY,
    KIND_CONV,
    KIND_DENSE,
    KIND_MAXPOOL,
    L_ACT,
    L_FB_OFF,
    L_KERNEL,
    L_KIND,
    L_OUT_SIZE,
    L_PAD,
    L_STRIDE,
    L_W_OFF,
    SIGNAL_BACKPROP,
    SIGNAL_DIRECT,
    SIGNAL_DIRECT_SIGN,
    SIGNAL_LAYERWISE,
    SIGNAL_NONE,
    SIGNAL_TARGET,
)
from fastfa.kernels.dropout import derive_dropped_rows, drop_rows
from fastfa.kernels.elementwise import (
    activate,
    column_sums,
    derive,
    output_error,
)
from fastfa.kernels.layer_ops import (
    OP_AVGPOOL_BACKWARD,
    OP_AVGPOOL_FORWARD,
    OP_CONV_BACKWARD_INPUT,
    OP_CONV_FORWARD,
    OP_CONV_WEIGHT_GRAD,
    OP_MAXPOOL_BACKWARD,
    OP_MAXPOOL_FORWARD,
)
from fastfa.kernels.layer_table import (
    argmax_images,
    as_input_images,
    channel_blocks,
    conv_kernel,
    covers_input,
    dense_matrix,
    direct_matrix,
    has_norm,
    has_params,
    input_rows,
    kernel_matrix,
    layer_bias,
    norm_batch,
    norm_running,
    norm_scale,
    output_images,
    output_rows,
)
from fastfa.kernels.products import (
    NO_TRANS,
    TRANS,
    count_nonzero,
    is_sparse,
    product,
    sparse_gradient,
    sparse_product,
)

# --------------------------------------------------------------------------- passes


@kernel
def normalise_layer(params, ltab, layer, m, hidden, norm, threads):
    """Batch norm of layer ``layer``'s pre-activation in ``hidden``, in place (``norm``: see
    :func:`forward_layers`; :func:`fastfa.kernels.batch_norm.normalise`)."""
    batch, normed, training = norm
    normalise(
        channel_blocks(hidden, ltab, layer, m),
        channel_blocks(normed, ltab, layer, m),
        norm_scale(params, ltab, layer),
        layer_bias(params, ltab, layer),
        norm_running(params, ltab, layer),
        norm_batch(batch, ltab, layer),
        training,
        threads,
    )


@kernel
def forward_layers(
    params, ltab, x, hidden, indices, zeros, workspace, averages, sparse, ops, threads, dropout, seed, step,
    norm,
):  # fmt: skip
    """Every layer's output for the batch ``x`` (``m x n_in``) into ``hidden``; returns the last block.

    ``indices`` receives the max-pool argmaxes, ``zeros`` is a zero vector at least as long as
    a conv layer's output (the activation pass after a convolution adds no bias),
    ``workspace`` is the conv kernels' scratch (:func:`fastfa.kernels.conv.conv_workspace_size`),
    ``averages`` is None when the network has no average-pooling layer and ``sparse`` None when its
    first layer is not dense (no sparse-input path), any array otherwise: numba then drops that
    code before typing, so a network that cannot use it does not compile it (every pass of the
    engine takes them; :meth:`fastfa.layers.Table.buffers`). ``dropout`` is None (evaluation,
    and training without dropout: then not compiled) or each layer's keep probability, and
    units are dropped with the masks of update ``step`` (:mod:`fastfa.kernels.dropout`).
    ``norm`` is None without batch norm (then not compiled), else ``(batch, normed, training)``:
    a scratch of :attr:`fastfa.layers.Table.n_norm` entries, a buffer shaped as ``hidden`` for the
    normalised values, and 1 in training (batch statistics; the running ones, in ``params``, move)
    or 0 in evaluation (:mod:`fastfa.kernels.batch_norm`).
    """
    m = x.shape[0]
    out = x
    base = 0
    for layer in range(ltab.shape[0]):
        kind = ltab[layer, L_KIND]
        h_in = input_rows(x, hidden, ltab, layer, m)
        out = output_rows(hidden, ltab, layer, m)
        bias = layer_bias(params, ltab, layer)
        if norm is not None and has_norm(ltab, layer):  # None without batch norm: then not compiled
            bias = zeros[: bias.size]  # the shift comes after the normalisation
        if kind == KIND_DENSE:
            w = dense_matrix(params, ltab, layer, ltab[layer, L_W_OFF])
            nonzero = count_nonzero(x) if layer == 0 and sparse is not None else 0
            if layer == 0 and sparse is not None and is_sparse(x, nonzero):
                sparse_product(x, w, out, nonzero, threads)
            else:
                product(1.0, h_in, NO_TRANS, w, NO_TRANS, 0.0, out, threads)
            if norm is not None and has_norm(ltab, layer):
                normalise_layer(params, ltab, layer, m, hidden, norm, threads)
            activate(out, bias, ltab[layer, L_ACT], threads)
        elif kind == KIND_CONV and covers_input(ltab, layer):  # out = h_in W^T + b, as a dense layer
            w = kernel_matrix(params, ltab, layer, ltab[layer, L_W_OFF])
            product(1.0, h_in, NO_TRANS, w, TRANS, 0.0, out, threads)
            if norm is not None and has_norm(ltab, layer):
                normalise_layer(params, ltab, layer, m, hidden, norm, threads)
            activate(out, bias, ltab[layer, L_ACT], threads)
        elif kind == KIND_CONV:
            ops[OP_CONV_FORWARD](
                as_input_images(h_in, ltab, layer),
                conv_kernel(params, ltab, layer, ltab[layer, L_W_OFF]),
                bias,
                ltab[layer, L_STRIDE],
                ltab[layer, L_PAD],
                output_images(hidden, ltab, layer, m),
                workspace,
                threads,
            )
            if norm is not None and has_norm(ltab, layer):
                normalise_layer(params, ltab, layer, m, hidden, norm, threads)
            if ltab[layer, L_ACT] != IDENTITY:
                activate(out, zeros[: out.shape[1]], ltab[layer, L_ACT], threads)
        elif kind == KIND_MAXPOOL:
            ops[OP_MAXPOOL_FORWARD](
                as_input_images(h_in, ltab, layer),
                ltab[layer, L_KERNEL],
                ltab[layer, L_STRIDE],
                output_images(hidden, ltab, layer, m),
                argmax_images(indices, ltab, layer, m),
                threads,
            )
        elif averages is not None:  # KIND_AVGPOOL
            ops[OP_AVGPOOL_FORWARD](
                as_input_images(h_in, ltab, layer),
                ltab[layer, L_KERNEL],
                ltab[layer, L_STRIDE],
                output_images(hidden, ltab, layer, m),
                threads,
            )
        if dropout is not None:  # None without dropout: then not compiled
            if dropout[layer] < 1.0:
                drop_rows(out, dropout[layer], seed, step, base, threads)
            base += out.size
    return out


@kernel
def derive_layer(delta, hidden, ltab, layer, m, dropout, seed, step, threads, params, norm):
    """``delta *= f'(a)`` for layer ``layer`` (``delta`` its ``m x size`` block), with the
    dropout mask of update ``step`` where the layer drops units
    (:func:`~fastfa.kernels.dropout.derive_dropped_rows`), then back through its batch norm where it
    has one (:func:`~fastfa.kernels.batch_norm.normalise_backward`; ``norm`` as
    :func:`forward_layers` takes it)."""
    h = output_rows(hidden, ltab, layer, m)
    if dropout is not None and dropout[layer] < 1.0:  # None without dropout: then not compiled
        base = 0
        for below in range(layer):
            base += m * ltab[below, L_OUT_SIZE]
        derive_dropped_rows(delta, h, ltab[layer, L_ACT], dropout[layer], seed, step, base, threads)
    else:
        derive(delta, h, ltab[layer, L_ACT], threads)
    if norm is not None and has_norm(ltab, layer):  # None without batch norm: then not compiled
        batch, normed, training = norm
        normalise_backward(
            delta.reshape(channel_blocks(normed, ltab, layer, m).shape),
            channel_blocks(normed, ltab, layer, m),
            norm_scale(params, ltab, layer),
            norm_batch(batch, ltab, layer),
            threads,
        )


@inlined_kernel
def send_down(
    params, feedback, ltab, layer, signal, hidden, deltas, indices, workspace, averages, ops, m, threads,
    dropout, seed, step, norm,
):  # fmt: skip
    """``delta_{layer-1}`` from ``delta_layer`` through layer ``layer`` (see the module notes)."""
    kind = ltab[layer, L_KIND]
    src = output_rows(deltas, ltab, layer, m)
    dst = output_rows(deltas, ltab, layer - 1, m)
    source = params if signal == SIGNAL_BACKPROP else feedback
    offset = ltab[layer, L_W_OFF] if signal == SIGNAL_BACKPROP else ltab[layer, L_FB_OFF]
    if kind == KIND_DENSE:
        product(1.0, src, NO_TRANS, dense_matrix(source, ltab, layer, offset), TRANS, 0.0, dst, threads)
    elif kind == KIND_CONV and covers_input(ltab, layer):
        product(1.0, src, NO_TRANS, kernel_matrix(source, ltab, layer, offset), NO_TRANS, 0.0, dst, threads)
    elif kind == KIND_CONV:
        ops[OP_CONV_BACKWARD_INPUT](
            output_images(deltas, ltab, layer, m),
            conv_kernel(source, ltab, layer, offset),
            ltab[layer, L_STRIDE],
            ltab[layer, L_PAD],
            output_images(deltas, ltab, layer - 1, m),
            workspace,
            threads,
        )
    elif kind == KIND_MAXPOOL:
        ops[OP_MAXPOOL_BACKWARD](
            output_images(deltas, ltab, layer, m),
            argmax_images(indices, ltab, layer, m),
            output_images(deltas, ltab, layer - 1, m),
            threads,
        )
    elif averages is not None:  # KIND_AVGPOOL
        ops[OP_AVGPOOL_BACKWARD](
            output_images(deltas, ltab, layer, m),
            ltab[layer, L_KERNEL],
            ltab[layer, L_STRIDE],
            output_images(deltas, ltab, layer - 1, m),
            threads,
        )
    if has_params(ltab, layer - 1):
        derive_layer(dst, hidden, ltab, layer - 1, m, dropout, seed, step, threads, params, norm)
    return src


@kernel
def backward_layers(
    params, feedback, ltab, icfg, x, t, hidden, deltas, indices, zeros, workspace, averages, sparse, ops,
    plugin, dropout, step, norm,
):  # fmt: skip
    """Forward pass, output error and the rule's signal ``delta_l`` at every layer that learns.

    ``plugin``, when not None, is a compiled plugin's hidden signal (:mod:`fastfa.compiled_rules`)
    for a rule with a direct signal: it replaces the built-in one at every layer with weights
    below the output, called with the layer's index in the table, ``b = D_l`` and empty
    ``above`` and ``w_above``; None (the built-in rules) leaves it out of the compile.
    ``dropout`` and ``step``: as :func:`forward_layers` takes them (a dropped unit's signal is
    zero); ``norm`` as :func:`forward_layers` takes it (in training mode: batch statistics).
    Returns ``(summed loss, error count)`` of the forward pass.
    """
    m = x.shape[0]
    last = ltab.shape[0] - 1
    threads = icfg[I_THREADS]
    signal = icfg[I_SIGNAL]
    seed = icfg[I_SEED]
    y = forward_layers(
        params, ltab, x, hidden, indices, zeros, workspace, averages, sparse, ops, threads, dropout, seed,
        step, norm,
    )  # fmt: skip
    e = output_rows(deltas, ltab, last, m)
    loss, errors = output_error(y, t, ltab[last, L_ACT], icfg[I_LOSS], icfg[I_CLASSIFICATION], e, 1.0 / m)
    if signal == SIGNAL_NONE:
        return loss, errors
    if signal == SIGNAL_BACKPROP or signal == SIGNAL_LAYERWISE:
        lowest = 0  # the first layer with weights: no layer below it learns, so no signal goes there
        while not has_params(ltab, lowest):
            lowest += 1
        for layer in range(last, lowest, -1):
            send_down(
                params, feedback, ltab, layer, signal, hidden, deltas, indices, workspace, averages, ops,
                m, threads, dropout, seed, step, norm,
            )  # fmt: skip
        return loss, errors
    n_out = e.shape[1]
    for layer in range(last):
        if not has_params(ltab, layer):
            continue
        delta = output_rows(deltas, ltab, layer, m)
        d = direct_matrix(feedback, ltab, layer, n_out)
        if plugin is not None:  # None for the built-in rules: then not compiled
            empty = feedback[:0].reshape((0, 0))
            plugin(layer, e, t, empty, empty, d, output_rows(hidden, ltab, layer, m), delta)
        elif signal == SIGNAL_DIRECT:
            product(1.0, e, NO_TRANS, d, TRANS, 0.0, delta, threads)
        elif signal == SIGNAL_DIRECT_SIGN:
            product(1.0 / m, np.sign(e), NO_TRANS, d, TRANS, 0.0, delta, threads)
        elif signal == SIGNAL_TARGET:
            product(-1.0 / m, t, NO_TRANS, d, TRANS, 0.0, delta, threads)
        derive_layer(delta, hidden, ltab, layer, m, dropout, seed, step, threads, params, norm)
    return loss, errors


@kernel
def first_learning_layer(ltab, icfg):
    """The first layer whose weights learn: the output layer alone when hidden layers get no signal."""
    if icfg[I_SIGNAL] == SIGNAL_NONE:
        return ltab.shape[0] - 1
    return 0


@kernel
def layer_gradients(x, hidden, deltas, grads, ltab, first, workspace, sparse, ops, threads, norm):
    """Weight and bias gradients of every layer with parameters from ``first`` on, into ``grads``
    (``sparse`` and ``norm``: as in :func:`forward_layers`); a batch-normalised layer's shift and
    scale get the gradients its backward pass left in the scratch
    (:func:`~fastfa.kernels.batch_norm.normalise_backward`)."""
    m = x.shape[0]
    for layer in range(first, ltab.shape[0]):
        kind = ltab[layer, L_KIND]
        if kind == KIND_DENSE:
            delta = output_rows(deltas, ltab, layer, m)
            grad = dense_matrix(grads, ltab, layer, ltab[layer, L_W_OFF])
            nonzero = count_nonzero(x) if layer == 0 and sparse is not None else 0
            if layer == 0 and sparse is not None and is_sparse(x, nonzero):
                sparse_gradient(x, delta, grad, nonzero, threads)
            else:
                product(
                    1.0, input_rows(x, hidden, ltab, layer, m), TRANS, delta, NO_TRANS, 0.0, grad, threads
                )
            column_sums(delta, layer_bias(grads, ltab, layer))
        elif kind == KIND_CONV and covers_input(ltab, layer):  # dW = delta^T h_in, C_out x (C_in k k)
            delta = output_rows(deltas, ltab, layer, m)
            h_in = input_rows(x, hidden, ltab, layer, m)
            product(
                1.0,
                delta,
                TRANS,
                h_in,
                NO_TRANS,
                0.0,
                kernel_matrix(grads, ltab, layer, ltab[layer, L_W_OFF]),
                threads,
            )
            column_sums(delta, layer_bias(grads, ltab, layer))
        elif kind == KIND_CONV:
            ops[OP_CONV_WEIGHT_GRAD](
                as_input_images(input_rows(x, hidden, ltab, layer, m), ltab, layer),
                output_images(deltas, ltab, layer, m),
                ltab[layer, L_STRIDE],
                ltab[layer, L_PAD],
                conv_kernel(grads, ltab, layer, ltab[layer, L_W_OFF]),
                layer_bias(grads, ltab, layer),
                workspace,
                threads,
            )
        if norm is not None and has_norm(ltab, layer):  # None without batch norm: then not compiled
            batch, normed, training = norm
            block = norm_batch(batch, ltab, layer)
            channels = block.size // 4
            layer_bias(grads, ltab, layer)[:] = block[2 * channels : 3 * channels]
            norm_scale(grads, ltab, layer)[:] = block[3 * channels :]

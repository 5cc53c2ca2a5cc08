"""Naive float64 reference of a layer-table network (dense, conv and pooling layers).

Written from the definitions in fastfa/kernels/layers.py's docstring with the loops of
tests/naive_conv.py and plain matrix products, sharing nothing with the kernels but the
layer table itself (shapes and offsets).
"""

from __future__ import annotations

import numpy as np

from fastfa.kernels import codes as c
from tests import naive
from tests import naive_conv as nc

ACT_NAMES = {
    c.IDENTITY: "identity",
    c.TANH: "tanh",
    c.LOGISTIC: "logistic",
    c.RELU: "relu",
    c.SOFTMAX: "softmax",
}


def weight(buffer, row, offset):
    """A dense matrix ``(n_in, n_out)`` or a conv kernel ``(C_out, C_in, k, k)`` from a flat buffer."""
    if row[c.L_KIND] == c.KIND_DENSE:
        n_in, n_out = row[c.L_IN_SIZE], row[c.L_OUT_SIZE]
        return np.asarray(buffer[offset : offset + n_in * n_out], dtype=np.float64).reshape(n_in, n_out)
    shape = (row[c.L_C_OUT], row[c.L_C_IN], row[c.L_KERNEL], row[c.L_KERNEL])
    return np.asarray(buffer[offset : offset + np.prod(shape)], dtype=np.float64).reshape(shape)


def bias(params, row):
    n = row[c.L_OUT_SIZE] if row[c.L_KIND] == c.KIND_DENSE else row[c.L_C_OUT]
    return np.asarray(params[row[c.L_B_OFF] : row[c.L_B_OFF] + n], dtype=np.float64)


def image(rows, row, side="in"):
    if side == "in":
        return rows.reshape(len(rows), row[c.L_C_IN], row[c.L_H_IN], row[c.L_W_IN])
    return rows.reshape(len(rows), row[c.L_C_OUT], row[c.L_H_OUT], row[c.L_W_OUT])


def forward(ltab, params, x, dropped=None):
    """``(pre, post)``: every layer's pre-activation and output, as ``m x size`` float64 matrices.

    ``dropped`` maps a layer to the ``m x size`` factor its output is multiplied by in training
    (dropout: ``mask / keep``)."""
    h = np.asarray(x, dtype=np.float64)
    pre, post = [], []
    for index, row in enumerate(ltab):
        kind, k, s = row[c.L_KIND], row[c.L_KERNEL], row[c.L_STRIDE]
        if kind == c.KIND_DENSE:
            a = h @ weight(params, row, row[c.L_W_OFF]) + bias(params, row)
        elif kind == c.KIND_CONV:
            a = nc.conv(
                image(h, row), weight(params, row, row[c.L_W_OFF]), bias(params, row), s, row[c.L_PAD]
            )
        elif kind == c.KIND_MAXPOOL:
            a = nc.maxpool(image(h, row), k, s)[0]
        else:
            a = nc.avgpool(image(h, row), k, s)
        a = a.reshape(len(h), -1)
        h = naive.activation(ACT_NAMES[row[c.L_ACT]], a)
        if dropped and index in dropped:
            h = h * dropped[index]
        pre.append(a)
        post.append(h)
    return pre, post


def signals(ltab, params, feedback, x, t, signal, dropped=None):
    """Every layer's ``delta`` (``None`` where the rule sends none) and the output error, with the
    ``1/m``; ``dropped`` as :func:`forward` takes it (a layer's signal gets the same factor)."""
    pre, post = forward(ltab, params, x, dropped)
    dropped = dropped or {}
    m = len(x)
    t = np.asarray(t, dtype=np.float64)
    e = (post[-1] - t) / m  # softmax with cross-entropy
    deltas = [None] * len(ltab)
    deltas[-1] = e
    if signal in (c.SIGNAL_BACKPROP, c.SIGNAL_LAYERWISE):
        for layer in range(len(ltab) - 1, 0, -1):
            row, below = ltab[layer], ltab[layer - 1]
            d = deltas[layer]
            source, offset = (
                (params, row[c.L_W_OFF]) if signal == c.SIGNAL_BACKPROP else (feedback, row[c.L_FB_OFF])
            )
            h_in = post[layer - 1]
            if row[c.L_KIND] == c.KIND_DENSE:
                s = d @ weight(source, row, offset).T
            elif row[c.L_KIND] == c.KIND_CONV:
                s = nc.conv_transpose(
                    image(d, row, "out"),
                    weight(source, row, offset),
                    row[c.L_STRIDE],
                    row[c.L_PAD],
                    image(h_in, row).shape,
                )
            elif row[c.L_KIND] == c.KIND_MAXPOOL:
                s = nc.maxpool_backward(
                    image(h_in, row), image(d, row, "out"), row[c.L_KERNEL], row[c.L_STRIDE]
                )
            else:
                s = nc.avgpool_backward(
                    image(d, row, "out"), row[c.L_KERNEL], row[c.L_STRIDE], image(h_in, row).shape
                )
            s = s.reshape(m, -1)
            if below[c.L_KIND] in (c.KIND_DENSE, c.KIND_CONV):
                s = (
                    s
                    * naive.derivative(ACT_NAMES[below[c.L_ACT]], pre[layer - 1])
                    * dropped.get(layer - 1, 1.0)
                )
            deltas[layer - 1] = s
    elif signal == c.SIGNAL_DIRECT:
        n_out = e.shape[1]
        for layer, row in enumerate(ltab[:-1]):
            if row[c.L_KIND] in (c.KIND_DENSE, c.KIND_CONV):
                d = np.asarray(feedback[row[c.L_FB_OFF] : row[c.L_FB_OFF] + row[c.L_OUT_SIZE] * n_out])
                s = e @ d.reshape(row[c.L_OUT_SIZE], n_out).T
                deltas[layer] = (
                    s * naive.derivative(ACT_NAMES[row[c.L_ACT]], pre[layer]) * dropped.get(layer, 1.0)
                )
    return deltas, pre, post


def gradients(ltab, params, x, deltas, post):
    """The flat gradient buffer (layout of ``params``): weights and biases of every layer with a ``delta``."""
    grads = np.zeros(len(params))
    for layer, row in enumerate(ltab):
        if row[c.L_KIND] not in (c.KIND_DENSE, c.KIND_CONV) or deltas[layer] is None:
            continue
        h_in = np.asarray(x, dtype=np.float64) if layer == 0 else post[layer - 1]
        d = deltas[layer]
        if row[c.L_KIND] == c.KIND_DENSE:
            gw, gb = h_in.T @ d, d.sum(axis=0)
        else:
            gw, gb = nc.conv_weight_grad(
                image(h_in, row), image(d, row, "out"), row[c.L_STRIDE], row[c.L_PAD], row[c.L_KERNEL]
            )
        grads[row[c.L_W_OFF] : row[c.L_W_OFF] + gw.size] = gw.ravel()
        grads[row[c.L_B_OFF] : row[c.L_B_OFF] + gb.size] = gb
    return grads


def mean_loss(ltab, params, x, t):
    """Mean cross-entropy of a softmax output."""
    post = forward(ltab, params, x)[1][-1]
    t = np.asarray(t, dtype=np.float64)
    return float(-np.sum(t[t > 0] * np.log(post[t > 0])) / len(x))

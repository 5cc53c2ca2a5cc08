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


def norm_block(params, row):
    """A batch-normalised layer's ``(gamma, running mean, running variance)``, float64."""
    n = row[c.L_C_OUT]
    block = np.asarray(params[row[c.L_G_OFF] : row[c.L_G_OFF] + 3 * n], dtype=np.float64)
    return block[:n], block[n : 2 * n], block[2 * n :]


def batch_norm(a, row, params, training, eps=1e-5):
    """``(z, hat, mean, var)``: ``a`` (``m x size``) normalised per channel over the batch (and the
    positions) in training, with the running statistics otherwise, then scaled and shifted."""
    m, n = len(a), row[c.L_C_OUT]
    channels = a.reshape(m, n, -1)
    gamma, running_mean, running_var = norm_block(params, row)
    if training:
        mean = channels.mean(axis=(0, 2))
        var = channels.var(axis=(0, 2))
    else:
        mean, var = running_mean, running_var
    hat = (channels - mean[None, :, None]) / np.sqrt(var[None, :, None] + eps)
    z = gamma[None, :, None] * hat + bias(params, row)[None, :, None]
    return z.reshape(m, -1), hat.reshape(m, -1), mean, var


def batch_norm_backward(dz, hat, row, params, var, eps=1e-5):
    """``(da, dgamma, dbeta)`` through :func:`batch_norm` in training, from the normalisation's
    Jacobian written out per channel: ``d hat_i / d a_j = (delta_ij - 1/N - hat_i hat_j / N) / s``."""
    m, n = len(dz), row[c.L_C_OUT]
    dz3, hat3 = dz.reshape(m, n, -1), hat.reshape(m, n, -1)
    gamma = norm_block(params, row)[0]
    da = np.zeros_like(dz3)
    for ch in range(n):
        h = hat3[:, ch, :].ravel()
        size = h.size
        jac = (np.eye(size) - 1.0 / size - np.outer(h, h) / size) / np.sqrt(var[ch] + eps)
        da[:, ch, :] = (gamma[ch] * (jac.T @ dz3[:, ch, :].ravel())).reshape(m, -1)
    return da.reshape(m, -1), (dz3 * hat3).sum(axis=(0, 2)), dz3.sum(axis=(0, 2))


def forward(ltab, params, x, dropped=None, training=True, normed=None):
    """``(pre, post)``: every layer's pre-activation and output, as ``m x size`` float64 matrices.

    ``dropped`` maps a layer to the ``m x size`` factor its output is multiplied by in training
    (dropout: ``mask / keep``). A batch-normalised layer's pre-activation is ``z``, after the
    normalisation (batch statistics when ``training``, else the running ones); ``normed``, a dict,
    receives ``layer: (hat, mean, var)``."""
    h = np.asarray(x, dtype=np.float64)
    pre, post = [], []
    for index, row in enumerate(ltab):
        kind, k, s = row[c.L_KIND], row[c.L_KERNEL], row[c.L_STRIDE]
        norm = row[c.L_G_OFF] >= 0
        b = bias(params, row) * (0.0 if norm else 1.0) if kind in (c.KIND_DENSE, c.KIND_CONV) else None
        if kind == c.KIND_DENSE:
            a = h @ weight(params, row, row[c.L_W_OFF]) + b
        elif kind == c.KIND_CONV:
            a = nc.conv(image(h, row), weight(params, row, row[c.L_W_OFF]), b, s, row[c.L_PAD])
        elif kind == c.KIND_MAXPOOL:
            a = nc.maxpool(image(h, row), k, s)[0]
        else:
            a = nc.avgpool(image(h, row), k, s)
        a = a.reshape(len(h), -1)
        if norm:
            a, hat, mean, var = batch_norm(a, row, params, training)
            if normed is not None:
                normed[index] = (hat, mean, var)
        h = naive.activation(ACT_NAMES[row[c.L_ACT]], a)
        if dropped and index in dropped:
            h = h * dropped[index]
        pre.append(a)
        post.append(h)
    return pre, post


def signals(ltab, params, feedback, x, t, signal, dropped=None, norm_grads=None):
    """Every layer's ``delta`` (``None`` where the rule sends none) and the output error, with the
    ``1/m``; ``dropped`` as :func:`forward` takes it (a layer's signal gets the same factor). A
    batch-normalised layer's ``delta`` is its signal after the normalisation's backward
    (:func:`batch_norm_backward`); ``norm_grads``, a dict, receives ``layer: (dgamma, dbeta)``."""
    normed = {}
    pre, post = forward(ltab, params, x, dropped, normed=normed)

    def through_norm(layer, d):
        if layer not in normed:
            return d
        hat, _, var = normed[layer]
        da, dgamma, dbeta = batch_norm_backward(d, hat, ltab[layer], params, var)
        if norm_grads is not None:
            norm_grads[layer] = (dgamma, dbeta)
        return da

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
                s = through_norm(layer - 1, s)
            deltas[layer - 1] = s
    elif signal == c.SIGNAL_DIRECT:
        n_out = e.shape[1]
        for layer, row in enumerate(ltab[:-1]):
            if row[c.L_KIND] in (c.KIND_DENSE, c.KIND_CONV):
                d = np.asarray(feedback[row[c.L_FB_OFF] : row[c.L_FB_OFF] + row[c.L_OUT_SIZE] * n_out])
                s = e @ d.reshape(row[c.L_OUT_SIZE], n_out).T
                deltas[layer] = through_norm(
                    layer,
                    s * naive.derivative(ACT_NAMES[row[c.L_ACT]], pre[layer]) * dropped.get(layer, 1.0),
                )
    return deltas, pre, post


def gradients(ltab, params, x, deltas, post, norm_grads=None):
    """The flat gradient buffer (layout of ``params``): weights and biases of every layer with a
    ``delta``; with ``norm_grads`` (from :func:`signals`), a batch-normalised layer's shift (its bias
    slot) and scale."""
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
        if norm_grads and layer in norm_grads:
            dgamma, dbeta = norm_grads[layer]
            grads[row[c.L_B_OFF] : row[c.L_B_OFF] + gb.size] = dbeta
            grads[row[c.L_G_OFF] : row[c.L_G_OFF] + dgamma.size] = dgamma
    return grads


def mean_loss(ltab, params, x, t, training=True):
    """Mean cross-entropy of a softmax output."""
    post = forward(ltab, params, x, training=training)[1][-1]
    t = np.asarray(t, dtype=np.float64)
    return float(-np.sum(t[t > 0] * np.log(post[t > 0])) / len(x))

"""Slow, obviously correct reference code for the maths of fastfa (float64 numpy).

Written from DESIGN.md section 1, not from the compiled kernels, and deliberately in a
different style: lists of per-layer matrices instead of one flat buffer, per-sample error
signals (the ``1/m`` of the batch mean appears only when the gradients are formed), feedback
matrices in the paper's orientation, derivatives computed from the pre-activations rather
than from the outputs, and closed forms (``1/cosh^2``, ``log-sum-exp``, ``softplus``) where
the kernels use the cheaper forms.

Conventions (row vectors, layers counted from 0 in code):

    a_l = h_{l-1} W_l + b_l,    h_l = f_l(a_l),    h_{-1} = x,

``W_l`` has shape ``(n_l, n_{l+1})``. Hidden layer ``l`` (``l < L-1``) owns the feedback
matrix ``B_l`` of shape ``(n_src, n_{l+1})``: it carries ``delta_{l+1}`` (layerwise rules,
``n_src = n_{l+2}``, ``B_l`` stands in for ``W_{l+1}^T``) or the output error / the target
(direct rules, ``n_src = n_L``).
"""

from __future__ import annotations

import numpy as np

HIDDEN_ACTIVATIONS = ("identity", "tanh", "logistic", "relu")
OUTPUT_ACTIVATIONS = (*HIDDEN_ACTIVATIONS, "softmax")
SIGNALS = ("backprop", "layerwise", "direct", "direct-sign", "target", "none")

# ------------------------------------------------------------------ activations


def activation(name, a):
    """``f(a)`` for a matrix of pre-activations ``a`` (rows are samples)."""
    a = np.asarray(a, dtype=np.float64)
    if name == "identity":
        return a.copy()
    if name == "tanh":
        return np.tanh(a)
    if name == "logistic":
        return 0.5 * (1.0 + np.tanh(0.5 * a))  # = 1 / (1 + exp(-a)), without overflow
    if name == "relu":
        return np.where(a > 0, a, 0.0)
    if name == "softmax":
        shifted = a - a.max(axis=1, keepdims=True)
        expd = np.exp(shifted)
        return expd / expd.sum(axis=1, keepdims=True)
    raise ValueError(f"unknown activation {name!r}")


def derivative(name, a):
    """Elementwise ``f'(a)``, from the pre-activation ``a`` (not for softmax)."""
    a = np.asarray(a, dtype=np.float64)
    if name == "identity":
        return np.ones_like(a)
    if name == "tanh":
        return 1.0 / np.cosh(a) ** 2
    if name == "logistic":
        return 0.25 / np.cosh(0.5 * a) ** 2  # sigma(a) (1 - sigma(a))
    if name == "relu":
        return (a > 0).astype(np.float64)
    raise ValueError(f"no elementwise derivative for {name!r}")


def one_hot(labels, n_classes):
    t = np.zeros((len(labels), n_classes))
    for i, label in enumerate(labels):
        t[i, int(label)] = 1.0
    return t


# ---------------------------------------------------------------------- forward


def forward(weights, biases, acts, x):
    """Pre-activations and activations of every layer: ``(pre, post)``, lists of length L.

    ``acts`` names the activation of each layer (hidden ones, then the output's).
    """
    h = np.asarray(x, dtype=np.float64)
    pre, post = [], []
    for w, b, name in zip(weights, biases, acts, strict=True):
        a = h @ np.asarray(w, dtype=np.float64) + np.asarray(b, dtype=np.float64)
        h = activation(name, a)
        pre.append(a)
        post.append(h)
    return pre, post


# ------------------------------------------------------------- loss and output error


def loss_per_sample(a_out, t, out_act, loss):
    """Loss of each row, from the output pre-activations ``a_out`` and targets ``t``."""
    t = np.asarray(t, dtype=np.float64)
    if loss == "cross_entropy":
        if out_act == "softmax":
            log_p = a_out - np.logaddexp.reduce(a_out, axis=1, keepdims=True)
            return -(t * log_p).sum(axis=1)
        if out_act == "logistic":
            log_y = -np.logaddexp(0.0, -a_out)  # log sigma(a)
            log_1my = -np.logaddexp(0.0, a_out)  # log (1 - sigma(a))
            return -(t * log_y + (1.0 - t) * log_1my).sum(axis=1)
        raise ValueError("cross-entropy needs a softmax or logistic output")
    if loss == "squared_error":
        y = activation(out_act, a_out)
        return 0.5 * ((y - t) ** 2).sum(axis=1)
    raise ValueError(f"unknown loss {loss!r}")


def output_error(a_out, t, out_act, loss):
    """Per-sample output error ``e = dLoss_i / da_L`` (no ``1/m``).

    softmax + cross-entropy: ``p * sum(t) - t`` (``p - t`` for one-hot targets);
    logistic + cross-entropy: ``y - t``; squared error: ``(y - t) * f'(a_L)``.
    """
    t = np.asarray(t, dtype=np.float64)
    y = activation(out_act, a_out)
    if loss == "cross_entropy":
        if out_act == "softmax":
            return y * t.sum(axis=1, keepdims=True) - t
        if out_act == "logistic":
            return y - t
        raise ValueError("cross-entropy needs a softmax or logistic output")
    return (y - t) * derivative(out_act, a_out)


def count_errors(y, t):
    """Rows whose arg-max differs (one output: rows on different sides of 0.5)."""
    errors = 0
    for yi, ti in zip(y, t, strict=True):
        if len(yi) == 1:
            errors += int((yi[0] > 0.5) != (ti[0] > 0.5))
        else:
            errors += int(np.argmax(yi) != np.argmax(ti))
    return errors


# ---------------------------------------------------------------- hidden signals


def hidden_signals(signal, weights, feedback, pre, e, t, acts):
    """Per-sample error signals ``delta_l`` of every layer (no ``1/m``); ``None`` where none.

    - backprop:  ``delta_l = (delta_{l+1} W_{l+1}^T) * f'(a_l)``
    - layerwise: ``delta_l = (delta_{l+1} B_l) * f'(a_l)``
    - direct:    ``delta_l = (e D_l) * f'(a_l)``
    - direct-sign: ``delta_l = (sign(e) D_l) * f'(a_l)``
    - target:    ``delta_l = (-t D_l) * f'(a_l)``
    - none:      no signal for hidden layers
    """
    n_layers = len(weights)
    deltas = [None] * n_layers
    deltas[-1] = np.asarray(e, dtype=np.float64)
    for layer in range(n_layers - 2, -1, -1):
        if signal == "none":
            continue
        if signal == "backprop":
            s = deltas[layer + 1] @ np.asarray(weights[layer + 1], dtype=np.float64).T
        elif signal == "layerwise":
            s = deltas[layer + 1] @ np.asarray(feedback[layer], dtype=np.float64)
        elif signal == "direct":
            s = deltas[-1] @ np.asarray(feedback[layer], dtype=np.float64)
        elif signal == "direct-sign":
            s = np.sign(deltas[-1]) @ np.asarray(feedback[layer], dtype=np.float64)
        elif signal == "target":
            s = -np.asarray(t, dtype=np.float64) @ np.asarray(feedback[layer], dtype=np.float64)
        else:
            raise ValueError(f"unknown signal {signal!r}")
        deltas[layer] = s * derivative(acts[layer], pre[layer])
    return deltas


def weight_gradients(x, post, deltas):
    """``dW_l = (1/m) sum_i h_{l-1,i}^T delta_{l,i}`` and ``db_l = mean_i delta_{l,i}``.

    Layers without a signal get ``None``.
    """
    x = np.asarray(x, dtype=np.float64)
    m = x.shape[0]
    inputs = [x, *post[:-1]]
    d_weights, d_biases = [], []
    for h, delta in zip(inputs, deltas, strict=True):
        if delta is None:
            d_weights.append(None)
            d_biases.append(None)
            continue
        dw = np.zeros((h.shape[1], delta.shape[1]))
        for i in range(m):
            dw += np.outer(h[i], delta[i])
        d_weights.append(dw / m)
        d_biases.append(delta.sum(axis=0) / m)
    return d_weights, d_biases


# -------------------------------------------------------------------- optimisers


def sgd_step(p, g, v, *, lr, momentum, nesterov, decay):
    """One SGD step on array ``p`` with gradient ``g + decay * p``; returns ``(p, v)``.

    plain (momentum 0): ``p - lr g`` (velocity untouched); momentum: ``v = mu v - lr g``,
    ``p + v``; Nesterov (Sutskever et al. 2013, scikit-learn's form): ``p + mu v - lr g``
    with the new ``v``.
    """
    g = g + decay * p
    if momentum == 0.0:
        return p - lr * g, v
    v = momentum * v - lr * g
    if nesterov:
        return p + momentum * v - lr * g, v
    return p + v, v


def adam_step(p, g, m1, m2, *, lr, beta1, beta2, eps, decay, t):
    """One Adam step (Kingma and Ba 2015) at update count ``t`` (from 1); returns ``(p, m1, m2)``.

    ``m_hat = m1 / (1 - b1^t)``, ``v_hat = m2 / (1 - b2^t)``, and
    ``p -= lr m_hat / (sqrt(v_hat) + eps_hat)`` with ``eps_hat = eps / sqrt(1 - b2^t)``:
    the ordering of the paper's section 2 ("efficient version", also scikit-learn's), in
    which ``eps`` is added to the uncorrected ``sqrt(m2)``.
    """
    g = g + decay * p
    m1 = beta1 * m1 + (1.0 - beta1) * g
    m2 = beta2 * m2 + (1.0 - beta2) * g * g
    m_hat = m1 / (1.0 - beta1**t)
    v_hat = m2 / (1.0 - beta2**t)
    eps_hat = eps / np.sqrt(1.0 - beta2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps_hat), m1, m2


# ---------------------------------------------------------------------- feedback


def sign_feedback(magnitude, w_next):
    """Sign-concordant feedback ``B = |B0| * sign(W_{l+1}^T)`` (paper orientation)."""
    return np.abs(np.asarray(magnitude, dtype=np.float64)) * np.sign(np.asarray(w_next, dtype=np.float64).T)


_MASK64 = (1 << 64) - 1


def counter_uniform(seed, step, index):
    """U[0, 1) from a counter: SplitMix64's finaliser on ``seed*phi + step*c + index`` (mod 2^64).

    Python integers, so the wrap-around of 64-bit arithmetic is written out explicitly.
    """
    z = (seed * 0x9E3779B97F4A7C15 + step * 0xD1B54A32D192ED03 + index) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return (z >> 11) / 2.0**53


MIRROR_STREAM = 0x6D6972726F72  # the weight mirror's noise stream (fastfa/kernels/cpu.py)


def redraw_uniforms(shapes, seed, step):
    """The ``U`` matrices (paper orientation) brsf draws at ``step``.

    Entries are numbered layer after layer, row-major in the *forward* orientation
    ``(n_{l+1}, n_src)`` of each feedback matrix.
    """
    out, base = [], 0
    for n_src, n_l in shapes:
        u = np.zeros((n_l, n_src))
        for i in range(n_l):
            for j in range(n_src):
                u[i, j] = counter_uniform(seed, step, base + i * n_src + j)
        out.append(u.T)
        base += n_src * n_l
    return out


# -------------------------------------------------------- flat buffers <-> lists


def split_params(flat, sizes):
    """``[W_0 .. W_{L-1}, b_0 .. b_{L-1}]`` flat buffer -> (list of W, list of b), float64 copies."""
    flat = np.asarray(flat, dtype=np.float64)
    weights, biases, off = [], [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        weights.append(flat[off : off + n_in * n_out].reshape(n_in, n_out).copy())
        off += n_in * n_out
    for n_out in sizes[1:]:
        biases.append(flat[off : off + n_out].copy())
        off += n_out
    assert off == flat.size
    return weights, biases


def join_params(weights, biases):
    return np.concatenate([np.ravel(w) for w in weights] + [np.ravel(b) for b in biases])


def feedback_shapes(sizes, signal):
    """Paper-orientation shapes ``(n_src, n_l)`` of the feedback matrices of each hidden layer."""
    if signal not in ("layerwise", "direct", "direct-sign", "target"):
        return []
    return [
        (sizes[layer + 2] if signal == "layerwise" else sizes[-1], sizes[layer + 1])
        for layer in range(len(sizes) - 2)
    ]


def split_feedback(flat, sizes, signal):
    """Flat feedback buffer (each matrix stored C-ordered in forward orientation
    ``(n_l, n_src)``, one after another) -> list of ``B`` in paper orientation, copies."""
    flat = np.asarray(flat, dtype=np.float64)
    out, off = [], 0
    for n_src, n_l in feedback_shapes(sizes, signal):
        out.append(flat[off : off + n_src * n_l].reshape(n_l, n_src).T.copy())
        off += n_src * n_l
    assert off == flat.size
    return out


# ----------------------------------------------------------------------- network


class Net:
    """A network, its rule and its optimiser, as lists of float64 arrays.

    Parameters mirror :class:`fastfa.config.TrainConfig`; ``signal`` and ``dynamics``
    those of :class:`fastfa.rules.Rule`. ``magnitude`` (paper orientation) is ``|B0|``
    for sign-concordant dynamics.
    """

    def __init__(
        self,
        sizes,
        weights,
        biases,
        *,
        activation="tanh",
        output_activation="softmax",
        loss="cross_entropy",
        signal="backprop",
        dynamics="fixed",
        feedback=(),
        magnitude=(),
        optimizer="sgd",
        lr=0.01,
        momentum=0.0,
        nesterov=False,
        weight_decay=0.0,
        beta1=0.9,
        beta2=0.999,
        epsilon=1e-8,
        seed=0,
        classification=True,
        mirror=(0.0, 0.0, 0.0),
    ):
        self.sizes = tuple(int(s) for s in sizes)
        self.weights = [np.array(w, dtype=np.float64) for w in weights]
        self.biases = [np.array(b, dtype=np.float64) for b in biases]
        self.acts = [activation] * (len(self.sizes) - 2) + [output_activation]
        self.loss = loss
        self.signal = signal
        self.dynamics = dynamics
        self.feedback = [np.array(b, dtype=np.float64) for b in feedback]
        self.magnitude = [np.abs(np.array(b, dtype=np.float64)) for b in magnitude]
        self.optimizer = optimizer
        self.lr, self.momentum, self.nesterov, self.weight_decay = lr, momentum, nesterov, weight_decay
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.seed = seed
        self.classification = classification
        self.mirror_lr, self.mirror_decay, self.mirror_noise = mirror
        # optimiser state: two slots (SGD velocity / Adam moments), each (weight list, bias list)
        self.state = [
            ([np.zeros_like(w) for w in self.weights], [np.zeros_like(b) for b in self.biases])
            for _ in range(2)
        ]
        self.step = 0

    @property
    def n_layers(self):
        return len(self.weights)

    def trainable(self, layer):
        """Only the output layer learns when hidden layers receive no signal."""
        return self.signal != "none" or layer == self.n_layers - 1

    def flat_params(self):
        return join_params(self.weights, self.biases)

    def flat_state(self):
        """The optimiser state in fastfa's layout: SGD keeps the carried momentum ``mu v``."""
        state = np.stack([join_params(ws, bs) for ws, bs in self.state])
        if self.optimizer == "sgd" and self.momentum:
            state[0] *= self.momentum
        return state

    def load_state(self, flat, sizes):
        """Inverse of :meth:`flat_state` (``v = carried / mu``; plain SGD leaves it as it is)."""
        flat = np.array(flat, dtype=np.float64)
        if self.optimizer == "sgd" and self.momentum:
            flat[0] = flat[0] / self.momentum
        self.state = [split_params(flat[slot], sizes) for slot in range(2)]

    # ----------------------------------------------------------------- passes

    def outputs(self, x):
        return forward(self.weights, self.biases, self.acts, x)[1][-1]

    def evaluate(self, x, t):
        """Summed loss and error count over the rows of ``x``."""
        pre, post = forward(self.weights, self.biases, self.acts, x)
        loss = loss_per_sample(pre[-1], t, self.acts[-1], self.loss).sum()
        errors = count_errors(post[-1], t) if self.classification else 0
        return loss, errors

    def gradients(self, x, t, signal=None):
        """``(dWs, dbs, summed loss, error count)`` of the rule on one batch."""
        signal = self.signal if signal is None else signal
        pre, post = forward(self.weights, self.biases, self.acts, x)
        e = output_error(pre[-1], t, self.acts[-1], self.loss)
        deltas = hidden_signals(signal, self.weights, self.feedback, pre, e, t, self.acts)
        d_weights, d_biases = weight_gradients(x, post, deltas)
        loss = loss_per_sample(pre[-1], t, self.acts[-1], self.loss).sum()
        errors = count_errors(post[-1], t) if self.classification else 0
        return d_weights, d_biases, loss, errors

    def refresh_feedback(self, step):
        """Sign-concordant feedback from the current weights (no-op for other dynamics)."""
        if self.dynamics not in ("sign", "sign-redraw"):
            return
        shapes = feedback_shapes(self.sizes, self.signal)
        uniforms = redraw_uniforms(shapes, self.seed, step) if self.dynamics == "sign-redraw" else None
        for layer in range(self.n_layers - 1):
            b = sign_feedback(self.magnitude[layer], self.weights[layer + 1])
            if uniforms is not None:
                b = b * uniforms[layer]
            self.feedback[layer] = b

    def update(self, d_weights, d_biases, step):
        """One optimiser step with update count ``step`` (from 1); weight decay on weights only."""
        for layer in range(self.n_layers):
            if not self.trainable(layer):
                continue
            for kind, grad, decay in ((0, d_weights[layer], self.weight_decay), (1, d_biases[layer], 0.0)):
                p = (self.weights if kind == 0 else self.biases)[layer]
                s0 = self.state[0][kind]
                s1 = self.state[1][kind]
                if self.optimizer == "adam":
                    p, s0[layer], s1[layer] = adam_step(
                        p,
                        grad,
                        s0[layer],
                        s1[layer],
                        lr=self.lr,
                        beta1=self.beta1,
                        beta2=self.beta2,
                        eps=self.epsilon,
                        decay=decay,
                        t=step,
                    )
                else:
                    p, s0[layer] = sgd_step(
                        p,
                        grad,
                        s0[layer],
                        lr=self.lr,
                        momentum=self.momentum,
                        nesterov=self.nesterov,
                        decay=decay,
                    )
                (self.weights if kind == 0 else self.biases)[layer] = p

    def train_batch(self, x, t):
        """Refresh the feedback, take the gradients, update. Returns the loss and errors before."""
        self.step += 1
        self.refresh_feedback(self.step)
        d_weights, d_biases, loss, errors = self.gradients(x, t)
        before = [w.copy() for w in self.weights]
        self.update(d_weights, d_biases, self.step)
        if self.dynamics == "kolen-pollack":
            self.kolen_pollack(before)
        elif self.dynamics == "mirror":
            self.weight_mirror(len(x), self.step)
        return loss, errors

    def kolen_pollack(self, before):
        """``B^T`` receives ``W``'s update, with its own decay: ``B^T += dW + lr wd (W_old - B^T)``."""
        decay = self.lr * self.weight_decay
        for layer in range(self.n_layers - 1):
            w_old, w_new = before[layer + 1], self.weights[layer + 1]
            b_t = self.feedback[layer].T
            self.feedback[layer] = (b_t + (w_new - w_old) + decay * (w_old - b_t)).T

    def weight_mirror(self, m, step):
        """``B^T <- (1 - eta lam) B^T + (eta / m) xi^T (xi W_{l+1})``, ``xi`` uniform with std ``noise``."""
        half_width = self.mirror_noise * np.sqrt(3.0)
        base = 0
        for layer in range(self.n_layers - 1):
            n_l = self.sizes[layer + 1]
            xi = np.zeros((m, n_l))
            for i in range(m):
                for j in range(n_l):
                    u = counter_uniform(self.seed ^ MIRROR_STREAM, step, base + i * n_l + j)
                    xi[i, j] = half_width * (2.0 * u - 1.0)
            base += m * n_l
            y = xi @ self.weights[layer + 1]
            b_t = (1.0 - self.mirror_lr * self.mirror_decay) * self.feedback[
                layer
            ].T + self.mirror_lr / m * xi.T @ y
            self.feedback[layer] = b_t.T

    def train_epoch(self, x, t, order, batch_size):
        """Batches of rows ``order`` in turn; summed loss and error count over the epoch."""
        x = np.asarray(x, dtype=np.float64)
        t = np.asarray(t, dtype=np.float64)
        total_loss, total_errors = 0.0, 0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            loss, errors = self.train_batch(x[rows], t[rows])
            total_loss += loss
            total_errors += errors
        return total_loss, total_errors

"""Training on an NVIDIA GPU: the :class:`~fastfa.train.Trainer`'s batches run as CUDA kernels.

:class:`CudaEngine` (dense networks) and :class:`~fastfa.cuda_layers.CudaLayerEngine` (layer
lists with conv and pooling layers) keep the flat parameter, feedback and optimiser-state
buffers of a trainer on the device, in the same layout as on the host, and copy them back
after every call, so a run file written after CUDA training is the same kind of file as after
CPU training (and either engine resumes it). What they share is :class:`DeviceEngine`'s.

The rows stay on the device too. :meth:`DeviceEngine.chunk` copies a chunk of a dataset split
once (as :class:`DeviceRows`) and keeps it for the next epochs while the split's chunks fit
in :data:`DATA_BYTES`; each call then gathers its rows in the epoch's order on the device.
Host arrays passed straight to :meth:`DeviceEngine.train_rows` are gathered on the host and
copied once per call. The batches of a call run with no transfer (for dense networks by
default all of them in one cooperative kernel launch), and the loss and error totals come
back once per call.

What runs on CUDA (``Rule.devices`` says which rules): signals ``backprop``,
``layerwise``, ``direct``, ``direct-sign``, ``target`` and ``none`` with fixed feedback, and
layerwise feedback with Kolen-Pollack, sign-concordant (``sign``, ``sign-redraw``) or weight
mirror dynamics;
hidden activations tanh, logistic, relu, identity; every output and loss of the CPU engine
(softmax or logistic with cross-entropy, any activation with squared error; classification
or regression); SGD with momentum (heavy ball or Nesterov), Adam or Batch Manhattan (one launch
per operation), with weight decay; float32; for layer lists also conv, max-pool and average-pool
layers. Anything else is refused with a one-line error (:func:`check_supported`).
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict

import numpy as np

from fastfa.kernels import codes

MODES = ("fused", "kernels")
#: Device memory for the rows of a split (inputs and targets, float32). A split that fits is
#: copied to the device in its first epoch and read from there in every later one; a larger
#: split keeps its most recently used chunks.
DATA_BYTES = 2 * 2**30
SIGNALS = ("backprop", "layerwise", "direct", "direct-sign", "target", "none")
#: Feedback dynamics beyond ``fixed`` that run on cuda, for layerwise feedback.
LEARNED_FEEDBACK = ("kolen-pollack", "sign", "sign-redraw", "mirror")


def check_supported(trainer):
    """Raise ``ValueError`` (one line) for what the CUDA engines cannot train."""
    from fastfa.kernels import cuda as kernels

    if not kernels.available():
        raise ValueError("--device cuda: no CUDA GPU or driver found (numba.cuda.is_available() is False)")
    rule = trainer.rule
    for hook in ("hidden_signal", "feedback_step"):
        if getattr(rule, hook) is not None and getattr(rule, f"{hook}_cuda") is None:
            raise ValueError(
                f"rule {rule.name!r}: its compiled {hook} has no CUDA twin ({hook}_cuda, "
                "fastfa.compiled_rules); use --device cpu"
            )
    if "cuda" not in rule.devices:
        raise ValueError(f"rule {rule.name!r} has no cuda support (devices: {', '.join(rule.devices)})")
    problems = []
    options = trainer.rule_options
    if options.get("mirror_response", "linear") != "linear" or options.get("mirror_rounds", 0):
        problems.append("the weight mirror's mirror_response=activation or mirror_rounds")
    learned = rule.dynamics in LEARNED_FEEDBACK and rule.signal == "layerwise"
    if rule.signal not in SIGNALS or not (rule.dynamics == "fixed" or learned):
        problems.append(f"signal {rule.signal!r} with {rule.dynamics!r} feedback")
    if trainer.dtype != np.float32:
        problems.append(f"dtype {trainer.dtype}")
    if problems:
        raise ValueError(f"the cuda engine does not support {', '.join(problems)}; use --device cpu")


def dense_targets(labels, targets, n_outputs):
    """Float32 ``(n, n_outputs)`` targets: one-hot rows from class ``labels`` when there are
    labels (classification), else the regression ``targets`` themselves."""
    if not labels.size:
        return np.ascontiguousarray(targets, dtype=np.float32)
    dense = np.zeros((len(labels), n_outputs), dtype=np.float32)
    dense[np.arange(len(labels)), labels] = 1.0
    return dense


class DeviceRows:
    """Rows on the device: inputs ``x`` ``(n, n_in)`` and targets ``t`` ``(n, n_out)``, float32
    (one-hot for classification). Pass one as the ``x`` of :meth:`CudaEngine.train_rows`."""

    def __init__(self, x, t):
        self.x, self.t = x, t

    def __len__(self):
        return self.x.shape[0]

    @property
    def nbytes(self):
        return 4 * (self.x.size + self.t.size)


class DeviceEngine:
    """What the CUDA engines share: rows staged on the device, the trainer's buffers copied down
    before each call and back after it, and the pieces of a step that do not depend on the
    network's layout (output error and loss totals, the optimiser step, feedback dynamics).

    A subclass (:class:`CudaEngine` for dense networks, :class:`~fastfa.cuda_layers.CudaLayerEngine`
    for layer tables) gives ``mode``, :meth:`_views` (its views of the buffers for a batch size)
    and :meth:`_step` (one batch as kernel launches), and may override :meth:`_train`.

    Parameters
    ----------
    trainer : fastfa.train.Trainer
        Its configuration has been checked (:func:`check_supported`).
    """

    mode = "kernels"

    def __init__(self, trainer):
        from numba import cuda

        from fastfa.kernels import cuda as kernels

        self.cuda, self.k = cuda, kernels
        self.trainer = trainer
        self.n_in, self.n_out = trainer.arch.sizes[0], trainer.arch.sizes[-1]
        self.capacity = trainer.config.batch_size
        zeros = lambda n: cuda.to_device(np.zeros(n, dtype=np.float32))  # noqa: E731
        self.grads = zeros(trainer.params.size)
        self.loss_rows, self.error_rows = (
            zeros(self.capacity),
            cuda.to_device(np.zeros(self.capacity, np.int32)),
        )
        self.totals = zeros(2)
        self.sign_e = zeros(self.capacity * self.n_out)  # sign(e) for the direct-sign signal
        self.dynamics = codes.DYNAMICS[trainer.rule.dynamics]
        self.kolen_pollack = self.dynamics == codes.DYNAMICS_KOLEN_POLLACK
        self.sign_feedback = self.dynamics in (codes.DYNAMICS_SIGN, codes.DYNAMICS_SIGN_REDRAW)
        self.mirror = self.dynamics == codes.DYNAMICS_MIRROR
        #: a compiled plugin's device twins (:mod:`fastfa.compiled_rules`), None for the built-in rules
        self.plugin_signal = trainer.rule.hidden_signal_cuda
        self.plugin_feedback_step = trainer.rule.feedback_step_cuda
        if self.plugin_signal is not None or self.plugin_feedback_step is not None:
            self._empty = cuda.to_device(np.zeros((0, 0), dtype=np.float32))  # a plugin's absent matrices
        #: whether training changes the feedback (learned, following the weights, or a plugin's step)
        self.feedback_changes = (
            self.dynamics != codes.DYNAMICS_FIXED or trainer.rule.feedback_step is not None
        )
        self.adam = trainer.config.optimizer == "adam"
        self.manhattan = trainer.config.optimizer == "manhattan"
        self._chunks, self._chunks_of = OrderedDict(), None  # (start, stop) -> DeviceRows of a split
        self._gathered = None  # the (x, t) rows of the current call, reused while large enough

    def _run_plugin(self, hook, layer, launch, *args):
        """``launch(*args)``, a plugin's device function failing as one line naming the rule
        (:func:`fastfa.compiled_rules.device_failure`); the host's parameters are untouched."""
        try:
            launch(*args)
        except Exception as exc:
            from fastfa.compiled_rules import device_failure

            raise device_failure(self.trainer.rule, hook, layer, exc) from None

    def _views(self, params, feedback, state, m):
        """The subclass's views of the device buffers for a batch of ``m`` rows."""
        raise NotImplementedError

    def _step(self, v, x, t, lr, mu, decay, nesterov, step):
        """One batch (update number ``step``) as kernel launches, with the views ``v``."""
        raise NotImplementedError

    # ------------------------------------------------------------- step parts

    def _update_ranges(self, params, state, w_lo, n_weights, b_lo):
        """``(params, grads, both rows of optimiser state, decays)`` slices of what learns: the
        weights ``[w_lo, n_weights)`` (with weight decay), then the biases ``[b_lo, end)``."""
        ranges = ((w_lo, n_weights, True), (b_lo, params.size, False))
        return [
            (params[lo:hi], self.grads[lo:hi], state[0][lo:hi], state[1][lo:hi], decays)
            for lo, hi, decays in ranges
        ]

    def _output_error(self, z, b, t, e):
        """The output layer of an ``m``-row batch (:func:`~fastfa.kernels.cuda_elementwise.
        output_error_kernel`): ``y = f(z + b)`` in ``z``, ``e = dLoss/da_L / m``, and the batch's
        summed loss and error count added to the device totals."""
        k, m = self.k, z.shape[0]
        k.launch_1d(
            k.output_error_kernel, m, z, b, t, e, self.loss_rows, self.error_rows, 1.0 / m,
            *self._output_codes(),
        )  # fmt: skip
        k.accumulate_kernel[1, 1](self.loss_rows, self.error_rows, m, self.totals)

    def _output_codes(self):
        """``(output activation, loss, classification)`` codes of the output layer's kernels."""
        tr = self.trainer
        return int(tr.acts[-1]), int(tr.icfg[codes.I_LOSS]), int(tr.icfg[codes.I_CLASSIFICATION])

    def _sign_of(self, e):
        """``sign(e)`` (the direct-sign signal's source) in a buffer of ``e``'s shape."""
        sign_e = self.sign_e[: e.size].reshape(e.shape)
        self.k.launch_1d(self.k.sign_kernel, e.size, e, sign_e)
        return sign_e

    def _optimise(self, updates, lr, mu, decay, nesterov, step):
        """Update ``step`` (from 1) of SGD (heavy ball or Nesterov), Adam or Batch Manhattan on the ranges of
        :meth:`_update_ranges`, with weight decay ``decay`` where a range decays."""
        k, c = self.k, self.trainer.config
        rate = k.adam_rate(lr, c.beta1, c.beta2, step) if self.adam else lr
        for w, g, first, second, decays in updates:
            d = decay if decays else 0.0
            if self.adam:
                k.launch_1d(k.adam_kernel, w.size, w, g, first, second, rate, c.beta1, c.beta2, c.epsilon, d)
            elif self.manhattan:
                k.launch_1d(k.manhattan_kernel, w.size, w, g, first, lr, mu, d, nesterov)
            else:
                k.launch_1d(k.sgd_kernel, w.size, w, g, first, lr, mu, d, nesterov)

    def _refresh_sign_feedback(self, params, feedback, spans, step):
        """``F = |B0| sign(W)`` (times a fresh draw for ``sign-redraw``) before update ``step``, one
        launch per ``(weight offset, feedback offset, entries)`` span."""
        for w_off, f_off, n in spans:
            self.k.launch_1d(
                self.k.sign_feedback_kernel, n, params, feedback, self.magnitude, w_off, f_off, n,
                self.dynamics, self.trainer.config.seed, step,
            )  # fmt: skip

    def _shift_feedback(self, pairs, keep, weight):
        """``F <- keep F + weight W`` for every ``(F, W)`` pair of matrices (Kolen-Pollack)."""
        for f, w in pairs:
            self.k.launch_1d(self.k.shift_kernel, f.size, f, w, keep, weight)

    def _mirror_settings(self):
        """The weight mirror's ``(eta, lam, noise half-width)``: the noise is uniform with the
        rule's standard deviation ``mirror_noise``."""
        fcfg = self.trainer._fcfg()
        noise = fcfg[codes.F_MIRROR_NOISE] * np.sqrt(3.0)
        return float(fcfg[codes.F_MIRROR_LR]), float(fcfg[codes.F_MIRROR_DECAY]), float(noise)

    def _mirror_noise(self, xi, step, base, half_width):
        """The weight mirror's noise at update ``step`` into ``xi``, entries numbered from ``base``."""
        k = self.k
        k.launch_1d(k.mirror_noise_kernel, xi.size, xi, self.trainer.config.seed, step, base, half_width)

    # ------------------------------------------------------------------- rows

    def stage(self, x, labels, targets):
        """Prepared host rows (:meth:`~fastfa.train.Trainer.prepare`) as :class:`DeviceRows`,
        in the ``(x, labels, targets)`` form :meth:`train_rows` takes."""
        to_device = self.cuda.to_device
        t = dense_targets(labels, targets, self.n_out)
        rows = DeviceRows(to_device(x.astype(np.float32, copy=False)), to_device(t))
        return rows, labels[:0], targets[:0]

    def chunk(self, split, start, stop, read):
        """Rows ``start:stop`` of ``split`` on the device, as :meth:`stage` returns them.

        ``read()`` gives the prepared host rows; it is called only when the chunk is not
        already on the device. Chunks of one split stay while they fit in :data:`DATA_BYTES`
        (the least recently used go first); asking for another split's rows drops them all.
        """
        if self._chunks_of is not split:
            self._chunks.clear()
            self._chunks_of = split
        key = (int(start), int(stop))
        if key in self._chunks:
            self._chunks.move_to_end(key)
            rows = self._chunks[key]
        else:
            rows = self._chunks[key] = self.stage(*read())[0]
            while len(self._chunks) > 1 and sum(r.nbytes for r in self._chunks.values()) > DATA_BYTES:
                self._chunks.popitem(last=False)
        return rows, np.zeros(0, dtype=np.int64), np.zeros((0, self.n_out), dtype=np.float32)

    def _rows_buffers(self, n):
        """Device ``(n, n_in)`` and ``(n, n_out)`` views for a call's rows, in buffers kept
        between calls."""
        if self._gathered is None or self._gathered[0].shape[0] < n:
            empty = lambda cols: self.cuda.device_array((n, cols), dtype=np.float32)  # noqa: E731
            self._gathered = empty(self.n_in), empty(self.n_out)
        return self._gathered[0][:n], self._gathered[1][:n]

    def _call_rows(self, x, labels, targets, order):
        """The rows ``x[order]`` and their targets (one-hot for classes), on the device, in order."""
        d_x, d_t = self._rows_buffers(len(order))
        if isinstance(x, DeviceRows):
            d_order = self.cuda.to_device(np.ascontiguousarray(order, dtype=np.int64))
            self.k.launch_1d(self.k.gather_rows_kernel, d_x.size, x.x, d_order, d_x)
            self.k.launch_1d(self.k.gather_rows_kernel, d_t.size, x.t, d_order, d_t)
        else:
            d_x.copy_to_device(np.ascontiguousarray(x[order], dtype=np.float32))
            pick = lambda a: a[order] if len(a) else a  # noqa: E731  (the unused one is empty)
            d_t.copy_to_device(dense_targets(pick(labels), pick(targets), self.n_out))
        return d_x, d_t

    # ------------------------------------------------------------------ train

    def train_rows(self, x, labels, targets, order, batch):
        """Train on ``x[order]`` in batches of ``batch`` rows; returns ``(summed loss, error count)``.

        ``x`` is a host array (with ``labels``) or :class:`DeviceRows` (from :meth:`stage` or
        :meth:`chunk`). The trainer's host buffers hold the result when this returns.
        """
        cuda, tr = self.cuda, self.trainer
        if len(order) == 0:
            return 0.0, 0  # nothing to train (no zero-size launches on the device)
        d_x, d_t = self._call_rows(x, labels, targets, np.asarray(order))
        params, feedback = cuda.to_device(tr.params), cuda.to_device(tr.feedback)
        state = cuda.to_device(tr.state)  # SGD's carried momentum, or Adam's two moments
        self.magnitude = cuda.to_device(tr.magnitude) if self.sign_feedback else params  # |B0|
        c = tr.config
        hyper = (tr.learning_rate(), c.momentum, c.weight_decay, c.nesterov)
        loss, errors = self._train(d_x, d_t, params, feedback, state, batch, *hyper)
        params.copy_to_host(tr.params)
        state.copy_to_host(tr.state)
        if self.feedback_changes:
            feedback.copy_to_host(tr.feedback)
        return loss, errors

    def _train(self, d_x, d_t, params, feedback, state, batch, lr, mu, decay, nesterov):
        """The batches of a call on the device buffers; returns ``(summed loss, error count)``."""
        return self._train_kernels(d_x, d_t, params, feedback, state, batch, lr, mu, decay, nesterov)

    def _train_kernels(self, d_x, d_t, params, feedback, state, batch, lr, mu, decay, nesterov):
        """The batches as separate kernel launches (``mode="kernels"``)."""
        self.totals.copy_to_device(np.zeros(2, dtype=np.float32))
        n = d_x.shape[0]
        full = self._views(params, feedback, state, batch)
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            views = full if stop - start == batch else self._views(params, feedback, state, stop - start)
            step = self.trainer.step + start // batch + 1
            self._step(views, d_x[start:stop], d_t[start:stop], lr, mu, decay, nesterov, step)
        loss, errors = self.totals.copy_to_host()
        return float(loss), int(round(errors))


class CudaEngine(DeviceEngine):
    """Device copies of a trainer's buffers, and the batch loop over them.

    Two ways to run the batches, with the same arithmetic:

    - ``"fused"`` (the default): one cooperative launch of
      :func:`~fastfa.kernels.cuda_fused.fused_chunk_kernel` per call runs every batch, the
      phases of a batch separated by grid-wide barriers;
    - ``"kernels"``: a dozen kernel launches per batch (GEMM, bias and activation,
      softmax error, derivative, column sums, SGD), the fallback where a cooperative
      launch is not available.

    Parameters
    ----------
    trainer : fastfa.train.Trainer
    mode : {"fused", "kernels"}, optional
        Default: the environment variable ``FASTFA_CUDA_MODE``, else ``"fused"``.
    """

    def __init__(self, trainer, mode=None):
        check_supported(trainer)
        super().__init__(trainer)
        sizes = trainer.arch.sizes
        self.sizes = sizes
        self.n_layers = len(sizes) - 1
        width = sum(sizes[1:])
        zeros = lambda n: self.cuda.to_device(np.zeros(n, dtype=np.float32))  # noqa: E731
        self.hidden, self.deltas = zeros(self.capacity * width), zeros(self.capacity * width)
        mode = mode or os.environ.get("FASTFA_CUDA_MODE", "fused")
        if mode not in MODES:
            raise ValueError(f"cuda mode must be one of {', '.join(MODES)}, got {mode!r}")
        if self.plugin_signal is not None or self.plugin_feedback_step is not None or self.manhattan:
            mode = "kernels"  # a plugin's device functions, and Batch Manhattan, run in kernels of their own
        if trainer.dropout is not None:
            mode = "kernels"  # so does dropout
        self.mode = mode
        self._layout = None  # device offset arrays of the fused kernel, made on first use

    # ------------------------------------------------------------------ views

    def _weights(self, flat):
        views, off = [], 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            views.append(flat[off : off + n_in * n_out].reshape(n_in, n_out))
            off += n_in * n_out
        return views

    def _biases(self, flat):
        views, off = [], sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))
        for n_out in self.sizes[1:]:
            views.append(flat[off : off + n_out])
            off += n_out
        return views

    def _rows(self, buffer, m):
        """Per-layer ``(m, n_l)`` views of an activation-layout buffer."""
        views, off = [], 0
        for n in self.sizes[1:]:
            views.append(buffer[off : off + m * n].reshape(m, n))
            off += self.capacity * n
        return views

    def _feedback_shapes(self):
        """``(rows, cols)`` of each hidden layer's feedback matrix, in forward orientation."""
        layerwise = self.trainer.rule.signal == "layerwise"
        return [
            (self.sizes[layer + 1], self.sizes[layer + 2] if layerwise else self.sizes[-1])
            for layer in range(self.n_layers - 1)
        ]

    def _feedback(self, flat):
        views, off = [], 0
        for rows, cols in self._feedback_shapes():
            views.append(flat[off : off + rows * cols].reshape(rows, cols))
            off += rows * cols
        return views

    def _first_trainable(self):
        """The first layer that learns: only the output layer when hidden layers get no signal."""
        return self.n_layers - 1 if self.trainer.rule.signal == "none" else 0

    # ------------------------------------------------------------------- step

    def _views(self, params, feedback, state, m):
        """Every per-layer view a step of ``m`` rows uses, made once per call (not per batch)."""
        first = self._first_trainable()
        n_weights = sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))
        w_lo = sum(self.sizes[i] * self.sizes[i + 1] for i in range(first))
        b_lo = n_weights + sum(self.sizes[1 : first + 1])
        return {
            "weights": self._weights(params),
            "biases": self._biases(params),
            "feedback": self._feedback(feedback) if self.trainer.rule.has_feedback else None,
            "hidden": self._rows(self.hidden, m),
            "deltas": self._rows(self.deltas, m),
            "grad_w": self._weights(self.grads),
            "grad_b": self._biases(self.grads),
            "first": first,
            "flat": (params, feedback),
            "updates": self._update_ranges(params, state, w_lo, n_weights, b_lo),
        }

    def _step(self, v, x, t, lr, mu, decay, nesterov, step):
        """One step (update number ``step``, from 1) on the device batch ``(x, t)`` with the views
        ``v`` of :meth:`_views`.

        Adds the batch's summed loss and error count to the device totals.
        """
        k, tr = self.k, self.trainer
        m = x.shape[0]
        if self.sign_feedback:
            self._refresh_sign_feedback(*v["flat"], self._sign_spans(), step)
        weights, biases, hidden, deltas = v["weights"], v["biases"], v["hidden"], v["deltas"]
        acts = tr.acts
        h_in = x
        keeps, seed, bases = tr.dropout, int(tr.config.seed), self._dropout_bases(m)
        for layer in range(self.n_layers):
            h = hidden[layer]
            k.gemm(1.0, h_in, False, weights[layer], False, 0.0, h)
            if layer < self.n_layers - 1:
                k.launch_1d(k.bias_activation_kernel, h.size, h, biases[layer], acts[layer])
                if keeps is not None and keeps[layer] < 1.0:
                    k.launch_1d(
                        k.dropout_kernel, h.size, h, float(keeps[layer]), seed, int(step), bases[layer]
                    )
            h_in = h
        e = deltas[-1]
        self._output_error(hidden[-1], biases[-1], t, e)
        signal = tr.rule.signal
        if signal != "none":
            fb = v["feedback"]
            sign_e = self._sign_of(e) if signal == "direct-sign" and self.n_layers > 1 else None
            for layer in range(self.n_layers - 2, -1, -1):
                delta = deltas[layer]
                if self.plugin_signal is not None:
                    from fastfa.kernels import cuda_plugins

                    b = fb[layer] if fb is not None else self._empty
                    self._run_plugin(
                        "hidden_signal_cuda", layer, cuda_plugins.hidden_signal, self.plugin_signal, layer,
                        e, t, deltas[layer + 1], weights[layer + 1], b, hidden[layer], delta,
                    )  # fmt: skip
                elif signal == "backprop":
                    k.gemm(1.0, deltas[layer + 1], False, weights[layer + 1], True, 0.0, delta)
                elif signal == "layerwise":
                    k.gemm(1.0, deltas[layer + 1], False, fb[layer], True, 0.0, delta)
                elif signal == "direct":
                    k.gemm(1.0, e, False, fb[layer], True, 0.0, delta)
                elif signal == "direct-sign":
                    k.gemm(1.0 / m, sign_e, False, fb[layer], True, 0.0, delta)
                else:  # target
                    k.gemm(-1.0 / m, t, False, fb[layer], True, 0.0, delta)
                if keeps is not None and keeps[layer] < 1.0:
                    k.launch_1d(
                        k.derivative_dropped_kernel, delta.size, delta, hidden[layer], acts[layer],
                        float(keeps[layer]), seed, int(step), bases[layer],
                    )  # fmt: skip
                else:
                    k.launch_1d(k.derivative_kernel, delta.size, delta, hidden[layer], acts[layer])
        for layer in range(v["first"], self.n_layers):
            layer_in = x if layer == 0 else hidden[layer - 1]
            k.gemm(1.0, layer_in, True, deltas[layer], False, 0.0, v["grad_w"][layer])
            k.launch_1d(k.column_sum_kernel, v["grad_b"][layer].size, deltas[layer], v["grad_b"][layer])
        kp_pairs = list(zip(v["feedback"], v["weights"][1:], strict=True)) if self.kolen_pollack else []
        if self.kolen_pollack:  # F <- F - W now and F <- (1 - lr decay) F + W_new after: F gets W's step
            self._shift_feedback(kp_pairs, 1.0, -1.0)
        self._plugin_feedback_step(v, 0, step, lr, decay)
        self._optimise(v["updates"], lr, mu, decay, nesterov, step)
        self._plugin_feedback_step(v, 1, step, lr, decay)
        if self.kolen_pollack:
            self._shift_feedback(kp_pairs, 1.0 - lr * decay, 1.0)
        elif self.mirror:
            self._mirror_feedback(v, m, step)

    def _dropout_bases(self, m):
        """Where each hidden layer's units start in the dropout numbering of an ``m``-row batch
        (:mod:`fastfa.kernels.dropout`): ``m (n_1 + ... + n_{l-1})``."""
        return [m * sum(self.sizes[1 : layer + 1]) for layer in range(self.n_layers)]

    def _plugin_feedback_step(self, v, phase, step, lr, decay):
        """A compiled plugin's ``feedback_step_cuda`` on every hidden layer's feedback matrix:
        ``phase`` 0 before the update, 1 after it (as the CPU engine calls ``feedback_step``)."""
        if self.plugin_feedback_step is None:
            return
        from fastfa.kernels import cuda_plugins

        deltas, seed = v["deltas"], int(self.trainer.config.seed)
        for layer in range(self.n_layers - 1):
            self._run_plugin(
                "feedback_step_cuda", layer, cuda_plugins.feedback_step, self.plugin_feedback_step, phase,
                layer, int(step), seed, float(lr), float(decay), deltas[-1], deltas[layer + 1],
                v["hidden"][layer], v["weights"][layer + 1], v["feedback"][layer],
            )  # fmt: skip

    def _mirror_feedback(self, v, m, step):
        """The weight mirror after update ``step`` of an ``m``-row batch (the CPU engine's
        ``mirror_feedback``): for each hidden layer ``l``, noise ``xi`` in its rows of ``hidden``,
        ``y = xi W_{l+1}`` in the rows of ``deltas`` one layer up (both free once the update is
        done), then ``F_l <- (1 - eta lam) F_l + (eta / m) xi^T y``."""
        k = self.k
        eta, lam, half_width = self._mirror_settings()
        base = 0
        for layer in range(self.n_layers - 1):
            xi, y = v["hidden"][layer], v["deltas"][layer + 1]
            self._mirror_noise(xi, step, base, half_width)
            base += xi.size
            k.gemm(1.0, xi, False, v["weights"][layer + 1], False, 0.0, y)
            k.gemm(eta / m, xi, True, y, False, 1.0 - eta * lam, v["feedback"][layer])

    def _sign_spans(self):
        """``(weight offset, feedback offset, entries)`` of each hidden layer's sign-concordant
        ``F_l``, which follows ``W_{l+1}``."""
        spans, f_off = [], 0
        for layer, (rows, cols) in enumerate(self._feedback_shapes()):
            w_off = sum(self.sizes[i] * self.sizes[i + 1] for i in range(layer + 1))
            spans.append((w_off, f_off, rows * cols))
            f_off += rows * cols
        return spans

    def _train(self, d_x, d_t, params, feedback, state, batch, lr, mu, decay, nesterov):
        """The fused kernel, or separate launches where ``mode`` says so or the fused kernel fails."""
        hyper = (lr, mu, decay, nesterov)
        if self.mode == "fused":
            try:
                return self._train_fused(d_x, d_t, params, feedback, state, batch, *hyper)
            except Exception as error:  # no cooperative launch here (an old driver, no cudadevrt)
                print(
                    f"fastfa: fused cuda kernel unavailable ({error}); using per-kernel launches",
                    file=sys.stderr,
                )
                tr = self.trainer
                self.mode = "kernels"
                params.copy_to_device(tr.params)  # nothing trained yet: start the call again
                state.copy_to_device(tr.state)
                if self.feedback_changes:
                    feedback.copy_to_device(tr.feedback)
        return self._train_kernels(d_x, d_t, params, feedback, state, batch, *hyper)

    def _fused_layout(self):
        """The split-K scratch buffer, then device arrays of sizes, offsets and activation codes
        (the fused kernel's arguments from ``partial`` to ``acts``)."""
        if self._layout is None:
            sizes, tr = self.sizes, self.trainer
            pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
            w_off = np.cumsum([0] + [a * b for a, b in pairs])
            b_off = w_off[-1] + np.cumsum([0] + list(sizes[1:]))
            f_off = np.cumsum([0] + [rows * cols for rows, cols in self._feedback_shapes()])
            h_off = np.cumsum([0] + [self.capacity * n for n in sizes[1:]])
            to = lambda a, dtype=np.int64: self.cuda.to_device(np.asarray(a, dtype=dtype))  # noqa: E731
            self._layout = (
                to(np.zeros(max(1, self._split_scratch())), np.float32),
                to(sizes), to(w_off[:-1]), to(b_off[:-1]), to(f_off), to(h_off[:-1]),
                to(list(tr.acts[:-1]) or [0], np.int32),
            )  # fmt: skip
        return self._layout

    def _train_fused(self, d_x, d_t, params, feedback, state, batch, lr, mu, decay, nesterov):
        """Every batch in one cooperative launch of the fused kernel (``mode="fused"``)."""
        k, tr = self.k, self.trainer
        c = tr.config
        n = d_x.shape[0]
        loss_rows = self.cuda.device_array(n, np.float32)  # the kernel writes every row
        error_rows = self.cuda.device_array(n, np.int32)
        out_act, loss, classification = self._output_codes()
        kernel = k.fused_chunk_kernel(codes.SIGNALS[tr.rule.signal], self.dynamics, self.adam, out_act, loss)
        args = (
            d_x.reshape(-1), d_t.reshape(-1), params, feedback if feedback.size else params, state[0],
            self.hidden, self.deltas, *self._fused_layout(), loss_rows, error_rows,
            int(batch), int(self._first_trainable()), float(lr), float(mu), float(decay), int(bool(nesterov)),
            state[1], float(c.beta1), float(c.beta2), float(c.epsilon), int(tr.step), self.magnitude,
            int(c.seed), classification, *self._mirror_settings(),
        )  # fmt: skip
        k.launch_cooperative(kernel, args, self._largest_phase(batch))
        return float(loss_rows.copy_to_host().astype(np.float64).sum()), int(error_rows.copy_to_host().sum())

    def _split_scratch(self):
        """Floats the split forward products need: every slice of the depth for each row of
        the largest batch (at most ``capacity`` rows) whose product is split."""
        k, need = self.k, 0
        for depth, cols in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            col_tiles = -(-cols // k.TILE)
            rows = min(self.capacity, (k.SPLIT_TILES - 1) // col_tiles * k.TILE)
            if k.split_count(-(-rows // k.TILE) * col_tiles, depth) > 1:
                need = max(need, k.split_count(0, depth) * rows * cols)
        return need

    def _largest_phase(self, batch):
        """Work items (output tiles, times the depth slices of a split product) of the largest
        phase of a batch: more blocks than that would idle."""
        k = self.k
        tiles = lambda r, c: -(-r // k.TILE) * -(-c // k.TILE)  # noqa: E731
        pairs = zip(self.sizes[:-1], self.sizes[1:], strict=True)
        return max(
            max(tiles(batch, b) * k.split_count(tiles(batch, b), a), tiles(a + 1, b)) for a, b in pairs
        )

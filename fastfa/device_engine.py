"""What the CUDA engines share (:class:`DeviceEngine`): device copies of a trainer's buffers, rows
kept on the device between epochs (:class:`DeviceRows`), the output error, the optimiser step,
the feedback dynamics, a compiled plugin's device twins and the check of what runs on CUDA
(:func:`check_supported`). :mod:`fastfa.cuda_engine` (dense networks) and
:mod:`fastfa.cuda_layers` (layer lists) build their engines on it; the module docstring of
:mod:`fastfa.cuda_engine` says what runs there.
"""

from __future__ import annotations

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

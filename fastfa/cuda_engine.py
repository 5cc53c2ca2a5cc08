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

import numpy as np

from fastfa.device_engine import (  # noqa: F401 (the shared parts, under their old names)
    DATA_BYTES,
    LEARNED_FEEDBACK,
    MODES,
    SIGNALS,
    DeviceEngine,
    DeviceRows,
    check_supported,
    dense_targets,
)
from fastfa.kernels import codes


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

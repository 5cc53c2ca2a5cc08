"""Inference on a :class:`~fastfa.train.Trainer`'s network: loss and error, outputs, and one batch's
gradient estimate under the rule's signal (or another one, for the alignment metrics).

A mixin of :class:`~fastfa.train.Trainer` (which holds ``arch``, ``rule``, ``config``, ``dtype``,
``params``, ``feedback`` and the kernels' integer configuration ``icfg``); kept apart so that the
trainer's module holds set-up and the training passes. Dense networks run
:mod:`fastfa.kernels.cpu`'s passes, layer lists :mod:`fastfa.kernels.layer_epoch`'s and
:mod:`fastfa.kernels.layers`'.
"""

from __future__ import annotations

import numpy as np

from fastfa.kernels import codes, layer_epoch
from fastfa.kernels import cpu as kernels
from fastfa.kernels import layers as layer_kernels
from fastfa.rules import DIRECT_SIGNALS
from fastfa.threads import kernel_threads
from fastfa.workspace import Workspace, sparse_marker, with_threads

EVAL_ROWS = 256  # rows per chunk when evaluating or predicting


class Inference:
    """Evaluation, prediction and gradient estimates, for :class:`~fastfa.train.Trainer`."""

    def evaluate(self, x, y):
        """Mean loss and error rate on ``(x, y)``."""
        x, labels, targets = self.prepare(x, y)
        ws = self._eval_workspace(self.dtype)
        none = np.zeros((0, self.arch.sizes[-1]), dtype=self.dtype)
        with kernel_threads() as threads:
            loss, errors = self._evaluate(
                x, labels, targets, self.params, with_threads(self.icfg, threads), ws, none
            )
        n = max(len(x), 1)
        return loss / n, errors / n

    def predict_outputs(self, x, dtype=None):
        """Network outputs (class probabilities for softmax), shape ``(n, n_outputs)``.

        ``dtype="float64"`` evaluates a float32 network in float64 from exactly
        promoted parameters, so each row's output does not depend on which
        other rows are evaluated with it (float32 BLAS results do).
        """
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        params = self.params if dtype == self.dtype else self.params.astype(dtype)
        x = self.scale_inputs(x, dtype)
        ws = self._eval_workspace(dtype)
        out = np.zeros((len(x), self.arch.sizes[-1]), dtype=dtype)
        none = np.zeros(0, dtype=np.int64), np.zeros((0, self.arch.sizes[-1]), dtype=dtype)
        with kernel_threads() as threads:
            self._evaluate(x, *none, params, with_threads(self.icfg, threads), ws, out)
        return out

    def _evaluate(self, x, labels, targets, params, icfg, ws, outputs):
        """The compiled evaluation pass of the network's engine (dense or layer table)."""
        if self.arch.is_dense:
            return kernels.evaluate(
                x,
                labels,
                targets,
                params,
                self.sizes,
                self.acts,
                icfg,
                ws.hidden,
                ws.deltas,
                ws.x,
                ws.t,
                outputs,
                sparse_marker(x),
            )
        return layer_epoch.evaluate_layers(
            x,
            labels,
            targets,
            params,
            self.arch.table.ltab,
            icfg,
            *ws.layer_buffers(sparse_marker(x)),
            ws.x,
            ws.t,
            outputs,
            ws.norm(self.arch, False),
        )

    def gradients(self, x, y, signal=None):
        """Loss gradient estimate of the rule (or of ``signal``, e.g. ``"backprop"``) on one batch.

        Nothing is updated. Returns a copy of the flat gradient buffer; use
        ``trainer.arch.weights(g)`` for per-layer views. For sign-concordant
        rules the feedback is refreshed from the current weights first (for
        brsf this repeats the magnitudes drawn for the last update and stores
        them as the trainer's current feedback).
        """
        x, labels, targets = self.prepare(x, y)
        icfg = self.icfg.copy()
        if signal is not None:
            self._check_signal(signal)
            icfg[codes.I_SIGNAL] = codes.SIGNALS[signal]
            icfg[codes.I_FIRST_TRAINABLE] = self.arch.n_layers - 1 if signal == "none" else 0
        ws = Workspace(self.arch, len(x), self.dtype)
        xb, tb = ws.x.reshape(len(x), -1), ws.t.reshape(len(x), -1)
        kernels.gather_batch(x, labels, targets, np.arange(len(x)), 0, len(x), xb, tb)
        self._refresh_feedback(self.feedback, self.magnitude, self.step)
        grads = np.zeros_like(self.params)
        if not self.arch.is_dense:
            ltab = self.arch.table.ltab
            with kernel_threads() as threads:
                icfg = with_threads(icfg, threads)
                buffers = ws.layer_buffers(sparse_marker(xb))
                plugin = self.plugin_signal if signal is None else None
                norm = ws.norm(self.arch, True)
                # batch norm's running statistics (in the parameters) would move: leave them be
                params = self.params if norm is None else self.params.copy()
                layer_kernels.backward_layers(
                    params, self.feedback, ltab, icfg, xb, tb, *buffers, plugin, None, 0, norm
                )
                first = layer_kernels.first_learning_layer(ltab, icfg)
                layer_kernels.layer_gradients(
                    xb, ws.hidden, ws.deltas, grads, ltab, first, ws.scratch, *buffers[-2:], threads, norm
                )
            return grads
        with kernel_threads() as threads:
            kernels.compute_gradients(
                self.params, self.feedback, grads, self.sizes, self.acts, with_threads(icfg, threads), xb, tb,
                ws.hidden, ws.deltas, sparse_marker(xb), self.plugin_signal if signal is None else None,
            )  # fmt: skip
        return grads

    def _check_signal(self, signal):
        """A signal :meth:`gradients` can compute with this rule's feedback matrices."""
        if signal not in codes.SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; choose one of {', '.join(codes.SIGNALS)}")
        own = self.rule.signal
        fits = {
            "backprop": True,
            "none": True,
            "layerwise": own == "layerwise",
            "direct": own in DIRECT_SIGNALS,
            "direct-sign": own in DIRECT_SIGNALS,
            "target": own in DIRECT_SIGNALS,
        }[signal]
        if not fits:
            raise ValueError(
                f"signal {signal!r} needs feedback matrices shaped for it; rule {self.rule.name!r} "
                f"has {own!r} feedback"
            )

    def _eval_workspace(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._eval_ws:
            self._eval_ws[dtype] = Workspace(self.arch, max(EVAL_ROWS, self.config.batch_size), dtype)
        return self._eval_ws[dtype]

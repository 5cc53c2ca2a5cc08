"""The feedback matrices of a :class:`~fastfa.train.Trainer`: their shapes, their initial draw,
views of them in the papers' orientation, and the sign-concordant refresh.

A mixin of :class:`~fastfa.train.Trainer` (which holds ``rule``, ``arch``, ``config``, ``rng``,
``dtype``, ``params`` and the kernels' configuration); kept apart so that the trainer's module
holds the training passes (evaluation: :mod:`fastfa.trainer_inference`). Layouts:
:mod:`fastfa.kernels.cpu` (dense networks) and :mod:`fastfa.kernels.layer_table` (layer lists).
"""

from __future__ import annotations

import numpy as np

from fastfa.kernels import codes, layer_feedback
from fastfa.kernels import cpu as kernels


class FeedbackMatrices:
    """Feedback set-up and views, for :class:`~fastfa.train.Trainer`."""

    def feedback_shapes(self):
        """Paper-orientation shapes of the feedback, one per layer that owns some.

        Dense networks: ``(n_src, n_l)`` per hidden layer. Layer lists: ``(n_out, n_in)`` for a
        dense layer's ``B``, the kernel shape ``(C_out, C_in, k, k)`` for a convolution's, and
        ``(n_outputs, size_l)`` for a direct rule's ``D_l``.
        """
        if not self.rule.has_feedback:
            return []
        if not self.arch.is_dense:
            return [view.shape for view in self.feedback_views(np.zeros(self.arch.table.n_feedback))]
        sizes = self.arch.sizes
        layerwise = self.rule.signal == "layerwise"
        return [
            (sizes[layer + 2] if layerwise else sizes[-1], sizes[layer + 1])
            for layer in range(self.arch.n_layers - 1)
        ]

    def _init_feedback(self):
        shapes = self.feedback_shapes()
        feedback = np.zeros(sum(int(np.prod(shape)) for shape in shapes), dtype=self.dtype)
        sign_dynamics = self.rule.dynamics in ("sign", "sign-redraw")
        magnitude = np.zeros(feedback.size if sign_dynamics else 0, dtype=self.dtype)
        for layer, (view, shape) in enumerate(zip(self.feedback_views(feedback), shapes)):
            # (n_src, n_l): fan-in n_l; a conv kernel (C_out, C_in, k, k): fan-in C_in k^2, as its W's
            fan_in, fan_out = (
                (shape[1], shape[0]) if len(shape) == 2 else (np.prod(shape[1:]), shape[0] * shape[2] ** 2)
            )
            b = np.asarray(
                self.rule.init_feedback(
                    self.rng,
                    shape,
                    fan_in=int(fan_in),
                    fan_out=int(fan_out),
                    init=self.config.init,
                    options=self.rule_options,
                ),
                dtype=np.float64,
            )
            if b.shape != shape or not np.all(np.isfinite(b)):
                raise ValueError(f"rule {self.rule.name!r} returned bad feedback for hidden layer {layer}")
            view[...] = b
        if magnitude.size:
            np.abs(feedback, out=magnitude)
            self._refresh_feedback(feedback, magnitude, 0)
        return feedback, magnitude

    def _refresh_feedback(self, feedback, magnitude, step):
        """Sign-concordant feedback from the current weights (a no-op for other rules, which have no
        magnitudes: then the kernel is not even compiled)."""
        if not magnitude.size:
            return
        if self.arch.is_dense:
            kernels.refresh_feedback(self.params, feedback, magnitude, self.sizes, self.icfg, step)
        else:
            layer_feedback.refresh_layer_feedback(
                self.params, feedback, magnitude, self.arch.table.ltab, self.icfg, step
            )

    def plugin_layers(self):
        """``(layer, n_l, n_above, n_out, b_shape)`` for every layer a compiled plugin's functions
        are called for (:mod:`fastfa.compiled_rules`): each hidden layer of a dense network, with
        the width of the layer above and its feedback matrix in forward orientation (``0 x 0``
        without feedback); each layer with weights below the output of a layer list, whose
        ``above`` is empty (``n_above`` 0) and whose ``b`` is ``D_l`` (``size_l x n_out``)."""
        n_out = self.arch.sizes[-1]
        if self.arch.is_dense:
            sizes, shapes = self.arch.sizes, self.feedback_shapes()
            return [
                (layer, sizes[layer + 1], sizes[layer + 2], n_out, shapes[layer][::-1] if shapes else (0, 0))
                for layer in range(self.arch.n_layers - 1)
            ]
        ltab = self.arch.table.ltab
        return [
            (layer, int(row[codes.L_OUT_SIZE]), 0, n_out, (int(row[codes.L_OUT_SIZE]), n_out))
            for layer, row in enumerate(ltab[:-1])
            if row[codes.L_KIND] in (codes.KIND_DENSE, codes.KIND_CONV)
        ]

    def feedback_views(self, flat):
        """Paper-orientation views (:meth:`feedback_shapes`) of a flat feedback-layout buffer."""
        if not self.arch.is_dense:
            return self._layer_feedback_views(flat)
        views, off = [], 0
        for n_src, n_l in self.feedback_shapes():
            views.append(flat[off : off + n_src * n_l].reshape(n_l, n_src).T)
            off += n_src * n_l
        return views

    def _layer_feedback_views(self, flat):
        ltab = self.arch.table.ltab
        n_out = self.arch.sizes[-1]
        views = []
        for row in ltab:
            off = row[codes.L_FB_OFF]
            if off < 0:
                continue
            if self.rule.signal != "layerwise":  # D_l, stored size_l x n_out
                size = row[codes.L_OUT_SIZE]
                views.append(flat[off : off + size * n_out].reshape(size, n_out).T)
            elif row[codes.L_KIND] == codes.KIND_CONV:
                k = row[codes.L_KERNEL]
                shape = (row[codes.L_C_OUT], row[codes.L_C_IN], k, k)
                views.append(flat[off : off + int(np.prod(shape))].reshape(shape))
            else:  # a dense layer's B, stored in W's orientation n_in x n_out
                n_in, n_l = row[codes.L_IN_SIZE], row[codes.L_OUT_SIZE]
                views.append(flat[off : off + n_in * n_l].reshape(n_in, n_l).T)
        return views

    @property
    def feedback_matrices(self):
        """Feedback ``B`` per hidden layer, shape ``(n_src, n_l)`` (views).

        For layerwise rules ``B_l`` stands in for ``W_{l+1}^T``; for direct rules
        it maps the output error (or target) to hidden layer ``l``.
        """
        return self.feedback_views(self.feedback)

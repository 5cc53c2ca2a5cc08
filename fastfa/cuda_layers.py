"""Training a layer-table network (conv, pooling and dense layers) on an NVIDIA GPU.

:class:`CudaLayerEngine` is the CUDA twin of :mod:`fastfa.kernels.layers`: the same passes over
the layer table ``ltab``, layer by layer, as separate kernel launches per layer and batch
(the ``"kernels"`` way of :class:`~fastfa.cuda_engine.CudaEngine`; there is no fused kernel for
layer tables). Convolutions and pooling run the kernels of :mod:`fastfa.kernels.cuda_conv`;
dense layers, and convolutions whose window covers their whole input
(:func:`~fastfa.kernels.layer_table.covers_input`: a dense layer with the weight matrix
``W.reshape(C_out, C_in k k)^T``), run the tiled GEMM and the elementwise kernels of the dense
engine. With ``h_{-1} = x`` and ``delta_L = e / m`` at the output:

- forward: ``h_l = f(h_{l-1} W_l + b_l)`` (dense), ``f(conv(h_{l-1}, W_l) + b_l)`` (conv),
  max or average pooling (max-pooling's argmax indices kept on the device for the backward
  pass);
- backprop and layerwise signals: ``delta_{l-1} = (delta_l K_l^T) * f'(a_{l-1})`` through a
  dense layer, the transposed convolution of ``delta_l`` with ``K_l`` through a conv layer,
  pooling's own backward through a pooling layer (the derivative only where layer ``l - 1`` has
  weights), ``K_l`` being ``W_l`` (backprop) or the layer's feedback of ``W_l``'s shape;
- direct signals: ``delta_l = (s D_l^T) * f'(a_l)`` for every hidden layer with weights, ``s``
  the output error ``e`` (direct), ``sign(e) / m`` (direct-sign) or ``-t / m`` (target);
- batch norm (``+bn``) between a layer's linear part and its activation, and back through it
  after the derivative, as :mod:`fastfa.kernels.batch_norm` (:mod:`fastfa.kernels.cuda_batch_norm`);
- gradients ``h_{l-1}^T delta_l`` (dense) or the correlation of the layer's input with
  ``delta_l`` (conv), biases the sums of ``delta_l``; then SGD (heavy ball or Nesterov) or
  Adam on the layers that learn, weight decay on the weights only;
- feedback dynamics for layerwise rules, kernel entry by kernel entry as on the CPU
  (:mod:`fastfa.kernels.layer_feedback`): sign-concordant ``K_l = |B0_l| sign(W_l)`` (times a
  fresh draw for ``sign-redraw``) before each batch; Kolen-Pollack ``K <- K - W`` before the
  update and ``K <- (1 - lr wd) K + W`` after it; the weight mirror's
  ``K_l <- (1 - eta lam) K_l + (eta / m) g`` after it, ``g`` the weight gradient of noise
  ``xi`` at the layer's input and the response of its linear part.

Everything else is :class:`~fastfa.cuda_engine.DeviceEngine`'s, as for dense networks: the
rows staged on the device, the trainer's buffers copied down before each call and back after
it (so run files are the same as after CPU training), float32 only. What cannot run here is
refused by :func:`~fastfa.cuda_engine.check_supported` in one line. Tested on numba's CUDA
simulator only: no GPU has run it yet.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from fastfa.cuda_engine import DeviceEngine, check_supported
from fastfa.kernels import codes
from fastfa.kernels.layer_table import covers_input, weight_count


class CudaLayerEngine(DeviceEngine):
    """Device copies of a layer-table trainer's buffers, and the batch loop over them.

    The interface of :class:`~fastfa.cuda_engine.CudaEngine` (:meth:`stage`, :meth:`chunk`,
    :meth:`train_rows`, ``mode``), for a trainer whose network is a
    :class:`~fastfa.network.LayerNetwork`.

    Parameters
    ----------
    trainer : fastfa.train.Trainer
    mode : {"kernels"}, optional
        The only way to run a layer table's batches: one launch per layer and operation.
    """

    mode = "kernels"

    def __init__(self, trainer, mode=None):
        if mode not in (None, "kernels"):
            raise ValueError(f"cuda mode {mode!r} does not run conv and pooling layers; use 'kernels'")
        check_supported(trainer)
        super().__init__(trainer)
        from fastfa.kernels import cuda_conv

        self.conv = cuda_conv
        table = trainer.arch.table
        self.ltab = ltab = table.ltab
        self.rows = [ltab[i] for i in range(len(ltab))]
        self.signal = trainer.rule.signal
        zeros = lambda n, dtype=np.float32: self.cuda.to_device(np.zeros(n, dtype=dtype))  # noqa: E731
        self.hidden = zeros(self.capacity * table.out_size)
        self.deltas = zeros(self.capacity * table.out_size)
        self.indices = zeros(max(1, self.capacity * table.arg_size), np.int64)  # max-pool argmaxes
        self.zeros = zeros(int(ltab[:, codes.L_OUT_SIZE].max()))  # conv activations add no bias
        if table.n_norm:  # batch norm: normalised values and per-batch statistics
            from fastfa.kernels import cuda_batch_norm

            self.norm = cuda_batch_norm
            self.normed = zeros(self.capacity * table.out_size)
            self.norm_scratch = zeros(table.n_norm)
        with_params = [i for i, row in enumerate(self.rows) if row[codes.L_W_OFF] >= 0]
        self.first_with_params = with_params[0]
        self.first = len(ltab) - 1 if self.signal == "none" else 0  # the first layer that learns
        learning = [i for i in with_params if i >= self.first]
        self.n_weights = table.n_weights
        self.w_lo = int(ltab[learning[0], codes.L_W_OFF])
        self.b_lo = int(ltab[learning[0], codes.L_B_OFF])
        self.layerwise = [  # layers with layerwise feedback of their weights' shape
            i for i in with_params if self.signal == "layerwise" and ltab[i, codes.L_FB_OFF] >= 0
        ]
        self.sign_spans = [  # (weight offset, feedback offset, entries) of each sign-concordant K_l
            (int(ltab[i, codes.L_W_OFF]), int(ltab[i, codes.L_FB_OFF]), int(weight_count(ltab, i)))
            for i in self.layerwise
        ]

    # ------------------------------------------------------------------ views

    def _views(self, params, feedback, state, m):
        """Every per-layer view a step of ``m`` rows uses (:meth:`_layer_views`), and the
        optimiser's ranges, made once per call and batch size (not per batch)."""
        layers = [self._layer_views(i, params, feedback, m) for i in range(len(self.rows))]
        return {
            "layers": layers,
            "flat": (params, feedback),
            "updates": self._update_ranges(params, state, self.w_lo, self.n_weights, self.b_lo),
            "kp_pairs": [(layers[i].fb_mat, layers[i].w_mat) for i in self.layerwise],
        }

    def _layer_views(self, i, params, feedback, m):
        """Views of layer ``i`` for ``m`` rows, as :mod:`fastfa.kernels.layer_table` makes them:
        its output and delta blocks (``m x size`` and ``m x C x H x W``; block offsets scale with
        ``m``), argmax block, weights (as a matrix, and a conv's as its kernel), bias, their
        gradients and its feedback."""
        row = self.rows[i]
        kind, size = row[codes.L_KIND], int(row[codes.L_OUT_SIZE])
        image = (m, int(row[codes.L_C_OUT]), int(row[codes.L_H_OUT]), int(row[codes.L_W_OUT]))
        start = m * int(row[codes.L_OUT_OFF])
        v = SimpleNamespace(
            kind=kind,
            params=bool(row[codes.L_W_OFF] >= 0),
            act=int(row[codes.L_ACT]),
            covers=bool(kind == codes.KIND_CONV and covers_input(self.ltab, i)),  # a conv run as dense
            k=int(row[codes.L_KERNEL]),
            stride=int(row[codes.L_STRIDE]),
            pad=int(row[codes.L_PAD]),
            in_image=(m, int(row[codes.L_C_IN]), int(row[codes.L_H_IN]), int(row[codes.L_W_IN])),
            h=self.hidden[start : start + m * size].reshape(m, size),
            d=self.deltas[start : start + m * size].reshape(m, size),
            h_img=self.hidden[start : start + m * size].reshape(image),
            d_img=self.deltas[start : start + m * size].reshape(image),
        )
        if kind == codes.KIND_MAXPOOL:
            at = m * int(row[codes.L_ARG_OFF])
            v.argmax = self.indices[at : at + m * size].reshape(image)
        if row[codes.L_W_OFF] < 0:
            return v
        v.norm = bool(row[codes.L_G_OFF] >= 0)
        if v.norm:  # m x C x S blocks, the scales (and their gradients), running statistics, scratch
            channels, g, n_off = image[1], int(row[codes.L_G_OFF]), int(row[codes.L_NORM_OFF])
            blocks = (m, channels, size // channels)
            v.z3, v.d3 = v.h.reshape(blocks), v.d.reshape(blocks)
            v.hat = self.normed[start : start + m * size].reshape(blocks)
            v.gamma, v.g_gamma = (buf[g : g + channels] for buf in (params, self.grads))
            v.running = params[g + channels : g + 3 * channels]
            v.scratch = self.norm_scratch[n_off : n_off + 4 * channels]
        n_in, count = int(row[codes.L_IN_SIZE]), int(weight_count(self.ltab, i))
        w_off, b_off, f_off = int(row[codes.L_W_OFF]), int(row[codes.L_B_OFF]), int(row[codes.L_FB_OFF])
        dense = kind == codes.KIND_DENSE
        # dense: n_in x n_out as in the forward product; conv: C_out x (C_in k k), and its kernel
        matrix = (n_in, size) if dense else (image[1], count // image[1])
        shape = matrix if dense else (image[1], v.in_image[1], v.k, v.k)
        n_bias = size if dense else image[1]
        v.w_mat, v.gw_mat = (buf[w_off : w_off + count].reshape(matrix) for buf in (params, self.grads))
        v.w, v.gw = (buf[w_off : w_off + count].reshape(shape) for buf in (params, self.grads))
        v.b, v.gb = (buf[b_off : b_off + n_bias] for buf in (params, self.grads))
        if f_off >= 0 and self.signal == "layerwise":
            v.fb_mat = feedback[f_off : f_off + count].reshape(matrix)
            v.fb = feedback[f_off : f_off + count].reshape(shape)
        elif f_off >= 0:  # a direct rule's D_l, size x n_out
            v.fb_mat = feedback[f_off : f_off + size * self.n_out].reshape(size, self.n_out)
        return v

    # ------------------------------------------------------------------- step

    def _step(self, v, x, t, lr, mu, decay, nesterov, step):
        """One step (update number ``step``, from 1) on the device batch ``(x, t)`` with the views
        ``v`` of :meth:`_views`: :func:`fastfa.kernels.layer_epoch.train_batch_layers` as kernel launches.

        Adds the batch's summed loss and error count to the device totals.
        """
        layers = v["layers"]
        if self.sign_feedback:
            self._refresh_sign_feedback(*v["flat"], self.sign_spans, step)
        inputs = [x] + [layer.h for layer in layers[:-1]]  # what each layer reads, m x n_in
        self._drop_step = int(step)  # the update whose dropout masks the kernels draw
        for i, layer in enumerate(layers):
            self._forward(layer, inputs[i], last=i == len(layers) - 1)
            self._drop(i, layer)
        out = layers[-1]
        self._output_error(out.h, out.b, t, out.d)
        if self.signal in ("backprop", "layerwise"):
            for i in range(len(layers) - 1, self.first_with_params, -1):
                self._send_down(layers[i], layers[i - 1], i - 1)
        elif self.signal != "none":
            self._direct_signals(layers[:-1], out.d, t)
        for i in range(self.first, len(layers)):
            if layers[i].params:
                self._gradients(layers[i], inputs[i])
        if self.kolen_pollack:  # K <- K - W now and K <- (1 - lr decay) K + W_new after: K gets W's step
            self._shift_feedback(v["kp_pairs"], 1.0, -1.0)
        self._plugin_feedback_step(layers, 0, step, lr, decay)
        self._optimise(v["updates"], lr, mu, decay, nesterov, step)
        self._plugin_feedback_step(layers, 1, step, lr, decay)
        if self.kolen_pollack:
            self._shift_feedback(v["kp_pairs"], 1.0 - lr * decay, 1.0)
        elif self.mirror:
            self._mirror_feedback(layers, inputs, step)

    def _forward(self, v, h_in, last):
        """Layer ``v``'s output from its input rows ``h_in`` (``m x n_in``): ``f(h_in W + b)``,
        ``f(conv(h_in, W) + b)`` or pooling. The output layer (``last``) keeps ``h_in W`` for
        :meth:`_output_error`, which adds its bias and activation."""
        k, conv = self.k, self.conv
        norm = v.params and v.norm
        if v.kind == codes.KIND_DENSE or v.covers:  # h_in W, or h_in W.reshape(C_out, C_in k k)^T
            k.gemm(1.0, h_in, False, v.w_mat, v.covers, 0.0, v.h)
            if norm:  # gamma hat + beta; then f(z + 0)
                self.norm.normalise(v.z3, v.hat, v.gamma, v.b, v.running, v.scratch, True)
            if not last:
                bias = self.zeros[: v.b.size] if norm else v.b
                k.launch_1d(k.bias_activation_kernel, v.h.size, v.h, bias, v.act)
        elif v.kind == codes.KIND_CONV:
            bias = self.zeros[: v.b.size] if norm else v.b
            conv.conv_forward(h_in.reshape(v.in_image), v.w, bias, v.stride, v.pad, v.h_img)
            if norm:
                self.norm.normalise(v.z3, v.hat, v.gamma, v.b, v.running, v.scratch, True)
            if v.act != codes.IDENTITY:  # the bias is in: f(a + 0)
                k.launch_1d(k.bias_activation_kernel, v.h.size, v.h, self.zeros[: v.h.shape[1]], v.act)
        elif v.kind == codes.KIND_MAXPOOL:
            conv.maxpool_forward(h_in.reshape(v.in_image), v.k, v.stride, v.h_img, v.argmax)
        else:  # KIND_AVGPOOL
            conv.avgpool_forward(h_in.reshape(v.in_image), v.k, v.stride, v.h_img)

    def _dropout_base(self, index, m):
        """Where layer ``index``'s units start in the dropout numbering of an ``m``-row batch."""
        return int(m * self.ltab[:index, codes.L_OUT_SIZE].sum())

    def _drop(self, index, v):
        """Dropout on layer ``index``'s output in training (:mod:`fastfa.kernels.dropout`)."""
        keeps = self.trainer.dropout
        if keeps is not None and keeps[index] < 1.0:
            self.k.launch_1d(
                self.k.dropout_kernel, v.h.size, v.h, float(keeps[index]), int(self.trainer.config.seed),
                self._drop_step, self._dropout_base(index, v.h.shape[0]),
            )  # fmt: skip

    def _derive(self, index, v):
        """``delta *= f'(a)`` for layer ``index`` (``v``), with its dropout mask where it drops units."""
        k, keeps = self.k, self.trainer.dropout
        if keeps is not None and keeps[index] < 1.0:
            k.launch_1d(
                k.derivative_dropped_kernel, v.d.size, v.d, v.h, v.act, float(keeps[index]),
                int(self.trainer.config.seed), self._drop_step, self._dropout_base(index, v.d.shape[0]),
            )  # fmt: skip
        else:
            k.launch_1d(k.derivative_kernel, v.d.size, v.d, v.h, v.act)
        if v.norm:  # dz -> da through batch norm (dbeta and dgamma into the scratch)
            self.norm.normalise_backward(v.d3, v.hat, v.gamma, v.scratch)

    def _send_down(self, v, below, below_index):
        """Layer ``below``'s ``delta`` from layer ``v``'s (backprop and layerwise rules): through
        ``K^T`` (dense, or ``K.reshape(C_out, C_in k k)`` for a conv that covers its input), the
        transposed convolution with ``K``, or pooling's backward; then ``* f'(a)`` where
        ``below`` has weights. ``K`` is ``W`` (backprop) or the layer's feedback."""
        k, conv = self.k, self.conv
        backprop = self.signal == "backprop"
        if v.kind == codes.KIND_DENSE or v.covers:
            k.gemm(1.0, v.d, False, v.w_mat if backprop else v.fb_mat, not v.covers, 0.0, below.d)
        elif v.kind == codes.KIND_CONV:
            conv.conv_backward_input(v.d_img, v.w if backprop else v.fb, v.stride, v.pad, below.d_img)
        elif v.kind == codes.KIND_MAXPOOL:
            conv.maxpool_backward(v.d_img, v.argmax, below.d_img)
        else:  # KIND_AVGPOOL
            conv.avgpool_backward(v.d_img, v.k, v.stride, below.d_img)
        if below.params:
            self._derive(below_index, below)

    def _direct_signals(self, hidden, e, t):
        """``delta_l = (s D_l^T) * f'(a_l)`` for every hidden layer with weights, ``s`` by the rule:
        ``e``, ``sign(e) / m`` or ``-t / m``."""
        k, m = self.k, e.shape[0]
        if self.signal == "direct-sign":
            source, alpha = self._sign_of(e), 1.0 / m
        elif self.signal == "target":
            source, alpha = t, -1.0 / m
        else:
            source, alpha = e, 1.0
        for layer, v in enumerate(hidden):
            if not v.params:
                continue
            if self.plugin_signal is not None:  # a compiled plugin's device twin (direct signals only)
                from fastfa.kernels import cuda_plugins

                self._run_plugin(
                    "hidden_signal_cuda", layer, cuda_plugins.hidden_signal, self.plugin_signal, layer, e, t,
                    self._empty, self._empty, v.fb_mat, v.h, v.d,
                )  # fmt: skip
            else:
                k.gemm(alpha, source, False, v.fb_mat, True, 0.0, v.d)
            self._derive(layer, v)

    def _plugin_feedback_step(self, layers, phase, step, lr, decay):
        """A compiled plugin's ``feedback_step_cuda`` on every direct matrix ``D_l`` (as
        :func:`fastfa.kernels.layer_feedback.plugin_layer_feedback_step` on the CPU)."""
        if self.plugin_feedback_step is None:
            return
        from fastfa.kernels import cuda_plugins

        e, seed = layers[-1].d, int(self.trainer.config.seed)
        for layer, v in enumerate(layers[:-1]):
            if v.params:
                self._run_plugin(
                    "feedback_step_cuda", layer, cuda_plugins.feedback_step, self.plugin_feedback_step, phase,
                    layer, int(step), seed, float(lr), float(decay), e, self._empty, v.h, self._empty,
                    v.fb_mat,
                )  # fmt: skip

    def _gradients(self, v, h_in):
        """Layer ``v``'s weight and bias gradients from its input rows ``h_in``: ``h_in^T delta``
        (dense), ``delta^T h_in`` (``C_out x C_in k k``, a conv that covers its input) or the conv
        weight gradient; biases the column sums of ``delta``."""
        k = self.k
        if v.kind == codes.KIND_CONV and not v.covers:
            self.conv.conv_weight_grad(h_in.reshape(v.in_image), v.d_img, v.stride, v.pad, v.gw, v.gb)
        else:
            if v.covers:
                k.gemm(1.0, v.d, True, h_in, False, 0.0, v.gw_mat)
            else:
                k.gemm(1.0, h_in, True, v.d, False, 0.0, v.gw_mat)
            k.launch_1d(k.column_sum_kernel, v.gb.size, v.d, v.gb)
        if v.norm:  # the shift's and scale's gradients, from the normalisation's backward
            k.launch_1d(self.norm.norm_gradients_kernel, v.gb.size, v.scratch, v.gb, v.g_gamma)

    def _mirror_feedback(self, layers, inputs, step):
        """The weight mirror after update ``step`` (:func:`fastfa.kernels.layer_feedback.
        mirror_layer_feedback`): for each layer with feedback, noise ``xi`` in its input rows
        (the block of ``hidden`` below it), the response ``y`` of its linear part in its block of
        ``deltas`` (``xi W``, or ``conv(xi, W)`` with no bias), then ``K <- (1 - eta lam) K +
        (eta / m) g`` with ``g`` the weight gradient of ``xi`` and ``y``."""
        k, conv = self.k, self.conv
        eta, lam, half_width = self._mirror_settings()
        base = 0
        for i in self.layerwise:
            v, xi = layers[i], inputs[i]
            m = xi.shape[0]
            self._mirror_noise(xi, step, base, half_width)
            base += xi.size
            if v.kind == codes.KIND_DENSE:  # y = xi W, K <- (1 - eta lam) K + (eta / m) xi^T y
                k.gemm(1.0, xi, False, v.w_mat, False, 0.0, v.d)
                k.gemm(eta / m, xi, True, v.d, False, 1.0 - eta * lam, v.fb_mat)
                continue
            if v.covers:  # y = xi W^T and K <- (1 - eta lam) K + (eta / m) y^T xi, both C_out x (C_in k k)
                k.gemm(1.0, xi, False, v.w_mat, True, 0.0, v.d)
                k.gemm(eta / m, v.d, True, xi, False, 1.0 - eta * lam, v.fb_mat)
                continue
            images = xi.reshape(v.in_image)
            conv.conv_forward(images, v.w, self.zeros[: v.b.size], v.stride, v.pad, v.d_img)
            conv.conv_weight_grad(images, v.d_img, v.stride, v.pad, v.gw, v.gb)
            k.launch_1d(k.shift_kernel, v.fb_mat.size, v.fb_mat, v.gw_mat, 1.0 - eta * lam, eta / m)

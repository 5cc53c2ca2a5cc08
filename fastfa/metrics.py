"""Alignment metrics: how closely a rule's learning signal follows backprop's.

Per hidden layer ``l`` (Lillicrap et al. 2016, Fig. 2; Nøkland 2016, Fig. 3):

- **update angle**: the angle between the rule's weight update ``dW_l`` and
  backprop's ``dW_l^BP`` on the same weights and batch. Below 90 degrees the
  rule's update still descends the loss.
- **feedback angle**: the angle between the feedback matrix ``B`` and the
  matrix backprop would use in its place -- ``W_{l+1}^T`` for layerwise rules;
  for direct rules, the product ``(W_{l+1} ... W_{L-1})^T`` that carries the
  output error to layer ``l`` in a linear network.
- **norm ratio**: ``||B||_F / ||that matrix||_F``.

For bp the feedback angle is 0 and the norm ratio 1 by definition; for rules
without hidden signals (shallow) all three are NaN. In a layer list, the hidden layers
are those with weights (conv and dense) below the output layer; a convolution's
feedback is a kernel compared with the next layer's kernel, and a direct rule's feedback
angle is NaN where a convolution or pooling layer lies above.
"""

from __future__ import annotations

import numpy as np


def angle(a, b):
    """Angle in degrees between two arrays seen as vectors, ``arccos(<a,b> / (|a| |b|))``.

    NaN when either is zero.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    if norms == 0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(a @ b / norms, -1.0, 1.0))))


def backprop_counterparts(trainer):
    """The arrays backprop uses where the rule uses ``B``, in paper orientation, per hidden layer.

    Layerwise rules: ``W_{l+1}^T`` for a dense layer, the kernel ``W_{l+1}`` itself for a
    convolution (its transposed convolution is what bp applies). Direct rules:
    ``(W_{l+1} ... W_{L-1})^T`` when every layer above is dense; ``None`` where a convolution
    or pooling layer lies above (no single matrix carries the error there).
    """
    weights = [w.astype(np.float64) for w in trainer.weights]
    n_hidden = len(weights) - 1
    if trainer.rule.signal in ("backprop", "layerwise"):
        return [w.T if w.ndim == 2 else w for w in weights[1:]]
    out = []
    for layer in range(n_hidden):
        if not _dense_above(trainer, layer):
            out.append(None)
            continue
        product = weights[layer + 1]
        for w in weights[layer + 2 :]:
            product = product @ w
        out.append(product.T)
    return out


def _dense_above(trainer, layer):
    """Whether every layer above the ``layer``-th layer with weights is dense."""
    if trainer.arch.is_dense:
        return True
    from fastfa.kernels import codes

    ltab = trainer.arch.table.ltab
    rows = [i for i, row in enumerate(ltab) if row[codes.L_W_OFF] >= 0]
    return bool(np.all(ltab[rows[layer] + 1 :, codes.L_KIND] == codes.KIND_DENSE))


def alignment(trainer, x, y):
    """Alignment metrics of every hidden layer on the probe batch ``(x, y)``.

    Parameters
    ----------
    trainer : fastfa.train.Trainer
    x, y : array_like
        A probe batch (its size sets the gradients' noise; a few hundred rows
        is typical).

    Returns
    -------
    list of dict
        One dict per hidden layer with keys ``update_angle``,
        ``feedback_angle`` and ``norm_ratio`` (floats, degrees for angles).
    """
    n_hidden = len(trainer.weights) - 1  # the layers with weights below the output layer
    if n_hidden == 0:
        return []
    rule_grads = trainer.arch.weights(trainer.gradients(x, y))  # also refreshes sign feedback
    bp_grads = trainer.arch.weights(trainer.gradients(x, y, signal="backprop"))
    signal = trainer.rule.signal
    counterparts = backprop_counterparts(trainer)
    feedback = trainer.feedback_matrices
    out = []
    for layer in range(n_hidden):
        if signal == "none":
            out.append({"update_angle": np.nan, "feedback_angle": np.nan, "norm_ratio": np.nan})
            continue
        if signal == "backprop":
            fb_angle, ratio = 0.0, 1.0
        elif counterparts[layer] is None:
            fb_angle, ratio = np.nan, np.nan
        else:
            b, ref = feedback[layer], counterparts[layer]
            fb_angle = angle(b, ref)
            ref_norm = np.linalg.norm(ref)
            ratio = float(np.linalg.norm(b) / ref_norm) if ref_norm > 0 else float("nan")
        out.append(
            {
                "update_angle": angle(rule_grads[layer], bp_grads[layer]),
                "feedback_angle": fb_angle,
                "norm_ratio": ratio,
            }
        )
    return out

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
without hidden signals (shallow) all three are NaN.
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
    """The matrices backprop uses where the rule uses ``B``, in paper orientation."""
    weights = [w.astype(np.float64) for w in trainer.weights]
    n_hidden = trainer.arch.n_layers - 1
    if trainer.rule.signal in ("backprop", "layerwise"):
        return [weights[layer + 1].T for layer in range(n_hidden)]
    out = []
    for layer in range(n_hidden):
        product = weights[layer + 1]
        for w in weights[layer + 2 :]:
            product = product @ w
        out.append(product.T)
    return out


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
    n_hidden = trainer.arch.n_layers - 1
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

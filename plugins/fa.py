"""Feedback alignment: errors travel back through fixed random matrices.

    delta_l = (delta_{l+1} B_{l+1}) * f'(a_l),   B_{l+1} fixed, shape (n_{l+1}, n_l)

Feedback initialisation: ``B_{l+1}`` is drawn once, with the scheme and scale
of the forward matrix ``W_{l+1}`` it replaces (option ``feedback_init``,
default ``"same"``), times ``feedback_scale`` (default 1). The forward weights
come to align with ``B^T`` during learning, so ``B`` delivers useful errors.

References
----------
Lillicrap, Cownden, Tweed, Akerman (2016). Random synaptic feedback weights
support error backpropagation for deep learning. Nature Communications 7, 13276
(arXiv:1411.0247, 2014).
"""

from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, random_feedback

rule = Rule(
    name="fa",
    summary="feedback alignment: errors travel back through fixed random B",
    reference="Lillicrap et al. 2016, Nat. Commun. 7:13276",
    signal="layerwise",
    init_feedback=random_feedback,
    options=RANDOM_FEEDBACK_OPTIONS,
    devices=("cpu", "cuda"),
)

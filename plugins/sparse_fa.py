"""Feedback alignment with sparse feedback: a fixed fraction of the entries of B are zero.

    delta_l = (delta_{l+1} (M * B_{l+1})) * f'(a_l),   M fixed, a fraction ``sparsity`` of zeros

Feedback initialisation: ``B`` as in :mod:`fastfa_plugins.fa` (``feedback_init``,
``feedback_scale``), then a random ``sparsity`` fraction of its entries (option,
default 0.5) is set to zero, once. Lillicrap et al. report that feedback alignment
still learns MNIST (2.4% test error) with half of the entries of ``W`` and ``B``
removed; this rule removes them from ``B`` only.

References
----------
Lillicrap, Cownden, Tweed, Akerman (2016). Random synaptic feedback weights
support error backpropagation for deep learning. Nature Communications 7, 13276
(sparse connectivity: Supplementary Figure).
"""

from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, random_feedback


def sparse_feedback(rng, shape, *, fan_in, fan_out, init, options):
    """:func:`~fastfa.rules.random_feedback` with a fraction ``sparsity`` of its entries zeroed."""
    sparsity = float(options["sparsity"])
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"rule 'sparse-fa': sparsity must lie in [0, 1), got {sparsity}")
    b = random_feedback(rng, shape, fan_in=fan_in, fan_out=fan_out, init=init, options=options)
    n_zero = int(round(sparsity * b.size))
    b.flat[rng.permutation(b.size)[:n_zero]] = 0.0
    return b


rule = Rule(
    name="sparse-fa",
    summary="feedback alignment with a fixed fraction of the feedback entries zeroed",
    reference="Lillicrap et al. 2016, Nat. Commun. 7:13276",
    signal="layerwise",
    init_feedback=sparse_feedback,
    options={**RANDOM_FEEDBACK_OPTIONS, "sparsity": 0.5},
    devices=("cpu", "cuda"),
)

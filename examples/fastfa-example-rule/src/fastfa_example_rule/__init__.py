"""Normalised feedback alignment: fa whose feedback rows all have the same length.

    delta_l = (delta_{l+1} B_{l+1}) * f'(a_l),   ||row_k(B_{l+1})|| = feedback_norm for every k

Feedback initialisation: ``B`` is drawn like fa's (the network's weight scheme for
the forward matrix it replaces), then each row -- the weights through which one
unit of layer ``l+1`` sends its error down -- is rescaled to length
``feedback_norm`` (default 1). Every unit then speaks to the layer below with the
same strength.

This module is an example of a fastfa rule plugin; see docs/plugins.md.

References
----------
Lillicrap, Cownden, Tweed, Akerman (2016). Random synaptic feedback weights support
error backpropagation for deep learning. Nature Communications 7, 13276.
"""

import numpy as np

from fastfa.rules import Rule, random_feedback


def normalised_feedback(rng, shape, *, fan_in, fan_out, init, options):
    """fa's random ``B`` (shape ``(n_src, n_l)``) with every row rescaled to ``feedback_norm``."""
    b = random_feedback(
        rng, shape, fan_in=fan_in, fan_out=fan_out, init=init, options={"feedback_init": "same"}
    )
    norms = np.linalg.norm(b, axis=1, keepdims=True)
    return b / np.where(norms > 0, norms, 1.0) * options["feedback_norm"]


rule = Rule(
    name="nfa",
    summary="feedback alignment with feedback rows of equal length (an example plugin)",
    reference="example; after Lillicrap et al. 2016",
    signal="layerwise",
    init_feedback=normalised_feedback,
    options={"feedback_norm": 1.0},
)

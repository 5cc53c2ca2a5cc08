"""A rule in one file, for `fastfa train --plugin examples/one_file_rule.py --rule half-fa`.

Feedback alignment with the feedback matrices scaled by one half:

    delta_l = (delta_{l+1} (B_{l+1} / 2)) * f'(a_l)
"""

from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, random_feedback


def half_feedback(rng, shape, **kwargs):
    """fa's random feedback, halved."""
    return 0.5 * random_feedback(rng, shape, **kwargs)


rule = Rule(
    name="half-fa",
    summary="feedback alignment with B halved (a one-file example plugin)",
    reference="example",
    signal="layerwise",
    init_feedback=half_feedback,
    options=RANDOM_FEEDBACK_OPTIONS,
)

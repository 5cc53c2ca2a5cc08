"""Direct random target projection: the one-hot target, not the error, reaches each hidden layer.

    delta_l = (-t D_l / m) * f'(a_l),   D_l fixed, shape (n_out, n_l)

The hidden layers learn from the target alone, through a fixed random matrix, so
they can update as soon as the forward pass reaches them -- no error has to be
computed and sent back first. The output layer learns from its true gradient.

The sign of the projected target: fastfa projects ``-t`` (option ``projection="-t"``, the
default, kept so that earlier runs and measurements stay as they were); the authors' released
code (ChFrenkel/DirectRandomTargetProjection, ``function.py``) projects ``+t``
(``projection="+t"``, ``--rule-opt projection=+t``). For a symmetric random ``D`` the two are the
same in distribution, but for a given seed the hidden updates are exactly reversed: ``+t`` is
implemented by drawing ``D`` as for ``-t`` and negating it, so that ``-t (-D) = +t D``.

Feedback initialisation: as :mod:`fastfa_plugins.dfa` (``feedback_init``,
default ``"same"``: the network's weight scheme for a layer of fan-in ``n_l``,
fan-out ``n_out``; times ``feedback_scale``).

References
----------
Frenkel, Lefebvre, Bol (2021). Learning without feedback: fixed random learning
signals allow for feedforward training of deep neural networks. Frontiers in
Neuroscience 15, 629892.
"""

from fastfa.rules import RANDOM_FEEDBACK_OPTIONS, Rule, random_feedback

PROJECTIONS = ("-t", "+t")


def target_feedback(rng, shape, *, fan_in, fan_out, init, options):
    """``D`` drawn as :func:`~fastfa.rules.random_feedback` draws it, negated for ``projection="+t"``."""
    projection = options.get("projection", "-t")
    if projection not in PROJECTIONS:
        raise ValueError(f"rule 'drtp': option projection must be -t or +t, got {projection!r}")
    d = random_feedback(rng, shape, fan_in=fan_in, fan_out=fan_out, init=init, options=options)
    return -d if projection == "+t" else d


rule = Rule(
    name="drtp",
    summary="direct random target projection: the target sent to each hidden layer through fixed random D",
    reference="Frenkel, Lefebvre, Bol 2021, Front. Neurosci. 15:629892",
    signal="target",
    init_feedback=target_feedback,
    options={**RANDOM_FEEDBACK_OPTIONS, "projection": "-t"},
    devices=("cpu", "cuda"),
)

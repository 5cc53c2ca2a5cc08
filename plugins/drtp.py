"""Direct random target projection: the one-hot target, not the error, reaches each hidden layer.

    delta_l = (-t D_l / m) * f'(a_l),   D_l fixed, shape (n_out, n_l)

The hidden layers learn from the target alone, through a fixed random matrix, so
they can update as soon as the forward pass reaches them -- no error has to be
computed and sent back first. The output layer learns from its true gradient.
(The sign of ``-t`` is immaterial: ``D`` is symmetric about zero.)

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

rule = Rule(
    name="drtp",
    summary="direct random target projection: the target sent to each hidden layer through fixed random D",
    reference="Frenkel, Lefebvre, Bol 2021, Front. Neurosci. 15:629892",
    signal="target",
    init_feedback=random_feedback,
    options=RANDOM_FEEDBACK_OPTIONS,
    devices=("cpu", "cuda"),
)

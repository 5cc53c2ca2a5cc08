"""Backpropagation: hidden signals travel back through the transposed forward weights.

    delta_l = (delta_{l+1} W_{l+1}^T) * f'(a_l)

No feedback matrices of its own: ``B = W^T`` at every step.

References
----------
Rumelhart, Hinton, Williams (1986). Learning representations by back-propagating
errors. Nature 323, 533-536.
"""

from fastfa.rules import Rule

rule = Rule(
    name="bp",
    summary="backpropagation: errors travel back through W^T",
    reference="Rumelhart, Hinton, Williams 1986, Nature 323:533",
    signal="backprop",
    devices=("cpu", "cuda"),
)

"""Compiled kernels. ``cpu`` holds the numba ``@njit`` kernels; ``codes`` the integer codes they share."""

import warnings

from numba.core.errors import NumbaExperimentalFeatureWarning

# The layer engine calls its conv and pooling kernels, and the dense engine a compiled plugin's
# functions, through numba's first-class function type (fastfa.kernels.layer_ops,
# fastfa.compiled_rules), which numba flags as experimental on every compile. fastfa tests what
# it uses of it; the notice would only reach users as noise on their first run.
warnings.filterwarnings(
    "ignore",
    message=".*First-class function type feature is experimental",  # numba colours its messages
    category=NumbaExperimentalFeatureWarning,
)

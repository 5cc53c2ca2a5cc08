"""Compiled kernels. ``cpu`` holds the numba ``@njit`` kernels; ``codes`` the integer codes they share."""

"""Timing helpers shared by the kernel benchmarks."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

import numpy as np


def best_seconds(func, repeats, rounds=3):
    """Seconds per call of ``func()``: the best of ``rounds`` rounds of ``repeats`` calls, after
    one untimed call (compilation, caches)."""
    func()
    best = np.inf
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            func()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def cold_and_warm_seconds(cmd):
    """Wall seconds of the command ``cmd`` with a cold numba cache (a fresh ``NUMBA_CACHE_DIR``),
    then the best of two runs with that cache warm: ``(cold, warm)``. Their difference is the
    compile time."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        times = []
        for _ in ("cold", "warm", "warm"):
            start = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return times[0], min(times[1:])

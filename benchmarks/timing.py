"""Timing helpers shared by the kernel benchmarks."""

from __future__ import annotations

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

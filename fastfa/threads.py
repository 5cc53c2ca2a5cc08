"""Who owns the cores while fastfa's compiled kernels run.

OpenBLAS keeps its worker threads spinning for a while after each call, ready
for the next one. A numba parallel region started in that window competes with
them for the cores: on a 2-core machine a training step became several times
slower (DESIGN.md section 4; docs/engine.md). So fastfa splits every product
and every elementwise pass over threads itself (:mod:`fastfa.kernels.cpu`) and,
for the duration of a compiled call, holds OpenBLAS to one thread per caller.
OpenBLAS's own setting is restored afterwards.

Where no OpenBLAS library can be found (another BLAS, or a platform other than
Linux and macOS), the kernels run on one thread and BLAS keeps its threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time

import numba

_SYMBOLS = [
    (f"{prefix}_get_num_threads{suffix}", f"{prefix}_set_num_threads{suffix}")
    for prefix in ("scipy_openblas", "openblas")
    for suffix in ("", "64_")
]
_controls = None  # [(get, set)] for every OpenBLAS in the process, found once


def _loaded_libraries():
    """Paths of the shared libraries loaded in this process (Linux and macOS)."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps") as maps:
                return {line.split()[-1] for line in maps if "/" in line}
        except OSError:
            return set()
    if sys.platform == "darwin":
        libc = ctypes.CDLL(None)
        libc._dyld_get_image_name.restype = ctypes.c_char_p
        count = libc._dyld_image_count()
        return {libc._dyld_get_image_name(i).decode() for i in range(count)}
    return set()


def _find_controls():
    """``(get_num_threads, set_num_threads)`` of every OpenBLAS loaded, including the one numba calls."""
    import scipy.linalg.cython_blas  # noqa: F401  (numba's BLAS: make sure it is loaded)

    found, seen = [], set()
    for path in sorted(p for p in _loaded_libraries() if "openblas" in p.lower()):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _SYMBOLS:
            get_fn, set_fn = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get_fn is None or set_fn is None:
                continue
            key = ctypes.cast(set_fn, ctypes.c_void_p).value
            if key not in seen:
                seen.add(key)
                get_fn.restype, set_fn.argtypes = ctypes.c_int, [ctypes.c_int]
                found.append((get_fn, set_fn))
            break
    return found


def blas_controls():
    """The OpenBLAS thread controls of this process (found on first use)."""
    global _controls
    if _controls is None:
        _controls = _find_controls()
    return _controls


def busy_elsewhere(samples=3, pause=0.002):
    """Cores kept busy by other processes right now (Linux; 0 where it cannot be told).

    The runnable tasks of the whole machine (``/proc/loadavg``) less this process's own
    runnable threads (``/proc/self/task/*/stat``), the smallest of ``samples`` readings
    ``pause`` seconds apart, so that a task waking for a moment does not count.
    """
    fewest = None
    for sample in range(samples):
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
            own = 0
            for task in os.listdir("/proc/self/task"):
                try:
                    with open(f"/proc/self/task/{task}/stat") as f:
                        own += f.read().rsplit(")", 1)[1].split()[0] == "R"
                except OSError:
                    continue
        except (OSError, ValueError, IndexError):
            return 0
        others = max(0, running - own)
        fewest = others if fewest is None else min(fewest, others)
        if fewest == 0:
            break
        if sample + 1 < samples:
            time.sleep(pause)
    return fewest


_free = (-1.0, 1)  # (time.monotonic() of the last count, free cores then)
FREE_CORES_TTL = 1.0  # seconds a count of the free cores is reused (a count sleeps up to 4 ms)


def free_cores():
    """Cores this process may use (its affinity) that no other process keeps busy; at least 1.

    Counted at most once every :data:`FREE_CORES_TTL` seconds (calls in between reuse the count).
    """
    global _free
    now = time.monotonic()
    if 0 <= now - _free[0] < FREE_CORES_TTL:
        return _free[1]
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    _free = (now, max(1, cores - busy_elsewhere()))
    return _free[1]


@contextlib.contextmanager
def kernel_threads():
    """Yield how many parts the kernels split their work into; OpenBLAS runs one thread per
    caller meanwhile.

    Yields ``numba.get_num_threads()`` when OpenBLAS can be held to one thread, else 1 (the
    kernels then run serially and BLAS keeps its own threads). On a busy machine the parts
    run on fewer threads: as many as there are cores no other process keeps busy
    (:func:`free_cores`), since a part whose thread shares a core with another process holds
    up every parallel region it is in (docs/engine.md, "Threads"). The split itself does not
    change, so the arithmetic, and every result, is the same whatever the load.
    """
    threads = numba.get_num_threads()
    controls = blas_controls() if threads > 1 else []
    if not controls:
        yield 1
        return
    before = [get() for get, _ in controls]
    for _, set_threads in controls:
        set_threads(1)
    running = min(threads, free_cores())
    if running < threads:
        numba.set_num_threads(running)
    try:
        yield threads
    finally:
        if running < threads:
            numba.set_num_threads(threads)
        for (_, set_threads), n in zip(controls, before, strict=True):
            set_threads(n)


def use_threads(threads):
    """From now on use ``threads`` threads in this process: numba's kernels and OpenBLAS.

    For worker processes that run one training run after another (sweeps); a
    command line sets the thread counts before BLAS loads instead.
    """
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    for _, set_threads in blas_controls():
        set_threads(threads)

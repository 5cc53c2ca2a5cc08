"""A second process that compiles the training path's later kernels while a first run compiles the rest.

On a fresh numba cache a run compiles its epoch kernel depth first, one function after another,
on one core: ``fastfa train`` on the bundled digits spends about 18 s there. The kernels it
reaches last (the signal's derivative, the output error, the optimiser's step, the weight
gradients, scoring) do not depend on the one it compiles first (the forward pass), so a helper
process compiles them at the same time, last first, into numba's on-disk cache, and the run loads
them from there when it gets to them. Measured on the 2-core development machine (cold cache,
``python -m benchmarks.first_run``): see docs/engine.md, "The first run".

The helper compiles the signatures in :data:`MANIFEST`, recorded from a default run
(``python -m fastfa.first_run --record`` rewrites it; tests check that every entry names a kernel
that exists). A run whose kernels differ (another rule, float64) gains less, never loses results:
numba's cache holds the same machine code whichever process compiled it, and a kernel the helper
has not finished is compiled by the run itself, as without it. The helper starts only when the
cache is cold, the process may use two cores or more, and ``FASTFA_COMPILE_HELPER`` is not ``0``
(the test suite sets it, to keep its cores); it ends with the run (or, killed with it, after its
last kernel).
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
from pathlib import Path

#: Kernels and signatures of a default ``fastfa train`` run, in the order it finishes compiling them
MANIFEST = Path(__file__).resolve().parent / "kernels" / "first_run.json"
#: The epoch kernel and the passes it starts with: the run compiles these first, the helper never
ROOTS = ("train_epoch", "backward", "forward")
ENABLE = "FASTFA_COMPILE_HELPER"
_started = False  # one helper per process


def encode(numba_type):
    """A JSON form of an argument type, or None for a type the manifest does not hold."""
    from numba.core import types

    if isinstance(numba_type, types.Array):
        return ["array", str(numba_type.dtype), numba_type.ndim, numba_type.layout, not numba_type.mutable]
    if isinstance(numba_type, types.IntegerLiteral):
        return ["literal", numba_type.literal_value]
    if isinstance(numba_type, types.NoneType):
        return ["none"]
    if isinstance(numba_type, (types.Integer, types.Float, types.Boolean)):
        return ["scalar", str(numba_type)]
    return None


def decode(form, floats="float32"):
    """The numba type of an :func:`encode` form, its float32 arrays and scalars made ``floats``
    (the manifest is recorded from a float32 run; a float64 run's kernels differ only there)."""
    from numba.core import types

    kind, *rest = form
    rest = [floats if value == "float32" else value for value in rest]
    if kind == "array":
        dtype, ndim, layout, readonly = rest
        return types.Array(getattr(types, dtype), ndim, layout, readonly=readonly)
    if kind == "literal":
        return types.literal(rest[0])
    if kind == "none":
        return types.none
    return types.boolean if rest[0] == "bool" else getattr(types, rest[0])


def record(argv, path=MANIFEST):
    """Run ``fastfa`` with ``argv`` in this process (its cache should be cold) and write the fastfa
    kernels it compiled, with their signatures, to ``path``."""
    from numba.core import event

    os.environ[ENABLE] = "0"  # the run records what it compiles itself
    entries = []

    class Recorder(event.Listener):
        def on_start(self, ev):
            pass

        def on_end(self, ev):
            func = ev.data["dispatcher"].py_func
            forms = [encode(t) for t in ev.data["args"]]
            if func.__module__.startswith("fastfa.") and "<locals>" not in func.__qualname__:
                if all(form is not None for form in forms):
                    entries.append({"module": func.__module__, "name": func.__qualname__, "args": forms})

    event.register("numba:compile", Recorder())
    from fastfa.cli import main

    try:
        main(argv, standalone_mode=False)
    except SystemExit:
        pass
    Path(path).write_text(json.dumps({"command": ["fastfa", *argv], "kernels": entries}, indent=1) + "\n")
    return entries


def helper_jobs(path=MANIFEST, floats="float32"):
    """``[(dispatcher, signature)]`` the helper compiles for a run in ``floats``: the manifest's
    kernels but the roots, the ones a run reaches last first."""
    import importlib

    jobs = []
    for entry in reversed(json.loads(Path(path).read_text())["kernels"]):
        if entry["name"] in ROOTS:
            continue
        dispatcher = getattr(importlib.import_module(entry["module"]), entry["name"])
        jobs.append((dispatcher, tuple(decode(form, floats) for form in entry["args"])))
    return jobs


def compile_all(path=MANIFEST, floats="float32"):
    """The helper's work: compile (or find in the cache) every job of :func:`helper_jobs`; a job that
    fails is skipped (the run compiles that kernel itself)."""
    for dispatcher, signature in helper_jobs(path, floats):
        try:
            dispatcher.compile(signature)
        except Exception:  # noqa: BLE001 (a stale manifest entry: the run compiles it anyway)
            continue


def start_if_cold(dtype):
    """Start the helper (:func:`start_helper`) when the dense engine's epoch kernel has nothing
    compiled for ``dtype`` yet: called by ``fastfa train`` for a dense network on the CPU before it
    reads its data, so that the helper is under way when the run begins to compile."""
    from fastfa import kernel_cache
    from fastfa.kernels import cpu

    if not kernel_cache.has_entries(cpu.train_epoch, dtype):
        return start_helper(dtype)
    return None


def start_helper(dtype="float32"):
    """Start the helper process for a run in ``dtype`` when it can help (see the module notes);
    returns it, or None."""
    global _started
    if _started or os.environ.get(ENABLE, "1") == "0" or not MANIFEST.exists():
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if cores < 2:
        return None
    try:
        helper = subprocess.Popen(
            [sys.executable, "-m", "fastfa.first_run", str(dtype)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    atexit.register(_stop, helper)
    _started = True
    return helper


def _stop(helper):
    if helper.poll() is None:
        helper.terminate()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--record"]:  # python -m fastfa.first_run --record [fastfa train arguments]
        found = record(sys.argv[2:] or ["train", "--epochs", "1", "-q"])
        print(f"{len(found)} kernels written to {MANIFEST}")
    else:  # python -m fastfa.first_run [float32 | float64]: the helper
        compile_all(floats=sys.argv[1] if len(sys.argv) > 1 else "float32")
